import { Code, ConnectError, MessageKind, type Conversation, type Message } from "@chatwire/client";
import { enablePush, registerServiceWorker } from "./push.js";
import { openConversation, renderHeader, renderTyping } from "./conversation.js";
import { app, h, errorText } from "./dom.js";
import { renderList, showNewChat, showTab } from "./list.js";
import { renderLogin } from "./login.js";
import { renderMessages } from "./message-view.js";
import { showMyName, showProfile } from "./profile.js";
import { client, type ConvState, state, remember, merged, blank, timestamp } from "./state.js";
import { renderStatus } from "./status.js";

// The main view: the sidebar, loading the list, the realtime subscription and what its events change.

/** Fetches the names (or phone numbers) of participants not seen yet; redraws when they arrive. */
const asked = new Set<string>();
export async function resolveNames(convs: Iterable<Pick<Conversation, "participantIds">>, refresh = false): Promise<void> {
  const ids = new Set<string>();
  for (const c of convs) for (const p of c.participantIds) if (p !== state.me && (refresh || !asked.has(p))) ids.add(p);
  const batch = [...ids].slice(0, 100);
  if (batch.length === 0) return;
  batch.forEach((id) => asked.add(id));
  try {
    const { users } = await client.users.getUsers({ userIds: batch });
    for (const u of users) {
      remember(u.id, u.displayName || u.phoneNumber);
      if (u.profilePictureUrl) state.photos.set(u.id, u.profilePictureUrl);
      else state.photos.delete(u.id);
    }
  } catch {
    batch.forEach((id) => asked.delete(id)); // try again with the next change
    return;
  }
  renderList();
  renderHeader();
  renderMessages();
  if (ids.size > batch.length) await resolveNames(convs, refresh);
}

export async function start(): Promise<void> {
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

export function onMessage(m: Message): void {
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
export function onEdited(m: Message): void {
  const cs = state.convs.get(m.conversationId);
  if (!cs) return;
  const old = cs.messages.get(m.id);
  if (old) cs.messages.set(m.id, { ...m, reactions: m.reactions.length > 0 ? m.reactions : old.reactions });
  if (cs.conv.lastMessage?.id === m.id) cs.conv.lastMessage = m;
  if (state.open === m.conversationId) renderMessages();
  renderList();
}

export function markRead(cs: ConvState, seq: bigint): void {
  if (seq <= cs.conv.myLastReadSeq) return;
  cs.conv.myLastReadSeq = seq;
  cs.conv.unreadCount = 0;
  client.chat.markRead({ conversationId: cs.conv.id, upToSeq: seq }).catch(() => undefined);
}

async function logout(): Promise<void> {
  state.sub?.close();
  await client.logout();
  state.convs.clear();
  state.open = undefined;
  renderLogin("Logged out.");
}
