import {
  Code,
  ConnectError,
  createChatwireClient,
  MessageKind,
  ParticipantRole,
  ReceiptState,
  type Conversation,
  type Message,
  type Subscription,
} from "@chatwire/client";
import { dayKey, dayLabel, linkify, listTime } from "./format.js";
import { enablePush, registerServiceWorker } from "./push.js";
import "./style.css";

// The Chatwire browser client: plain DOM, one module. State lives in the
// objects below; render functions redraw the part that changed.

const client = createChatwireClient({ baseUrl: location.origin });

interface ConvState {
  conv: Conversation;
  messages: Map<string, Message>; // by id; only filled once opened
  loaded: boolean;
  /** My messages with seq ≤ these are delivered to / read by everyone else. */
  deliveredAll: bigint;
  readAll: bigint;
  typing: Map<string, number>; // user id → expiry (ms)
  /** Older messages exist beyond the loaded ones. */
  hasMore: boolean;
}

const state = {
  me: "",
  myPhone: localStorage.getItem("chatwire.phone") ?? "",
  convs: new Map<string, ConvState>(),
  open: undefined as string | undefined,
  names: new Map<string, string>(JSON.parse(localStorage.getItem("chatwire.names") ?? "[]") as Array<[string, string]>),
  sub: undefined as Subscription | undefined,
  presence: new Map<string, { online: boolean; lastSeen?: number }>(),
  online: false,
  /** The message whose menu is open, the one being replied to, the one being edited. */
  menuFor: undefined as string | undefined,
  replyTo: undefined as string | undefined,
  editing: undefined as string | undefined,
  /** The list shows archived conversations instead of the others. */
  showArchived: false,
  /** The sidebar shows the chats or the status updates. */
  tab: "chats" as "chats" | "status",
  /** Groups left in this session: their late events (the "left" message, updates) do not bring them back. */
  left: new Set<string>(),
};

/** The emoji offered in a message's menu. */
const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

const app = document.getElementById("app")!;

// ---------- tiny DOM helper ----------

type Child = Node | string | null | undefined | false;
function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Record<string, unknown> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v as EventListener);
    else if (k === "class") el.className = String(v);
    else if (k === "value") (el as HTMLInputElement).value = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

function errorText(err: unknown): string {
  const ce = ConnectError.from(err);
  return ce.rawMessage || Code[ce.code];
}

// ---------- names ----------

function remember(id: string, name: string): void {
  if (!id || !name || state.names.get(id) === name) return;
  state.names.set(id, name);
  localStorage.setItem("chatwire.names", JSON.stringify([...state.names]));
}

function nameOf(id: string): string {
  if (id === state.me) return "You";
  return state.names.get(id) ?? `User ${id.slice(0, 6)}`;
}

/** Fetches the names (or phone numbers) of participants not seen yet; redraws when they arrive. */
const asked = new Set<string>();
async function resolveNames(convs: Iterable<Conversation>, refresh = false): Promise<void> {
  const ids = new Set<string>();
  for (const c of convs) for (const p of c.participantIds) if (p !== state.me && (refresh || !asked.has(p))) ids.add(p);
  const batch = [...ids].slice(0, 100);
  if (batch.length === 0) return;
  batch.forEach((id) => asked.add(id));
  try {
    const { users } = await client.users.getUsers({ userIds: batch });
    for (const u of users) remember(u.id, u.displayName || u.phoneNumber);
  } catch {
    batch.forEach((id) => asked.delete(id)); // try again with the next change
    return;
  }
  renderList();
  renderHeader();
  renderMessages();
  if (ids.size > batch.length) await resolveNames(convs, refresh);
}

function titleOf(c: Conversation): string {
  if (c.isGroup) return c.groupName || "Group";
  const other = c.participantIds.find((p) => p !== state.me);
  return other ? nameOf(other) : "Just you";
}

// ---------- login ----------

