import http2 from "node:http2";
import { fromBinary, create, toBinary, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  AuthService,
  LogoutAllDevicesRequestSchema,
  RefreshTokenRequestSchema,
  RefreshTokenResponseSchema,
  RevokeCurrentDeviceRequestSchema,
  RevokeResponseSchema,
  SendOTPRequestSchema,
  SendOTPResponseSchema,
  UserSchema,
  ValidateTokenRequestSchema,
  ValidateTokenResponseSchema,
  VerifyOTPRequestSchema,
  VerifyOTPResponseSchema,
  file_auth_auth,
} from "../../gen/auth/auth_pb.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

/**
 * Wire compatibility with the original Go auth.AuthService, checked without
 * trusting our own schemas: request bytes are built by hand from the field
 * numbers in ORIGINAL_API.md, and our responses are read back by a decoder
 * that knows only the original fields (what an old client does).
 */

// --- The original API, transcribed from ORIGINAL_API.md (auth.AuthService).

type OriginalType = "string" | "bool" | "User";
type OriginalField = readonly [number: number, type: OriginalType, name: string];

const ORIGINAL_MESSAGES: Record<string, readonly OriginalField[]> = {
  User: [
    [1, "string", "id"],
    [2, "string", "phone_number"],
    [3, "string", "display_name"],
    [4, "string", "profile_picture_url"],
    [5, "string", "about_text"],
    [6, "string", "last_seen_at"],
    [7, "string", "created_at"],
    [8, "string", "updated_at"],
  ],
  SendOTPRequest: [[1, "string", "phone_number"]],
  SendOTPResponse: [[1, "string", "message"]],
  VerifyOTPRequest: [
    [1, "string", "phone_number"],
    [2, "string", "otp_code"],
    [3, "string", "device_id"],
  ],
  VerifyOTPResponse: [
    [1, "User", "user"],
    [2, "string", "access_token"],
    [3, "string", "refresh_token"],
  ],
  ValidateTokenRequest: [[1, "string", "access_token"]],
  ValidateTokenResponse: [
    [1, "bool", "is_valid"],
    [2, "string", "user_id"],
  ],
  RefreshTokenRequest: [[1, "string", "refresh_token"]],
  RefreshTokenResponse: [
    [1, "string", "access_token"],
    [2, "string", "refresh_token"],
  ],
  RevokeCurrentDeviceRequest: [[1, "string", "refresh_token"]],
  LogoutAllDevicesRequest: [[1, "string", "access_token"]],
  RevokeResponse: [[1, "bool", "success"]],
};

const ORIGINAL_RPCS = [
  ["SendOTP", "SendOTPRequest", "SendOTPResponse"],
  ["VerifyOTP", "VerifyOTPRequest", "VerifyOTPResponse"],
  ["ValidateToken", "ValidateTokenRequest", "ValidateTokenResponse"],
  ["RefreshToken", "RefreshTokenRequest", "RefreshTokenResponse"],
  ["RevokeCurrentDevice", "RevokeCurrentDeviceRequest", "RevokeResponse"],
  ["LogoutAllDevices", "LogoutAllDevicesRequest", "RevokeResponse"],
] as const;

// --- A protobuf wire codec small enough to check by eye
// (https://protobuf.dev/programming-guides/encoding/).

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

const tag = (field: number, wireType: number): number[] => varint((field << 3) | wireType);
const lengthDelimited = (field: number, bytes: ArrayLike<number>): number[] => [...tag(field, LEN), ...varint(bytes.length), ...Array.from(bytes)];
const str = (field: number, s: string): number[] => lengthDelimited(field, utf8.encode(s));
const bool = (field: number, b: boolean): number[] => [...tag(field, VARINT), b ? 1 : 0];
/** A message: its fields' bytes one after another (proto3 writes no default values). */
const message = (...fields: number[][]): Uint8Array => Uint8Array.from(fields.flat());

interface WireField {
  field: number;
  wireType: number;
  varint?: bigint;
  bytes?: Uint8Array;
}

function readFields(buf: Uint8Array): WireField[] {
  let i = 0;
  const readVarint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= buf.length) throw new Error("truncated varint");
      const b = buf[i++]!;
      value |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return value;
    }
    throw new Error("varint longer than 10 bytes");
  };
  const take = (n: number): Uint8Array => {
    if (i + n > buf.length) throw new Error(`truncated field: ${n} bytes wanted, ${buf.length - i} left`);
    const bytes = buf.subarray(i, i + n);
    i += n;
    return bytes;
  };
  const fields: WireField[] = [];
  while (i < buf.length) {
    const key = Number(readVarint());
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 0) throw new Error("field number 0");
    if (wireType === VARINT) fields.push({ field, wireType, varint: readVarint() });
    else if (wireType === LEN) fields.push({ field, wireType, bytes: take(Number(readVarint())) });
    else if (wireType === I64) fields.push({ field, wireType, bytes: take(8) });
    else if (wireType === I32) fields.push({ field, wireType, bytes: take(4) });
    else throw new Error(`unsupported wire type ${wireType} (field ${field})`);
  }
  return fields;
}

