// Chat's fixed input limits, in one place. The configurable ones (participants
// per group, text length, edit and delete windows) are in config.chat.

/** A group's name, in code points. */
export const GROUP_NAME_MAX = 100;
/** A group's description, in code points. */
export const GROUP_DESCRIPTION_MAX = 512;
/** Any URL we store (media_url, group_avatar_url), in characters. */
export const URL_MAX = 2048;
/** media_type, in characters. */
export const MEDIA_TYPE_MAX = 128;
/** client_message_id and client_request_id, in characters. */
export const CLIENT_ID_MAX = 64;
/** A reaction, in code points (an emoji with modifiers and joiners). */
export const EMOJI_MAX = 16;
/** Page sizes of ListMessages and GetConversations: the default (limit 0) and the cap. */
export const PAGE_DEFAULT = 50;
export const PAGE_MAX = 100;