function renderLogin(message = ""): void {
  document.body.className = "login";
  let phone = state.myPhone;
  const status = h("p", { class: "status", role: "status" }, message);
  const phoneInput = h("input", {
    name: "phone",
    type: "tel",
    placeholder: "+905551234567",
    autocomplete: "tel",
    value: phone,
    required: true,
    "aria-label": "Phone number",
  });
  const codeInput = h("input", {
    name: "code",
    inputmode: "numeric",
    placeholder: "6-digit code",
    autocomplete: "one-time-code",
    "aria-label": "Code",
  });
  const codeForm = h(
    "form",
    {
      class: "hidden",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        status.textContent = "Checking…";
        try {
          const res = await client.auth.verify(phone, codeInput.value.trim());
          state.myPhone = phone;
          localStorage.setItem("chatwire.phone", phone);
          if (res.user) remember(res.user.id, res.user.displayName || res.user.phoneNumber);
          await start();
        } catch (err) {
          status.textContent = errorText(err);
        }
      },
    },
    h("label", {}, "Code", codeInput),
    h("p", { class: "hint" }, "In development mode the code is 123456."),
    h("button", { type: "submit" }, "Log in"),
  );
  const phoneForm = h(
    "form",
    {
      onsubmit: async (e: Event) => {
        e.preventDefault();
        phone = phoneInput.value.replace(/[\s()-]/g, "");
        status.textContent = "Sending code…";
        try {
          await client.auth.sendCode(phone);
          status.textContent = `Code sent to ${phone}.`;
        } catch (err) {
          // A second request within 30 s is refused, but the first code still works.
          if (ConnectError.from(err).code !== Code.ResourceExhausted) {
            status.textContent = errorText(err);
            return;
          }
          status.textContent = "A code was sent recently: use it.";
        }
        codeForm.classList.remove("hidden");
        codeInput.focus();
      },
    },
    h("label", {}, "Phone number", phoneInput),
    h("button", { type: "submit" }, "Send code"),
  );
  app.replaceChildren(h("main", { class: "card" }, h("h1", {}, "Chatwire"), h("p", {}, "Log in with your phone number."), phoneForm, codeForm, status));
  phoneInput.focus();
}

// ---------- main view ----------

async function start(): Promise<void> {
  state.me = (await client.userId()) ?? "";
  if (state.myPhone) remember(state.me, state.myPhone);
  document.body.className = "chat";
  state.tab = "chats";
  app.replaceChildren(
    h(
      "div",
      { class: "layout" },
      h(
        "aside",
        { class: "sidebar" },
        h(
          "header",
          {},
          h("h1", {}, "Chatwire"),
          h(
            "button",
            { class: "link me-button", "data-testid": "profile", "aria-label": "Profile", onclick: () => void showProfile() },
            h("span", { id: "my-name", class: "my-name" }),
            h("span", { class: "me", "data-testid": "me" }, state.myPhone),
          ),
          h("span", { class: "conn", id: "conn", title: "connection" }),
          h("button", { class: "link", onclick: () => void logout() }, "Log out"),
        ),
        h(
          "div",
          { class: "push" },
          h("button", { class: "link", "data-testid": "enable-push", onclick: () => void turnOnPush() }, "Notifications"),
          h("span", { id: "push-status", "data-testid": "push-status" }),
        ),
        h(
          "div",
          { class: "actions" },
          h("button", { onclick: () => showNewChat(false), "data-testid": "new-chat" }, "New chat"),
          h("button", { onclick: () => showNewChat(true), "data-testid": "new-group" }, "New group"),
        ),
        h("div", { id: "new" }),
        h(
          "nav",
          { class: "tabs", role: "tablist" },
          h("button", { role: "tab", id: "tab-chats", "data-testid": "tab-chats", "aria-selected": "true", onclick: () => showTab("chats") }, "Chats"),
          h("button", { role: "tab", id: "tab-status", "data-testid": "tab-status", "aria-selected": "false", onclick: () => showTab("status") }, "Status"),
        ),
        h("ul", { id: "list", class: "list", "aria-label": "Conversations" }),
        h("div", { id: "status-view", class: "status-view hidden", "data-testid": "status-view" }),
      ),
      h("section", { id: "pane", class: "pane" }, h("p", { class: "empty" }, "Pick a conversation or start a new one.")),
    ),
  );
  // The service worker shows pushes while this page is closed; a click on one opens its conversation here.
  void registerServiceWorker().catch(() => undefined);
  client.users.getMe({}).then(
    ({ user }) => {
      if (user) showMyName(user.displayName);
    },
    () => undefined,
  );
  await reload();
}