type Decoded = { [name: string]: string | boolean | Decoded | undefined };

/**
 * Decodes like a client generated from the original .proto: original fields by
 * number and type, proto3 defaults for absent ones, anything else skipped.
 * `skipped` lists the field numbers it did not know.
 */
function decodeAsOriginal(messageName: string, buf: Uint8Array, skipped: number[] = []): Decoded {
  const spec = ORIGINAL_MESSAGES[messageName]!;
  const out: Decoded = {};
  for (const [, type, name] of spec) out[name] = type === "string" ? "" : type === "bool" ? false : undefined;
  for (const f of readFields(buf)) {
    const known = spec.find(([n]) => n === f.field);
    if (!known) {
      skipped.push(f.field);
      continue;
    }
    const [number, type, name] = known;
    const expectedWire = type === "bool" ? VARINT : LEN;
    if (f.wireType !== expectedWire) {
      throw new Error(`${messageName}.${name} (${number}): wire type ${f.wireType}, the original ${type} is ${expectedWire}`);
    }
    if (type === "string") out[name] = fromUtf8.decode(f.bytes!);
    else if (type === "bool") out[name] = f.varint !== 0n;
    else out[name] = decodeAsOriginal(type, f.bytes!, skipped);
  }
  return out;
}

const grpcFrame = (payload: Uint8Array): Buffer => {
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt8(0, 0); // not compressed
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, 5);
  return frame;
};

function grpcMessages(body: Buffer): Uint8Array[] {
  const messages: Uint8Array[] = [];
  let i = 0;
  while (i < body.length) {
    if (body.length - i < 5) throw new Error("truncated gRPC frame header");
    const flags = body.readUInt8(i);
    const length = body.readUInt32BE(i + 1);
    if (flags !== 0) throw new Error(`unexpected gRPC frame flags ${flags}`);
    if (i + 5 + length > body.length) throw new Error("truncated gRPC frame");
    messages.push(new Uint8Array(body.subarray(i + 5, i + 5 + length)));
    i += 5 + length;
  }
  return messages;
}

// --- Fixtures

const PHONE = "+905551234567";
const DEVICE_ID = "3f1c9a7e-postman-device";
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
const JWT2 = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ5In0.c2lnbmF0dXJlMg";
const USER_ID = "0b7d3a52-8c1e-4b9f-9d3a-2f6e1c4b8a90";
const TIME = "2024-05-01T10:20:30.000Z";

const user = {
  id: USER_ID,
  phoneNumber: PHONE,
  displayName: "Ayşe Yılmaz",
  profilePictureUrl: "https://cdn.example/p/ayse.jpg",
  aboutText: "Merhaba! 👋",
  lastSeenAt: TIME,
  createdAt: "2024-01-02T03:04:05.000Z",
  updatedAt: TIME,
};
const userDecoded = {
  id: USER_ID,
  phone_number: PHONE,
  display_name: "Ayşe Yılmaz",
  profile_picture_url: "https://cdn.example/p/ayse.jpg",
  about_text: "Merhaba! 👋",
  last_seen_at: TIME,
  created_at: "2024-01-02T03:04:05.000Z",
  updated_at: TIME,
};
/** User as the Go server wrote it: fields in number order. */
const userBytes = message(
  str(1, USER_ID),
  str(2, PHONE),
  str(3, "Ayşe Yılmaz"),
  str(4, "https://cdn.example/p/ayse.jpg"),
  str(5, "Merhaba! 👋"),
  str(6, TIME),
  str(7, "2024-01-02T03:04:05.000Z"),
  str(8, TIME),
);

