import { GROUP_DESCRIPTION_MAX, GROUP_NAME_MAX, URL_MAX } from "./limits.js";
import { codePoints } from "./text.js";

/** A group's editable fields as stored (trimmed); absent = not given. */
export interface GroupFields {
  group_name?: string;
  group_description?: string;
  group_avatar_url?: string;
}

export type GroupFieldsCheck = { ok: true; fields: GroupFields } | { ok: false; problem: string };

const HTTP_URL = /^https?:\/\/\S+$/;

/**
 * The one rule for a group's name, description and avatar, used by both
 * CreateConversation and UpdateGroup. An undefined input is "not given";
 * the problem names the field, for an InvalidArgument answer.
 */
export function checkGroupFields(input: { name?: string; description?: string; avatarUrl?: string }): GroupFieldsCheck {
  const fields: GroupFields = {};
  if (input.name !== undefined) {
    const name = input.name.trim();
    if (name === "") return { ok: false, problem: "group_name: a group needs a name" };
    if (codePoints(name) > GROUP_NAME_MAX) return { ok: false, problem: `group_name: at most ${GROUP_NAME_MAX} characters` };
    fields.group_name = name;
  }
  if (input.description !== undefined) {
    if (codePoints(input.description) > GROUP_DESCRIPTION_MAX) {
      return { ok: false, problem: `group_description: at most ${GROUP_DESCRIPTION_MAX} characters` };
    }
    fields.group_description = input.description.trim();
  }
  if (input.avatarUrl !== undefined) {
    const url = input.avatarUrl.trim();
    if (url.length > URL_MAX) return { ok: false, problem: `group_avatar_url: at most ${URL_MAX} characters` };
    if (url !== "" && !HTTP_URL.test(url)) return { ok: false, problem: "group_avatar_url: must be an http(s) URL" };
    fields.group_avatar_url = url;
  }
  return { ok: true, fields };
}
