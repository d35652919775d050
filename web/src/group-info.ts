import { ParticipantRole, type Conversation, type Participant } from "@chatwire/client";
import { resolveNames } from "./app.js";
import { closeConversation } from "./conversation.js";
import { h, errorText } from "./dom.js";
import { client, state, nameOf, remember } from "./state.js";

// Group info: members and roles; admins add members, remove them and make or dismiss admins; leaving.

const ROLE_LABEL: Partial<Record<ParticipantRole, string>> = { [ParticipantRole.OWNER]: "Group owner", [ParticipantRole.ADMIN]: "Group admin" };

/** Group info: the members with their roles (and, for admins, what they may change), and "Leave group". */
export async function showGroupInfo(id: string): Promise<void> {
  const box = document.getElementById("info");
  if (!box) return;
  let conv: Conversation | undefined;
  try {
    conv = (await client.chat.getConversation({ conversationId: id })).conversation;
  } catch (err) {
    alert(errorText(err));
    return;
  }
  if (!conv || state.open !== id) return;
  await resolveNames([conv], true);
  const members = [...conv.participants].sort((a, b) => b.role - a.role);
  const myRole = conv.participants.find((p) => p.userId === state.me)?.role ?? ParticipantRole.MEMBER;
  const admin = myRole === ParticipantRole.ADMIN || myRole === ParticipantRole.OWNER;
  box.replaceChildren(
    h(
      "section",
      { class: "info", "data-testid": "info", "aria-label": "Group info" },
      h("h3", {}, conv.groupName || "Group"),
      conv.groupDescription && h("p", { class: "hint" }, conv.groupDescription),
      h("p", { class: "hint" }, `${members.length} members`),
      h("ul", { class: "members" }, ...members.map((p) => memberItem(id, p, admin))),
      admin && addMembersForm(id),
      h(
        "div",
        { class: "row" },
        h("button", { class: "danger", "data-testid": "leave", onclick: () => void leaveGroup(id) }, "Leave group"),
        h("button", { class: "link", onclick: () => box.replaceChildren() }, "Close"),
      ),
    ),
  );
}

async function leaveGroup(id: string): Promise<void> {
  if (!confirm("Leave this group?")) return;
  try {
    await client.chat.leaveConversation({ conversationId: id });
  } catch (err) {
    alert(`Not left: ${errorText(err)}`);
    return;
  }
  state.left.add(id);
  state.convs.delete(id);
  closeConversation();
  document.getElementById("pane")?.replaceChildren(h("p", { class: "empty" }, "You left the group."));
}

/** One member: name and role; for an admin, buttons to make or dismiss an admin and to remove (never the owner, never oneself). */
function memberItem(id: string, p: Participant, admin: boolean): HTMLElement {
  const act = (label: string, testid: string, run: () => Promise<unknown>) =>
    h(
      "button",
      {
        class: "link",
        "data-testid": testid,
        onclick: async () => {
          try {
            await run();
          } catch (err) {
            alert(`Not changed: ${errorText(err)}`);
          }
          await showGroupInfo(id);
        },
      },
      label,
    );
  const manageable = admin && p.userId !== state.me && p.role !== ParticipantRole.OWNER;
  const makeAdmin = p.role === ParticipantRole.MEMBER;
  return h(
    "li",
    { "data-testid": "member", "data-user": p.userId },
    h("span", {}, nameOf(p.userId)),
    ROLE_LABEL[p.role] && h("span", { class: "role" }, ROLE_LABEL[p.role]),
    manageable &&
      h(
        "span",
        { class: "member-tools" },
        act(makeAdmin ? "Make admin" : "Dismiss as admin", makeAdmin ? "make-admin" : "dismiss-admin", () =>
          client.chat.setParticipantRole({ conversationId: id, userId: p.userId, role: makeAdmin ? ParticipantRole.ADMIN : ParticipantRole.MEMBER }),
        ),
        act("Remove", "remove-member", async () => {
          if (confirm(`Remove ${nameOf(p.userId)} from the group?`)) await client.chat.removeParticipant({ conversationId: id, userId: p.userId });
        }),
      ),
  );
}

/** "Add members" by phone number: the numbers become contacts (SyncContacts, as a phone's address book would), then AddParticipants. */
function addMembersForm(id: string): HTMLElement {
  const phones = h("input", { name: "add-phones", type: "tel", placeholder: "+90555…, +90532…", "aria-label": "Add members by phone number" });
  const status = h("p", { class: "status", role: "status" });
  return h(
    "form",
    {
      class: "row add-members",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const numbers = phones.value.split(/[,;\s]+/).filter(Boolean);
        if (numbers.length === 0) return;
        try {
          const { contacts, invalidPhoneNumbers } = await client.users.syncContacts({ phoneNumbers: numbers });
          for (const c of contacts) if (c.user) remember(c.user.id, c.user.displayName || c.user.phoneNumber);
          const ids = contacts.flatMap((c) => (c.user ? [c.user.id] : []));
          if (ids.length === 0) {
            status.textContent = invalidPhoneNumbers.length > 0 ? `Not a phone number: ${invalidPhoneNumbers.join(", ")}` : "No Chatwire user has that number.";
            return;
          }
          await client.chat.addParticipants({ conversationId: id, userIds: ids });
          await showGroupInfo(id);
        } catch (err) {
          status.textContent = errorText(err);
        }
      },
    },
    phones,
    h("button", { type: "submit", "data-testid": "add-members" }, "Add"),
    status,
  );
}