describe("the descriptor keeps every original name, number and type", () => {
  const typeOf = (f: DescField): string => {
    if (f.fieldKind === "scalar") return ScalarType[f.scalar].toLowerCase();
    if (f.fieldKind === "message") return f.message.typeName;
    return f.fieldKind;
  };
  const protoType: Record<OriginalType, FieldDescriptorProto_Type> = {
    string: FieldDescriptorProto_Type.STRING,
    bool: FieldDescriptorProto_Type.BOOL,
    User: FieldDescriptorProto_Type.MESSAGE,
  };

  test("package auth", () => {
    expect(file_auth_auth.proto.package).toBe("auth");
    expect(file_auth_auth.proto.syntax).toBe("proto3");
  });

  test.each(Object.entries(ORIGINAL_MESSAGES))("message %s", (name, fields) => {
    const desc = file_auth_auth.messages.find((m) => m.name === name);
    expect(desc?.typeName).toBe(`auth.${name}`);
    for (const [number, type, fieldName] of fields) {
      const where = `${name}.${fieldName} = ${number}`;
      const byNumber = desc!.fields.find((f) => f.number === number);
      expect(byNumber?.name, where).toBe(fieldName);
      expect(desc!.fields.find((f) => f.name === fieldName)?.number, where).toBe(number);
      const field = byNumber!;
      expect(typeOf(field), where).toBe(type === "User" ? "auth.User" : type);
      expect(field.fieldKind, where).toBe(type === "User" ? "message" : "scalar");
      expect(field.proto.type, where).toBe(protoType[type]);
      // Singular, no `optional`, no oneof: the same presence as the original.
      expect(field.proto.label, where).toBe(FieldDescriptorProto_Label.OPTIONAL);
      expect(field.proto.proto3Optional, where).toBe(false);
      expect(field.oneof, where).toBeUndefined();
    }
  });

  test("the six original RPCs: names, types, unary, paths", () => {
    const service = file_auth_auth.services.find((s) => s.name === "AuthService");
    expect(service?.typeName).toBe("auth.AuthService");
    expect(service).toBe(AuthService);
    for (const [rpc, input, output] of ORIGINAL_RPCS) {
      const method = service!.methods.find((m) => m.name === rpc);
      expect(method, rpc).toBeDefined();
      expect(method!.methodKind, rpc).toBe("unary");
      expect(method!.input.typeName, rpc).toBe(`auth.${input}`);
      expect(method!.output.typeName, rpc).toBe(`auth.${output}`);
      expect(`/${method!.parent.typeName}/${method!.name}`).toBe(`/auth.AuthService/${rpc}`);
    }
  });
});

describe("original requests, built by hand, decode with our schemas", () => {
  const cases: Array<[name: string, schema: DescMessage, bytes: Uint8Array, expected: Record<string, unknown>]> = [
    ["SendOTPRequest", SendOTPRequestSchema, message(str(1, PHONE)), { phoneNumber: PHONE }],
    [
      "VerifyOTPRequest",
      VerifyOTPRequestSchema,
      message(str(1, PHONE), str(2, "123456"), str(3, DEVICE_ID)),
      { phoneNumber: PHONE, otpCode: "123456", deviceId: DEVICE_ID, deviceName: "", deviceType: "", pushToken: "" },
    ],
    ["ValidateTokenRequest", ValidateTokenRequestSchema, message(str(1, JWT)), { accessToken: JWT }],
    ["RefreshTokenRequest", RefreshTokenRequestSchema, message(str(1, JWT)), { refreshToken: JWT }],
    ["RevokeCurrentDeviceRequest", RevokeCurrentDeviceRequestSchema, message(str(1, JWT)), { refreshToken: JWT }],
    ["LogoutAllDevicesRequest", LogoutAllDevicesRequestSchema, message(str(1, JWT)), { accessToken: JWT }],
  ];

  test.each(cases)("%s", (name, schema, bytes, expected) => {
    expect(schema.typeName).toBe(`auth.${name}`);
    const decoded = fromBinary(schema, bytes) as Record<string, unknown>;
    expect(decoded).toMatchObject(expected);
    expect(decoded.$unknown).toBeUndefined();
    // Our clients send exactly the bytes the old clients sent.
    expect(toBinary(schema, decoded as never)).toEqual(bytes);
  });

  test("VerifyOTPRequest with fields out of order, a device_id of 3 digits, and an unknown field", () => {
    const bytes = message(str(3, "3"), str(2, "123456"), str(99, "from a newer client"), str(1, PHONE));
    const decoded = fromBinary(VerifyOTPRequestSchema, bytes);
    expect(decoded).toMatchObject({ phoneNumber: PHONE, otpCode: "123456", deviceId: "3" });
    expect(decoded.$unknown?.map((u) => u.no)).toEqual([99]);
  });

  test("an empty request decodes to proto3 defaults", () => {
    expect(fromBinary(VerifyOTPRequestSchema, new Uint8Array())).toMatchObject({ phoneNumber: "", otpCode: "", deviceId: "" });
  });
});