/** The "Notifications" button: permission, subscription, registration for this session. */
async function turnOnPush(): Promise<void> {
  const status = document.getElementById("push-status");
  if (status) status.textContent = "…";
  const text = await enablePush(client).catch((err: unknown) => `Notifications unavailable: ${errorText(err)}`);
  if (status) status.textContent = text;
}

navigator.serviceWorker?.addEventListener("message", (e: MessageEvent<{ type?: string; conversationId?: string }>) => {
  if (e.data?.type === "open-conversation" && e.data.conversationId && state.convs.has(e.data.conversationId)) void openConversation(e.data.conversationId);
});

/** Loads the conversation list, then (re)subscribes from the position it was read at. */
async function reload(): Promise<void> {
  let res;
  try {
    res = await client.chat.getConversations({ limit: 100, includeArchived: true });
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) return renderLogin("Please log in again.");
    throw err;
  }
  const fresh = new Map<string, ConvState>();
  for (const conv of res.conversations) {
    const old = state.convs.get(conv.id);
    fresh.set(conv.id, { ...(old ?? blank(conv)), conv, loaded: false, messages: new Map() });
  }
  state.convs = fresh;
  renderList();
  void resolveNames(res.conversations);
  if (state.open && state.convs.has(state.open)) await openConversation(state.open);
  state.sub?.close();
  subscribe(res.inboxPosition);
}

/** A conversation event's snapshot may lack the last message and counters this page keeps: keep the newer. */
function merged(old: Conversation, now: Conversation): Conversation {
  const keepLast = old.lastMessage && (!now.lastMessage || old.lastMessage.seq > now.lastMessage.seq);
  return {
    ...now,
    lastMessage: keepLast ? old.lastMessage : now.lastMessage,
    lastSeq: maxSeq(old.lastSeq, now.lastSeq),
    myLastReadSeq: maxSeq(old.myLastReadSeq, now.myLastReadSeq),
    unreadCount: now.lastMessage && !keepLast ? now.unreadCount : old.unreadCount,
  };
}

/** The larger of two seqs (bigint: Math.max does not take them). */
function maxSeq(a: bigint, b: bigint): bigint {
  return a < b ? b : a;
}

function blank(conv: Conversation): ConvState {
  return { conv, messages: new Map(), loaded: false, deliveredAll: 0n, readAll: 0n, typing: new Map(), hasMore: false };
}

function subscribe(since: bigint): void {
  const sub = client.subscribe({ since });
  state.sub = sub;
  const setConn = (online: boolean) => {
    state.online = online;
    const el = document.getElementById("conn");
    if (el) el.className = `conn ${online ? "online" : "offline"}`;
  };
  sub.on("ready", () => setConn(true));
  sub.on("disconnected", () => setConn(false));
  sub.on("message", (m) => onMessage(m));
  sub.on("messageEdited", (m) => onEdited(m));
  sub.on("messageDeleted", (d) => {
    const cs = state.convs.get(d.conversationId);
    if (!cs) return;
    const m = cs.messages.get(d.messageId) ?? (cs.conv.lastMessage?.id === d.messageId ? cs.conv.lastMessage : undefined);
    if (!d.forEveryone) cs.messages.delete(d.messageId);
    else if (m) {
      m.deletedAt = timestamp(Date.now());
      m.content = "";
      m.reactions = [];
    }
    if (state.menuFor === d.messageId) state.menuFor = undefined;
    if (state.open === d.conversationId) renderMessages();
    renderList();
  });
  sub.on("reaction", (r) => {
    const m = state.convs.get(r.conversationId)?.messages.get(r.messageId);
    if (!m) return;
    m.reactions = r.reactions;
    if (state.open === r.conversationId) renderMessages();
  });
  sub.on("conversation", (conv) => {
    if (state.left.has(conv.id)) {
      if (!conv.participantIds.includes(state.me)) return;
      state.left.delete(conv.id); // added back
    }
    const cs = state.convs.get(conv.id);
    if (cs) cs.conv = merged(cs.conv, conv);
    else state.convs.set(conv.id, blank(conv));
    void resolveNames([conv]);
    renderList();
    if (state.open === conv.id) renderHeader();
  });
  sub.on("receipt", (r) => {
    const cs = state.convs.get(r.conversationId);
    if (!cs) return;
    if (r.deliveredToAllSeq > cs.deliveredAll) cs.deliveredAll = r.deliveredToAllSeq;
    if (r.readByAllSeq > cs.readAll) cs.readAll = r.readByAllSeq;
    if (state.open === r.conversationId) renderMessages();
  });
  sub.on("typing", (t) => {
    const cs = state.convs.get(t.conversationId);
    if (!cs || t.userId === state.me) return;
    if (t.active) cs.typing.set(t.userId, t.expiresAt ? Number(t.expiresAt.seconds) * 1000 + t.expiresAt.nanos / 1e6 : Date.now() + 6000);
    else cs.typing.delete(t.userId);
    renderTyping();
  });
  sub.on("presence", (p) => {
    state.presence.set(p.userId, { online: p.online, lastSeen: p.lastSeenAt ? Number(p.lastSeenAt.seconds) * 1000 : undefined });
    renderTyping();
  });
  sub.on("status", () => {
    if (state.tab === "status") void renderStatus();
  });
  sub.on("resync", () => void reload());
  sub.on("error", (err) => {
    setConn(false);
    if (err.code === Code.Unauthenticated) renderLogin("Your session ended. Please log in again.");
  });
}

