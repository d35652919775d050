import { MessageKind, ReceiptState, type Message } from "@chatwire/client";
import { dayKey, dayLabel, linkify } from "./format.js";
import { mediaOf } from "./media.js";
import { loadOlder } from "./conversation.js";
import { h, errorText } from "./dom.js";
import { client, type ConvState, state, nameOf, systemText } from "./state.js";

// The messages of the open conversation: bubbles, ticks, quotes, reactions, the message menu, the composer bar.

/** The emoji offered in a message's menu. */
const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

function tickOf(cs: ConvState, m: Message): "sent" | "delivered" | "read" {
  if (m.receiptState === ReceiptState.READ || (m.seq > 0n && m.seq <= cs.readAll)) return "read";
  if (m.receiptState === ReceiptState.DELIVERED || (m.seq > 0n && m.seq <= cs.deliveredAll)) return "delivered";
  return "sent";
}

export function renderMessages(): void {
  const cs = state.open ? state.convs.get(state.open) : undefined;
  const list = document.getElementById("messages");
  if (!cs || !list) return;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const sorted = [...cs.messages.values()].sort((a, b) => Number((a.seq || 1n << 62n) - (b.seq || 1n << 62n)));
  const items: HTMLElement[] = [];
  if (cs.hasMore) items.push(h("li", { class: "older" }, h("button", { class: "link", onclick: () => void loadOlder(cs) }, "Earlier messages")));
  let day = "";
  for (const m of sorted) {
    const key = m.createdAt ? dayKey(m.createdAt) : day;
    if (key && key !== day) {
      day = key;
      items.push(h("li", { class: "day", "data-testid": "day" }, dayLabel(m.createdAt)));
    }
    items.push(m.kind === MessageKind.SYSTEM ? h("li", { class: "system" }, systemText(m)) : messageItem(cs, m));
  }
  list.replaceChildren(...items);
  if (atBottom || sorted.at(-1)?.senderId === state.me) list.scrollTop = list.scrollHeight;
}

