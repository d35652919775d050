import { ParticipantRole, type Conversation } from "@chatwire/client";
import { resolveNames } from "./app.js";
import { closeConversation } from "./conversation.js";
import { h, errorText } from "./dom.js";
import { client, state, nameOf } from "./state.js";

// Group info: members and roles, and leaving.

const ROLE_LABEL: Partial<Record<ParticipantRole, string>> = { [ParticipantRole.OWNER]: "Group owner", [ParticipantRole.ADMIN]: "Group admin" };

/** Group info: the members with their roles, and "Leave group". */
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
  box.replaceChildren(
    h(
      "section",
      { class: "info", "data-testid": "info", "aria-label": "Group info" },
      h("h3", {}, conv.groupName || "Group"),
      conv.groupDescription && h("p", { class: "hint" }, conv.groupDescription),
      h("p", { class: "hint" }, `${members.length} members`),
      h(
        "ul",
        { class: "members" },
        ...members.map((p) =>
          h("li", { "data-testid": "member" }, h("span", {}, nameOf(p.userId)), ROLE_LABEL[p.role] && h("span", { class: "role" }, ROLE_LABEL[p.role])),
        ),
      ),
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