describe("our responses decode as the original messages", () => {
  const at = timestampFromDate(new Date(TIME));

  test("User: every original field, bytes identical to the Go server's", () => {
    const bytes = toBinary(UserSchema, create(UserSchema, user));
    expect(bytes).toEqual(userBytes);
    expect(decodeAsOriginal("User", bytes)).toEqual(userDecoded);
  });

  test("SendOTPResponse", () => {
    const skipped: number[] = [];
    const bytes = toBinary(
      SendOTPResponseSchema,
      create(SendOTPResponseSchema, { message: "OTP sent successfully", retryAfterSeconds: 30, expiresInSeconds: 600, attemptsLeft: 5 }),
    );
    expect(decodeAsOriginal("SendOTPResponse", bytes, skipped)).toEqual({ message: "OTP sent successfully" });
    expect(skipped).toEqual([2, 3, 4]);
    expect(toBinary(SendOTPResponseSchema, create(SendOTPResponseSchema, { message: "OTP sent successfully" }))).toEqual(
      message(str(1, "OTP sent successfully")),
    );
  });

  test("VerifyOTPResponse with a User", () => {
    const skipped: number[] = [];
    const bytes = toBinary(
      VerifyOTPResponseSchema,
      create(VerifyOTPResponseSchema, {
        user,
        accessToken: JWT,
        refreshToken: JWT2,
        sessionId: "5c1f2d9e-1111-4222-8333-944445555666",
        isNewUser: true,
        accessTokenExpiresAt: at,
        refreshTokenExpiresAt: at,
      }),
    );
    expect(decodeAsOriginal("VerifyOTPResponse", bytes, skipped)).toEqual({
      user: userDecoded,
      access_token: JWT,
      refresh_token: JWT2,
    });
    expect(skipped).toEqual([4, 5, 6, 7]);
    expect(toBinary(VerifyOTPResponseSchema, create(VerifyOTPResponseSchema, { user, accessToken: JWT, refreshToken: JWT2 }))).toEqual(
      message(lengthDelimited(1, userBytes), str(2, JWT), str(3, JWT2)),
    );
  });

  test("ValidateTokenResponse, valid and invalid", () => {
    const valid = toBinary(ValidateTokenResponseSchema, create(ValidateTokenResponseSchema, { isValid: true, userId: USER_ID }));
    expect(valid).toEqual(message(bool(1, true), str(2, USER_ID)));
    expect(decodeAsOriginal("ValidateTokenResponse", valid)).toEqual({ is_valid: true, user_id: USER_ID });
    // What the server answers for a bad token: zero bytes, read as false and "".
    const invalid = toBinary(ValidateTokenResponseSchema, create(ValidateTokenResponseSchema, { isValid: false, userId: "" }));
    expect(invalid).toHaveLength(0);
    expect(decodeAsOriginal("ValidateTokenResponse", invalid)).toEqual({ is_valid: false, user_id: "" });
  });

  test("RefreshTokenResponse", () => {
    const skipped: number[] = [];
    const bytes = toBinary(
      RefreshTokenResponseSchema,
      create(RefreshTokenResponseSchema, {
        accessToken: JWT,
        refreshToken: JWT2,
        sessionId: "5c1f2d9e-1111-4222-8333-944445555666",
        accessTokenExpiresAt: at,
        refreshTokenExpiresAt: at,
      }),
    );
    expect(decodeAsOriginal("RefreshTokenResponse", bytes, skipped)).toEqual({ access_token: JWT, refresh_token: JWT2 });
    expect(skipped).toEqual([3, 4, 5]);
    expect(toBinary(RefreshTokenResponseSchema, create(RefreshTokenResponseSchema, { accessToken: JWT, refreshToken: JWT2 }))).toEqual(
      message(str(1, JWT), str(2, JWT2)),
    );
  });

  test("RevokeResponse", () => {
    const bytes = toBinary(RevokeResponseSchema, create(RevokeResponseSchema, { success: true }));
    expect(bytes).toEqual(message(bool(1, true)));
    expect(decodeAsOriginal("RevokeResponse", bytes)).toEqual({ success: true });
  });
});