function onMessage(m: Message): void {
  if (state.left.has(m.conversationId)) {
    if (m.systemEvent !== "participants_added" || !m.systemUserIds.includes(state.me)) return;
    state.left.delete(m.conversationId); // added back
  }
  const cs = state.convs.get(m.conversationId);
  if (!cs) {
    // A conversation we have not loaded yet (the event can precede its listing).
    void client.chat.getConversation({ conversationId: m.conversationId }).then(
      ({ conversation }) => {
        if (!conversation) return;
        const known = state.convs.get(conversation.id);
        const c = known?.conv ?? conversation;
        if (!known) state.convs.set(c.id, blank(c));
        // The message may be newer than the snapshot: show it as the last one, and count it if unread.
        if (!c.lastMessage || c.lastMessage.seq < m.seq) {
          if (c.lastSeq < m.seq && m.kind === MessageKind.USER && m.senderId !== state.me) c.unreadCount += 1;
          c.lastMessage = m;
          if (c.lastSeq < m.seq) c.lastSeq = m.seq;
        }
        void resolveNames([c]);
        renderList();
      },
      () => undefined,
    ); // not visible (any more): nothing to show
    return;
  }
  const known = cs.messages.has(m.id);
  if (cs.loaded) cs.messages.set(m.id, m);
  if (!cs.conv.lastMessage || m.seq >= cs.conv.lastMessage.seq) {
    cs.conv.lastMessage = m;
    if (m.seq > cs.conv.lastSeq) cs.conv.lastSeq = m.seq;
  }
  cs.typing.delete(m.senderId);
  const mine = m.senderId === state.me;
  if (state.open === m.conversationId) {
    renderMessages();
    renderTyping();
    if (!mine && m.seq > 0n) markRead(cs, m.seq);
  } else if (!mine && !known && m.kind === MessageKind.USER) {
    cs.conv.unreadCount += 1;
  }
  renderList();
}

/** An edit: the new text where the message is shown; never counts as unread. */
function onEdited(m: Message): void {
  const cs = state.convs.get(m.conversationId);
  if (!cs) return;
  const old = cs.messages.get(m.id);
  if (old) cs.messages.set(m.id, { ...m, reactions: m.reactions.length > 0 ? m.reactions : old.reactions });
  if (cs.conv.lastMessage?.id === m.id) cs.conv.lastMessage = m;
  if (state.open === m.conversationId) renderMessages();
  renderList();
}

function markRead(cs: ConvState, seq: bigint): void {
  if (seq <= cs.conv.myLastReadSeq) return;
  cs.conv.myLastReadSeq = seq;
  cs.conv.unreadCount = 0;
  client.chat.markRead({ conversationId: cs.conv.id, upToSeq: seq }).catch(() => undefined);
}

