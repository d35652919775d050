import { type Conversation, MessageKind } from "@chatwire/client";
import { listTime } from "./format.js";
import { openConversation } from "./conversation.js";
import { h, errorText } from "./dom.js";
import { mediaLabel, photoOf } from "./media.js";
import { client, state, remember, titleOf, blank, isMuted, activity, systemText } from "./state.js";
import { renderStatus } from "./status.js";

// The sidebar: the chat list, new chat / new group, and the Chats / Status tabs.

export function renderList(): void {
  const list = document.getElementById("list");
  if (!list) return;
  const unread = [...state.convs.values()].reduce((n, cs) => n + cs.conv.unreadCount, 0);
  document.title = unread > 0 ? `(${unread}) Chatwire` : "Chatwire";
  const all = [...state.convs.values()];
  const archived = all.filter((cs) => cs.conv.archived).length;
  const sorted = all.filter((cs) => cs.conv.archived === state.showArchived).sort((a, b) => Number(activity(b) - activity(a)));
  const toggle = (show: boolean) => () => {
    state.showArchived = show;
    renderList();
  };
  list.replaceChildren(
    ...(state.showArchived
      ? [h("li", { class: "archived-row", "data-testid": "archived-back", onclick: toggle(false) }, "‹ Archived chats")]
      : archived > 0
        ? [h("li", { class: "archived-row", "data-testid": "archived-row", onclick: toggle(true) }, `Archived (${archived})`)]
        : []),
    ...sorted.map((cs) => {
      const c = cs.conv;
      const last = c.lastMessage;
      const preview = !last
        ? ""
        : last.kind === MessageKind.SYSTEM
          ? systemText(last)
          : last.deletedAt
            ? "This message was deleted"
            : `${last.senderId === state.me ? "You: " : ""}${last.content || mediaLabel(last)}`;
      return h(
        "li",
        {
          class: `item${state.open === c.id ? " active" : ""}`,
          "data-testid": "conversation",
          "data-id": c.id,
          onclick: () => void openConversation(c.id),
        },
        avatarOf(c),
        h("span", { class: "title" }, titleOf(c)),
        h("span", { class: `when${c.unreadCount > 0 ? " fresh" : ""}`, "data-testid": "when" }, listTime(last?.createdAt || c.createdAt)),
        h("span", { class: "preview" }, preview),
        h(
          "span",
          { class: "flags" },
          isMuted(c) && h("span", { class: "muted-icon", "data-testid": "muted", title: "Muted" }, "🔇"),
          c.unreadCount > 0 && h("span", { class: `badge${isMuted(c) ? " quiet" : ""}`, "data-testid": "unread" }, String(c.unreadCount)),
        ),
      );
    }),
  );
}

export function showNewChat(group: boolean): void {
  const box = document.getElementById("new")!;
  const status = h("p", { class: "status" });
  const phones = h("input", {
    name: "phones",
    type: "tel",
    required: true,
    placeholder: group ? "+90555…, +90532…" : "+905551234567",
  });
  const name = h("input", { name: "group", required: true, placeholder: "Weekend plans" });
  box.replaceChildren(
    h(
      "form",
      {
        class: "new-form",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          const numbers = phones.value.split(/[,;\s]+/).filter(Boolean);
          try {
            const { conversation } = await client.chat.createConversation({
              participantPhoneNumbers: numbers,
              isGroup: group,
              groupName: group ? name.value.trim() : "",
            });
            if (!conversation) return;
            const others = conversation.participantIds.filter((p) => p !== state.me);
            if (!group && others[0] && numbers[0]) remember(others[0], numbers[0]);
            if (!state.convs.has(conversation.id)) state.convs.set(conversation.id, blank(conversation));
            box.replaceChildren();
            renderList();
            await openConversation(conversation.id);
          } catch (err) {
            status.textContent = errorText(err);
          }
        },
      },
      group && h("label", {}, "Group name", name),
      h("label", {}, group ? "Phone numbers" : "Their phone number", phones),
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit" }, group ? "Create group" : "Start chat"),
        h("button", { type: "button", class: "link", onclick: () => box.replaceChildren() }, "Cancel"),
      ),
      status,
    ),
  );
  (group ? name : phones).focus();
}

export function showTab(tab: "chats" | "status"): void {
  state.tab = tab;
  for (const t of ["chats", "status"] as const) document.getElementById(`tab-${t}`)?.setAttribute("aria-selected", String(t === tab));
  document.getElementById("list")?.classList.toggle("hidden", tab !== "chats");
  document.getElementById("status-view")?.classList.toggle("hidden", tab !== "status");
  if (tab === "status") void renderStatus();
}

/** The list's round picture: the other person's profile photo in a direct chat, else initials. */
function avatarOf(c: Conversation): HTMLElement {
  const other = c.isGroup ? undefined : c.participantIds.find((p) => p !== state.me);
  const photo = other ? photoOf(state.photos.get(other) ?? "", titleOf(c)) : undefined;
  return h("span", { class: "avatar" }, photo ?? (c.isGroup ? titleOf(c) : titleOf(c).replace(/^\+\d*?(\d{2})$/, "$1")).slice(0, 2).toUpperCase());
}
