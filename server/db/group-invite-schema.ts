import type { Generated } from "kysely";

// ---- 0019_group_policies_invites ---------------------------------------------------

/** An invite link of a group, or a personal invite (invitee_id set). */
interface GroupInviteLinksTable {
  code: string;
  conversation_id: string;
  created_by: string;
  created_at: Date;
  /** Null: never expires. */
  expires_at: Date | null;
  /** 0: no limit. */
  max_uses: Generated<number>;
  use_count: Generated<number>;
  requires_approval: Generated<boolean>;
  revoked_at: Date | null;
  invitee_id: string | null;
}

/** One per (group, user). */
export interface GroupJoinRequestsTable {
  conversation_id: string;
  user_id: string;
  /** pending | approved | rejected. */
  state: string;
  created_at: Date;
  added_by: string | null;
  invite_code: string | null;
  decided_at: Date | null;
  decided_by: string | null;
}

export interface GroupInviteTables {
  group_invite_links: GroupInviteLinksTable;
  group_join_requests: GroupJoinRequestsTable;
}