function renderList(): void {
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
            : `${last.senderId === state.me ? "You: " : ""}${last.content}`;
      return h(
        "li",
        {
          class: `item${state.open === c.id ? " active" : ""}`,
          "data-testid": "conversation",
          "data-id": c.id,
          onclick: () => void openConversation(c.id),
        },
        h("span", { class: "avatar" }, (c.isGroup ? titleOf(c) : titleOf(c).replace(/^\+\d*?(\d{2})$/, "$1")).slice(0, 2).toUpperCase()),
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

function isMuted(c: Conversation): boolean {
  return c.mutedUntil !== undefined && Number(c.mutedUntil.seconds) * 1000 > Date.now();
}

function timestamp(ms: number): NonNullable<Message["deletedAt"]> {
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(Math.floor(ms / 1000)), nanos: 0 };
}

function activity(cs: ConvState): bigint {
  const t = cs.conv.lastActivityAt;
  const last = cs.conv.lastMessage?.createdAt ? BigInt(Date.parse(cs.conv.lastMessage.createdAt) || 0) : 0n;
  const at = t ? t.seconds * 1000n : 0n;
  return last > at ? last : at;
}

function systemText(m: Message): string {
  const who = m.systemUserIds.map(nameOf).join(", ");
  const by = m.senderId ? nameOf(m.senderId) : "";
  switch (m.systemEvent) {
    case "group_created":
      return `${by || "Someone"} created the group`;
    case "participants_added":
      return `${who} joined`;
    case "participant_joined":
      return `${who} joined using an invite link`;
    case "group_policies_updated":
      return `${by || "An admin"} changed the group's settings`;
    case "participant_removed":
    case "participant_left":
      return `${who} left`;
    default:
      return m.systemEvent.replace(/_/g, " ");
  }
}

// ---------- one conversation ----------

async function openConversation(id: string): Promise<void> {
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

async function loadOlder(cs: ConvState): Promise<void> {
  const list = document.getElementById("messages");
  const first = [...cs.messages.values()].reduce((min, m) => (m.seq > 0n && m.seq < min ? m.seq : min), 1n << 62n);
  const fromBottom = list ? list.scrollHeight - list.scrollTop : 0;
  await loadMessages(cs, first);
  renderMessages();
  if (list) list.scrollTop = list.scrollHeight - fromBottom; // keep the reader's place
}

function closeConversation(): void {
  state.open = undefined;
  document.body.classList.remove("open");
  renderList();
}

function renderHeader(): void {
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

const ROLE_LABEL: Partial<Record<ParticipantRole, string>> = { [ParticipantRole.OWNER]: "Group owner", [ParticipantRole.ADMIN]: "Group admin" };

/** Group info: the members with their roles, and "Leave group". */
async function showGroupInfo(id: string): Promise<void> {
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

function tickOf(cs: ConvState, m: Message): "sent" | "delivered" | "read" {
  if (m.receiptState === ReceiptState.READ || (m.seq > 0n && m.seq <= cs.readAll)) return "read";
  if (m.receiptState === ReceiptState.DELIVERED || (m.seq > 0n && m.seq <= cs.deliveredAll)) return "delivered";
  return "sent";
}

function renderMessages(): void {
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
    deleted ? h("span", { class: "text gone" }, "🚫 This message was deleted") : h("span", { class: "text" }, ...linkify(m.content)),
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

document.addEventListener("click", (e) => {
  if (state.menuFor && !(e.target instanceof Element && e.target.closest(".menu"))) {
    state.menuFor = undefined;
    renderMessages();
  }
});

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
function renderComposerBar(): void {
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

function renderTyping(): void {
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
setInterval(renderTyping, 1000);

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

// ---------- new chat / group ----------

function showNewChat(group: boolean): void {
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

// ---------- status ----------

function showTab(tab: "chats" | "status"): void {
  state.tab = tab;
  for (const t of ["chats", "status"] as const) document.getElementById(`tab-${t}`)?.setAttribute("aria-selected", String(t === tab));
  document.getElementById("list")?.classList.toggle("hidden", tab !== "chats");
  document.getElementById("status-view")?.classList.toggle("hidden", tab !== "status");
  if (tab === "status") void renderStatus();
}

/** Status updates: post a text status; yours and your contacts' unexpired ones (StatusService). */
async function renderStatus(): Promise<void> {
  const view = document.getElementById("status-view");
  if (!view) return;
  const status = h("p", { class: "status", role: "status" });
  const text = h("input", { name: "status", maxlength: "700", placeholder: "Type a status", "aria-label": "Status text" });
  const form = h(
    "form",
    {
      class: "composer status-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const content = text.value.trim();
        if (!content) return;
        try {
          await client.status.createStatus({ content });
          text.value = "";
          await renderStatus();
        } catch (err) {
          status.textContent = errorText(err);
        }
      },
    },
    text,
    h("button", { type: "submit", "data-testid": "post-status" }, "Post"),
  );
  let mine: Awaited<ReturnType<typeof client.status.listMyStatuses>>["statuses"] = [];
  let feed: Awaited<ReturnType<typeof client.status.listStatusFeed>>["authors"] = [];
  try {
    [mine, feed] = await Promise.all([client.status.listMyStatuses({}).then((r) => r.statuses), client.status.listStatusFeed({}).then((r) => r.authors)]);
  } catch (err) {
    status.textContent = errorText(err);
  }
  for (const a of feed) if (a.author) remember(a.author.id, a.author.displayName || a.author.phoneNumber);
  const card = (who: string, items: typeof mine, testid: string) =>
    h(
      "li",
      { class: "status-card", "data-testid": testid },
      h("span", { class: "title" }, who),
      ...items.map((st) =>
        h(
          "p",
          { class: "status-text", style: st.backgroundColor ? `background:${st.backgroundColor}` : undefined },
          h("span", {}, ...linkify(st.content || st.caption)),
          h("span", { class: "meta" }, st.createdAt ? listTime(st.createdAt) : ""),
        ),
      ),
    );
  view.replaceChildren(
    form,
    status,
    h(
      "ul",
      { class: "list" },
      card("My status", mine, "my-status"),
      h("li", { class: "section" }, feed.length > 0 ? "Recent updates" : "No updates from your contacts"),
      ...feed.map((a) => card(a.author ? nameOf(a.author.id) : "", a.statuses, "contact-status")),
    ),
  );
}

// ---------- profile ----------

function showMyName(name: string): void {
  const el = document.getElementById("my-name");
  if (el) el.textContent = name;
}

/** Your display name and about line (UserService.UpdateProfile), shown to others instead of your number. */
async function showProfile(): Promise<void> {
  const box = document.getElementById("new")!;
  const status = h("p", { class: "status", role: "status" });
  const name = h("input", { name: "display-name", maxlength: "64", placeholder: "Your name" });
  const about = h("input", { name: "about", maxlength: "140", placeholder: "Hey there! I am using Chatwire." });
  box.replaceChildren(
    h(
      "form",
      {
        class: "new-form profile",
        "data-testid": "profile-form",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          status.textContent = "Saving…";
          try {
            const { user } = await client.users.updateProfile({ displayName: name.value.trim(), aboutText: about.value.trim() });
            showMyName(user?.displayName ?? "");
            status.textContent = "Saved.";
            status.classList.add("ok");
          } catch (err) {
            status.textContent = errorText(err);
          }
        },
      },
      h("h2", {}, "Profile"),
      h("label", {}, "Your name", name),
      h("label", {}, "About", about),
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", class: "link", onclick: () => box.replaceChildren() }, "Close"),
      ),
      status,
    ),
  );
  try {
    const { user } = await client.users.getMe({});
    if (user) {
      name.value = user.displayName;
      about.value = user.aboutText;
    }
  } catch (err) {
    status.textContent = errorText(err);
  }
  name.focus();
}

async function logout(): Promise<void> {
  state.sub?.close();
  await client.logout();
  state.convs.clear();
  state.open = undefined;
  renderLogin("Logged out.");
}

client.on("session", (tokens, reason) => {
  if (!tokens && reason === "expired") {
    state.sub?.close();
    renderLogin("Your session ended. Please log in again.");
  }
});

if (await client.isLoggedIn()) void start().catch(() => renderLogin());
else renderLogin();
