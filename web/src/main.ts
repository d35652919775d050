import { start } from "./app.js";
import { openConversation, renderTyping } from "./conversation.js";
import { renderLogin } from "./login.js";
import { renderMessages } from "./message-view.js";
import { client, state } from "./state.js";
import "./style.css";

// The Chatwire browser client: plain DOM, no framework. State lives in state.ts; each view module
// redraws the part of the page it owns. This module wires the page-wide listeners and starts.

navigator.serviceWorker?.addEventListener("message", (e: MessageEvent<{ type?: string; conversationId?: string }>) => {
  if (e.data?.type === "open-conversation" && e.data.conversationId && state.convs.has(e.data.conversationId)) void openConversation(e.data.conversationId);
});

document.addEventListener("click", (e) => {
  if (state.menuFor && !(e.target instanceof Element && e.target.closest(".menu"))) {
    state.menuFor = undefined;
    renderMessages();
  }
});

setInterval(renderTyping, 1000);

client.on("session", (tokens, reason) => {
  if (!tokens && reason === "expired") {
    state.sub?.close();
    renderLogin("Your session ended. Please log in again.");
  }
});

if (await client.isLoggedIn()) void start().catch(() => renderLogin());
else renderLogin();
