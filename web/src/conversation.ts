import { ReceiptState } from "@chatwire/client";
import { resolveNames, onMessage, onEdited, markRead } from "./app.js";
import { h, errorText } from "./dom.js";
import { showGroupInfo } from "./group-info.js";
import { renderList } from "./list.js";
import { sendFile } from "./media.js";
import { renderMessages, renderComposerBar } from "./message-view.js";
import { client, type ConvState, state, nameOf, titleOf, isMuted, timestamp } from "./state.js";

// One open conversation: its pane, history paging, header tools (mute, archive), typing and presence.

export async function openConversation(id: string): Promise<void> {
  const cs = state.convs.get(id);
  if (!cs) return;
  state.open = id;
  state.menuFor = state.replyTo = state.editing = undefined;
  document.body.classList.add("open");
  const pane = document.getElementById("pane")!;
  const input = h("input", {
    name: "text",
    placeholder: "Message",
    autocomplete: "off",
    "aria-label": "Message",
    "data-testid": "composer",
    oninput: () => typing(true),
  });
  const form = h(
    "form",
    {
      class: "composer",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        input.value = "";
        typing(false);
        const editing = state.editing;
        const replyTo = state.replyTo;
        state.editing = state.replyTo = undefined;
        renderComposerBar();
        try {
          if (editing) {
            const { message } = await client.chat.editMessage({ messageId: editing, content: text });
            if (message) onEdited(message);
            return;
          }
          const m = await client.sendMessage(id, text, replyTo ? { replyToMessageId: replyTo } : {});
          if (!cs.messages.has(m.id) || cs.messages.get(m.id)!.seq === 0n) onMessage(m);
        } catch (err) {
          input.value = text;
          state.editing = editing;
          state.replyTo = replyTo;
          renderComposerBar();
          alert(`${editing ? "Not edited" : "Not sent"}: ${errorText(err)}`);
        }
      },
    },
    attachButton(id, cs, input),
    input,
    h("button", { type: "submit", "data-testid": "send" }, "Send"),
  );
  pane.replaceChildren(
    h(
      "header",
      { class: "conv-header" },
      h("button", { class: "back", "aria-label": "Back", onclick: closeConversation }, "‹"),
      h("div", { class: "conv-name" }, h("h2", { id: "conv-title" }), h("div", { id: "typing", class: "typing", "data-testid": "typing" })),
      h("div", { id: "conv-tools", class: "conv-tools" }),
    ),
    h("div", { id: "info" }),
    h("ol", { id: "messages", class: "messages", "data-testid": "messages" }),
    h("div", { id: "composer-bar", class: "composer-bar" }),
    form,
  );
  renderHeader();
  renderList();
  void resolveNames([cs.conv], true); // names may have changed since they were fetched
  const other = cs.conv.isGroup ? undefined : cs.conv.participantIds.find((p) => p !== state.me);
  if (other) {
    client.realtime.getPresence({ userIds: [other] }).then(
      ({ users }) => {
        for (const u of users) state.presence.set(u.userId, { online: u.online, lastSeen: u.lastSeenAt ? Number(u.lastSeenAt.seconds) * 1000 : undefined });
        renderTyping();
      },
      () => undefined,
    );
  }
  if (!cs.loaded) {
    await loadMessages(cs);
    cs.loaded = true;
  }
  if (state.open !== id) return;
  renderMessages();
  const last = [...cs.messages.values()].reduce((max, m) => (m.seq > max ? m.seq : max), 0n);
  markRead(cs, last);
  renderList();
  input.focus();
}

/** One page of history (50), newest first from the server; `beforeSeq` pages back. */
async function loadMessages(cs: ConvState, beforeSeq?: bigint): Promise<void> {
  const res = await client.chat.listMessages({ conversationId: cs.conv.id, limit: 50, beforeSeq });
  cs.hasMore = res.hasMore;
  for (const m of res.messages) {
    cs.messages.set(m.id, m);
    // The stored state of my messages seeds the watermarks until receipts arrive.
    if (m.senderId === state.me) {
      if (m.receiptState >= ReceiptState.DELIVERED && m.seq > cs.deliveredAll) cs.deliveredAll = m.seq;
      if (m.receiptState === ReceiptState.READ && m.seq > cs.readAll) cs.readAll = m.seq;
    }
  }
}

export async function loadOlder(cs: ConvState): Promise<void> {
  const list = document.getElementById("messages");
  const first = [...cs.messages.values()].reduce((min, m) => (m.seq > 0n && m.seq < min ? m.seq : min), 1n << 62n);
  const fromBottom = list ? list.scrollHeight - list.scrollTop : 0;
  await loadMessages(cs, first);
  renderMessages();
  if (list) list.scrollTop = list.scrollHeight - fromBottom; // keep the reader's place
}

export function closeConversation(): void {
  state.open = undefined;
  document.body.classList.remove("open");
  renderList();
}