describe("raw gRPC over HTTP/2 with hand-built bytes, against a live server", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  interface RawAnswer {
    httpStatus: number;
    contentType: string | undefined;
    grpcStatus: string | undefined;
    grpcMessage: string | undefined;
    messages: Uint8Array[];
  }

  /** One unary call the way any gRPC client library makes it, minus the library. */
  function rawCall(rpc: string, request: Uint8Array): Promise<RawAnswer> {
    const session = http2.connect(s.url);
    return new Promise<RawAnswer>((resolve, reject) => {
      session.on("error", reject);
      const stream = session.request({
        ":method": "POST",
        ":path": `/auth.AuthService/${rpc}`,
        "content-type": "application/grpc",
        te: "trailers",
      });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => (headers = h));
      stream.on("trailers", (t) => (trailers = t));
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", reject);
      stream.on("end", () => {
        try {
          // A trailers-only answer (an error) carries grpc-status in the headers.
          const status = trailers["grpc-status"] ?? headers["grpc-status"];
          const statusMessage = trailers["grpc-message"] ?? headers["grpc-message"];
          resolve({
            httpStatus: Number(headers[":status"]),
            contentType: headers["content-type"],
            grpcStatus: status === undefined ? undefined : String(status),
            grpcMessage: statusMessage === undefined ? undefined : decodeURIComponent(String(statusMessage)),
            messages: grpcMessages(Buffer.concat(chunks)),
          });
        } catch (err) {
          reject(err);
        }
      });
      stream.end(grpcFrame(request));
    }).finally(() => session.close());
  }

  async function ok(rpc: string, request: Uint8Array, responseMessage: string): Promise<Decoded> {
    const res = await rawCall(rpc, request);
    expect(res.httpStatus, rpc).toBe(200);
    expect(res.contentType, rpc).toMatch(/^application\/grpc(\+proto)?$/);
    expect(res.grpcStatus, `${rpc}: ${res.grpcMessage}`).toBe("0");
    expect(res.messages, rpc).toHaveLength(1);
    return decodeAsOriginal(responseMessage, res.messages[0]!);
  }

  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]+$/;
  const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

  test("the original login and session flow, byte for byte", async () => {
    const sent = await ok("SendOTP", message(str(1, PHONE)), "SendOTPResponse");
    expect(sent.message).toBe("OTP sent successfully");

    const login = await ok("VerifyOTP", message(str(1, PHONE), str(2, "123456"), str(3, "3")), "VerifyOTPResponse");
    const u = login.user as Decoded;
    expect(u.id).toMatch(UUID);
    expect(u.phone_number).toBe(PHONE);
    expect(u.created_at).toMatch(RFC3339);
    expect(u.updated_at).toMatch(RFC3339);
    expect(login.access_token).toMatch(JWT_SHAPE);
    expect(login.refresh_token).toMatch(JWT_SHAPE);
    const access = login.access_token as string;
    const refresh = login.refresh_token as string;

    expect(await ok("ValidateToken", message(str(1, access)), "ValidateTokenResponse")).toEqual({ is_valid: true, user_id: u.id });
    expect(await ok("ValidateToken", message(str(1, "not-a-token")), "ValidateTokenResponse")).toEqual({ is_valid: false, user_id: "" });

    const refreshed = await ok("RefreshToken", message(str(1, refresh)), "RefreshTokenResponse");
    expect(refreshed.access_token).toMatch(JWT_SHAPE);
    expect(refreshed.refresh_token).toMatch(JWT_SHAPE);
    expect(refreshed.access_token).not.toBe(access);
    expect(refreshed.refresh_token).not.toBe(refresh);

    expect(await ok("RevokeCurrentDevice", message(str(1, refreshed.refresh_token as string)), "RevokeResponse")).toEqual({ success: true });
    expect(await ok("ValidateToken", message(str(1, refreshed.access_token as string)), "ValidateTokenResponse")).toEqual({
      is_valid: false,
      user_id: "",
    });
    const dead = await rawCall("RefreshToken", message(str(1, refreshed.refresh_token as string)));
    expect(dead.grpcStatus).toBe("16"); // UNAUTHENTICATED
    expect(dead.messages).toHaveLength(0);
  });

  test("LogoutAllDevices, and a wrong code answered with UNAUTHENTICATED (the old server said INTERNAL)", async () => {
    const phone = "+905551234568";
    await ok("SendOTP", message(str(1, phone)), "SendOTPResponse");
    const wrong = await rawCall("VerifyOTP", message(str(1, phone), str(2, "000000")));
    expect(wrong.grpcStatus).toBe("16");
    expect(wrong.grpcMessage).toContain("wrong code");

    const login = await ok("VerifyOTP", message(str(1, phone), str(2, "123456"), str(3, "device-2")), "VerifyOTPResponse");
    expect((login.user as Decoded).phone_number).toBe(phone);
    expect(await ok("LogoutAllDevices", message(str(1, login.access_token as string)), "RevokeResponse")).toEqual({ success: true });
    expect(await ok("ValidateToken", message(str(1, login.access_token as string)), "ValidateTokenResponse")).toEqual({
      is_valid: false,
      user_id: "",
    });
  });
});