function messageItem(cs: ConvState, m: Message): HTMLElement {
  const mine = m.senderId === state.me;
  const deleted = m.deletedAt !== undefined;
  const tick = mine && !deleted ? tickOf(cs, m) : undefined;
  const time = m.createdAt ? new Date(m.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  const quoted = m.replyToMessageId && !deleted ? cs.messages.get(m.replyToMessageId) : undefined;
  return h(
    "li",
    { class: `msg ${mine ? "mine" : "theirs"}${deleted ? " deleted" : ""}`, "data-testid": "message", "data-id": m.id, "data-seq": String(m.seq) },
    cs.conv.isGroup && !mine && h("span", { class: "from" }, nameOf(m.senderId)),
    m.replyToMessageId && !deleted && quoteOf(quoted),
    !deleted && mediaOf(m),
    deleted ? h("span", { class: "text gone" }, "🚫 This message was deleted") : m.content !== "" && h("span", { class: "text" }, ...linkify(m.content)),
    h(
      "span",
      { class: "meta" },
      m.editedAt && !deleted && h("span", { class: "edited", "data-testid": "edited" }, "edited"),
      time,
      tick && h("span", { class: `tick ${tick}`, "data-testid": "tick", "data-state": tick, title: tick }, tick === "sent" ? "✓" : "✓✓"),
    ),
    !deleted &&
      m.seq > 0n &&
      h(
        "button",
        {
          class: "menu-button",
          "aria-label": "Message menu",
          "aria-haspopup": "menu",
          "data-testid": "menu-button",
          onclick: (e: Event) => {
            e.stopPropagation();
            state.menuFor = state.menuFor === m.id ? undefined : m.id;
            renderMessages();
          },
        },
        "⌄",
      ),
    !deleted && m.reactions.length > 0 && reactionsOf(m),
    state.menuFor === m.id && !deleted && menuOf(m, mine),
  );
}

function quoteOf(quoted: Message | undefined): HTMLElement {
  return h(
    "span",
    { class: "quote", "data-testid": "quote" },
    h("span", { class: "from" }, quoted ? nameOf(quoted.senderId) : ""),
    h("span", { class: "quote-text" }, !quoted ? "Earlier message" : quoted.deletedAt ? "This message was deleted" : quoted.content),
  );
}

function reactionsOf(m: Message): HTMLElement {
  return h(
    "span",
    { class: "reactions", "data-testid": "reactions" },
    ...m.reactions.map((r) => {
      const minePicked = r.userIds.includes(state.me);
      return h(
        "button",
        {
          class: `reaction${minePicked ? " picked" : ""}`,
          "data-testid": "reaction",
          "data-emoji": r.emoji,
          title: r.userIds.map(nameOf).join(", "),
          onclick: () => void react(m, minePicked ? "" : r.emoji),
        },
        `${r.emoji}${r.count > 1 ? ` ${r.count}` : ""}`,
      );
    }),
  );
}

function menuOf(m: Message, mine: boolean): HTMLElement {
  const item = (label: string, action: () => void, testid: string) =>
    h(
      "button",
      {
        role: "menuitem",
        class: "menu-item",
        "data-testid": testid,
        onclick: (e: Event) => {
          e.stopPropagation();
          state.menuFor = undefined;
          action();
          renderMessages();
        },
      },
      label,
    );
  return h(
    "div",
    { class: "menu", role: "menu", "data-testid": "menu" },
    h("div", { class: "emoji-row" }, ...REACTIONS.map((e) => item(e, () => void react(m, e), `react-${e}`))),
    item("Reply", () => startReply(m), "reply"),
    mine && m.kind === MessageKind.USER && item("Edit", () => startEdit(m), "edit"),
    mine && item("Delete for everyone", () => void remove(m, true), "delete-everyone"),
    item("Delete for me", () => void remove(m, false), "delete-me"),
  );
}

async function react(m: Message, emoji: string): Promise<void> {
  try {
    const { reactions } = await client.chat.reactToMessage({ messageId: m.id, emoji });
    const cs = state.convs.get(m.conversationId);
    const stored = cs?.messages.get(m.id);
    if (stored) stored.reactions = reactions;
    if (state.open === m.conversationId) renderMessages();
  } catch (err) {
    alert(`Reaction not saved: ${errorText(err)}`);
  }
}

async function remove(m: Message, forEveryone: boolean): Promise<void> {
  if (!confirm(forEveryone ? "Delete this message for everyone?" : "Delete this message for you?")) return;
  try {
    await client.chat.deleteMessage({ messageId: m.id, forEveryone });
  } catch (err) {
    alert(`Not deleted: ${errorText(err)}`);
  }
  // The realtime event (messageDeleted) updates the view on every device, this one too.
}

function composerInput(): HTMLInputElement | undefined {
  return document.querySelector<HTMLInputElement>("[data-testid=composer]") ?? undefined;
}

function startReply(m: Message): void {
  state.editing = undefined;
  state.replyTo = m.id;
  renderComposerBar();
  composerInput()?.focus();
}

function startEdit(m: Message): void {
  state.replyTo = undefined;
  state.editing = m.id;
  const input = composerInput();
  if (input) {
    input.value = m.content;
    input.focus();
  }
  renderComposerBar();
}

/** The strip above the composer: the message replied to, or "Editing". */
export function renderComposerBar(): void {
  const bar = document.getElementById("composer-bar");
  const cs = state.open ? state.convs.get(state.open) : undefined;
  if (!bar || !cs) return;
  const cancel = h(
    "button",
    {
      class: "link",
      "aria-label": "Cancel",
      onclick: () => {
        if (state.editing) {
          const input = composerInput();
          if (input) input.value = "";
        }
        state.replyTo = state.editing = undefined;
        renderComposerBar();
      },
    },
    "✕",
  );
  if (state.replyTo) bar.replaceChildren(h("div", { class: "bar", "data-testid": "replying" }, quoteOf(cs.messages.get(state.replyTo)), cancel));
  else if (state.editing) bar.replaceChildren(h("div", { class: "bar", "data-testid": "editing" }, h("span", { class: "quote" }, "Editing message"), cancel));
  else bar.replaceChildren();
}