export function renderHeader(): void {
  const cs = state.open ? state.convs.get(state.open) : undefined;
  const el = document.getElementById("conv-title");
  if (cs && el) {
    el.textContent = titleOf(cs.conv);
    el.title = cs.conv.isGroup ? cs.conv.participantIds.map(nameOf).join(", ") : "";
  }
  const tools = document.getElementById("conv-tools");
  if (!cs || !tools) return;
  const c = cs.conv;
  const mute = h(
    "select",
    { "aria-label": "Mute", "data-testid": "mute", onchange: () => void setMute(c.id, mute.value) },
    h("option", { value: "" }, isMuted(c) ? "Muted" : "Mute…"),
    h("option", { value: "8h" }, "Mute 8 hours"),
    h("option", { value: "1w" }, "Mute 1 week"),
    h("option", { value: "always" }, "Mute always"),
    isMuted(c) && h("option", { value: "off" }, "Unmute"),
  );
  tools.replaceChildren(
    ...(c.isGroup ? [h("button", { class: "link", "data-testid": "group-info", onclick: () => void showGroupInfo(c.id) }, "Group info")] : []),
    mute,
    h("button", { class: "link", "data-testid": "archive", onclick: () => void setArchived(c.id, !c.archived) }, c.archived ? "Unarchive" : "Archive"),
  );
}

async function setMute(id: string, choice: string): Promise<void> {
  const cs = state.convs.get(id);
  if (!cs || !choice) return;
  const hours = { "8h": 8, "1w": 24 * 7, always: 24 * 365 }[choice];
  const mutedUntil = hours ? timestamp(Date.now() + hours * 3_600_000) : undefined;
  try {
    await client.chat.muteConversation({ conversationId: id, mutedUntil });
    cs.conv.mutedUntil = mutedUntil;
  } catch (err) {
    alert(`Not changed: ${errorText(err)}`);
  }
  renderHeader();
  renderList();
}

async function setArchived(id: string, archived: boolean): Promise<void> {
  const cs = state.convs.get(id);
  if (!cs) return;
  try {
    await client.chat.archiveConversation({ conversationId: id, archived });
    cs.conv.archived = archived;
  } catch (err) {
    alert(`Not changed: ${errorText(err)}`);
  }
  if (archived && state.open === id) closeConversation();
  renderHeader();
  renderList();
}

export function renderTyping(): void {
  const cs = state.open ? state.convs.get(state.open) : undefined;
  const el = document.getElementById("typing");
  if (!el || !cs) return;
  const now = Date.now();
  for (const [u, exp] of cs.typing) if (exp <= now) cs.typing.delete(u);
  const who = [...cs.typing.keys()];
  if (who.length > 0) {
    el.textContent = cs.conv.isGroup ? `${who.map(nameOf).join(", ")} typing…` : "typing…";
    el.dataset.typing = "true";
    return;
  }
  delete el.dataset.typing;
  const other = cs.conv.isGroup ? undefined : cs.conv.participantIds.find((p) => p !== state.me);
  const p = other ? state.presence.get(other) : undefined;
  el.textContent = !p
    ? ""
    : p.online
      ? "online"
      : p.lastSeen
        ? `last seen ${new Date(p.lastSeen).toLocaleString([], { dateStyle: "short", timeStyle: "short" })}`
        : "";
}
let typingSentAt = 0;
let typingStop: ReturnType<typeof setTimeout> | undefined;
/** At most one SendTyping(active) per 3 s while typing; stopped after 4 s of quiet or on send. */
function typing(active: boolean): void {
  const id = state.open;
  if (!id) return;
  clearTimeout(typingStop);
  if (active) {
    if (Date.now() - typingSentAt > 3000) {
      typingSentAt = Date.now();
      client.realtime.sendTyping({ conversationId: id, active: true }).catch(() => undefined);
    }
    typingStop = setTimeout(() => typing(false), 4000);
  } else if (typingSentAt) {
    typingSentAt = 0;
    client.realtime.sendTyping({ conversationId: id, active: false }).catch(() => undefined);
  }
}

/** The 📎 button: pick a file, upload it with the composer's text as its caption, and send it. */
function attachButton(id: string, cs: ConvState, input: HTMLInputElement): HTMLElement {
  const file = h("input", { type: "file", class: "hidden", "data-testid": "attach-file", "aria-label": "Attach a file" });
  file.addEventListener("change", async () => {
    const picked = file.files?.[0];
    file.value = "";
    if (!picked) return;
    const caption = input.value.trim();
    input.value = "";
    const bar = document.getElementById("composer-bar");
    const shown = h("div", { class: "bar", "data-testid": "uploading" }, h("span", { class: "quote" }, `Sending ${picked.name}…`));
    bar?.replaceChildren(shown);
    try {
      const m = await sendFile(id, picked, caption, (share) => {
        shown.firstElementChild!.textContent = `Sending ${picked.name}… ${Math.round(share * 100)} %`;
      });
      if (m && (!cs.messages.has(m.id) || cs.messages.get(m.id)!.seq === 0n)) onMessage(m);
    } catch (err) {
      input.value = caption;
      alert(`Not sent: ${errorText(err)}`);
    } finally {
      renderComposerBar();
    }
  });
  return h("label", { class: "attach", title: "Attach a photo, video or file" }, "📎", file);
}
