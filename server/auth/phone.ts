import { parsePhoneNumberWithError } from "libphonenumber-js";

export class InvalidPhoneNumberError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidPhoneNumberError";
  }
}

/**
 * Validates an international phone number and returns it in E.164
 * ("+905551234567"). Spaces, dashes and brackets are accepted on input.
 */
export function normalizePhoneNumber(raw: string): string {
  const input = raw.trim();
  if (input === "") throw new InvalidPhoneNumberError("is required, in international format such as +905551234567");
  if (input.length > 32) throw new InvalidPhoneNumberError("is too long for a phone number");
  if (!input.startsWith("+")) {
    throw new InvalidPhoneNumberError(`"${input}" must start with + and the country code, e.g. +905551234567`);
  }
  let parsed;
  try {
    parsed = parsePhoneNumberWithError(input);
  } catch {
    throw new InvalidPhoneNumberError(`"${input}" is not a phone number`);
  }
  if (!parsed.isValid()) throw new InvalidPhoneNumberError(`"${input}" is not a valid phone number for its country`);
  return parsed.number;
}
