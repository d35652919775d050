import { Code, ConnectError, createChatwireClient, MessageKind, ReceiptState, type Conversation, type Message, type Subscription } from "@chatwire/client";
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
};

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
async function resolveNames(convs: Iterable<Conversation>): Promise<void> {
  const ids = new Set<string>();
  for (const c of convs) for (const p of c.participantIds) if (p !== state.me && !asked.has(p)) ids.add(p);
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
  if (ids.size > batch.length) await resolveNames(convs);
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
          h("span", { class: "me", "data-testid": "me" }, state.myPhone),
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
        h("ul", { id: "list", class: "list", "aria-label": "Conversations" }),
      ),
      h("section", { id: "pane", class: "pane" }, h("p", { class: "empty" }, "Pick a conversation or start a new one.")),
    ),
  );
  // The service worker shows pushes while this page is closed; a click on one opens its conversation here.
  void registerServiceWorker().catch(() => undefined);
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
    res = await client.chat.getConversations({ limit: 100 });
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
  sub.on("messageEdited", (m) => onMessage(m));
  sub.on("conversation", (conv) => {
    const cs = state.convs.get(conv.id);
    if (cs) cs.conv = conv;
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
  sub.on("resync", () => void reload());
  sub.on("error", (err) => {
    setConn(false);
    if (err.code === Code.Unauthenticated) renderLogin("Your session ended. Please log in again.");
  });
}

function onMessage(m: Message): void {
  const cs = state.convs.get(m.conversationId);
  if (!cs) {
    // A conversation we have not loaded yet (the event can precede its listing).
    void client.chat.getConversation({ conversationId: m.conversationId }).then(({ conversation }) => {
      if (conversation && !state.convs.has(conversation.id)) {
        state.convs.set(conversation.id, blank(conversation));
        void resolveNames([conversation]);
        renderList();
      }
    });
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
  const sorted = [...state.convs.values()].sort((a, b) => Number(activity(b) - activity(a)));
  list.replaceChildren(
    ...sorted.map((cs) => {
      const c = cs.conv;
      const last = c.lastMessage;
      const preview = last ? (last.kind === MessageKind.SYSTEM ? systemText(last) : `${last.senderId === state.me ? "You: " : ""}${last.content}`) : "";
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
        c.unreadCount > 0 && h("span", { class: "badge", "data-testid": "unread" }, String(c.unreadCount)),
        h("span", { class: "preview" }, preview),
      );
    }),
  );
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
        try {
          const m = await client.sendMessage(id, text);
          if (!cs.messages.has(m.id) || cs.messages.get(m.id)!.seq === 0n) onMessage(m);
        } catch (err) {
          input.value = text;
          alert(`Not sent: ${errorText(err)}`);
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
      h("div", {}, h("h2", { id: "conv-title" }), h("div", { id: "typing", class: "typing", "data-testid": "typing" })),
    ),
    h("ol", { id: "messages", class: "messages", "data-testid": "messages" }),
    form,
  );
  renderHeader();
  renderList();
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
  list.replaceChildren(
    ...(cs.hasMore ? [h("li", { class: "older" }, h("button", { class: "link", onclick: () => void loadOlder(cs) }, "Earlier messages"))] : []),
    ...sorted.map((m) => {
      if (m.kind === MessageKind.SYSTEM) return h("li", { class: "system" }, systemText(m));
      const mine = m.senderId === state.me;
      const tick = mine ? tickOf(cs, m) : undefined;
      const time = m.createdAt ? new Date(m.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
      return h(
        "li",
        { class: `msg ${mine ? "mine" : "theirs"}`, "data-testid": "message", "data-seq": String(m.seq) },
        cs.conv.isGroup && !mine && h("span", { class: "from" }, nameOf(m.senderId)),
        h("span", { class: "text" }, m.deletedAt ? "This message was deleted" : m.content),
        h(
          "span",
          { class: "meta" },
          time,
          tick && h("span", { class: `tick ${tick}`, "data-testid": "tick", "data-state": tick, title: tick }, tick === "sent" ? "✓" : "✓✓"),
        ),
      );
    }),
  );
  if (atBottom || sorted.at(-1)?.senderId === state.me) list.scrollTop = list.scrollHeight;
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
