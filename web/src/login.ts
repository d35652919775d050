import { Code, ConnectError } from "@chatwire/client";
import { start } from "./app.js";
import { app, h, errorText } from "./dom.js";
import { client, state, remember } from "./state.js";

// The login screen: phone number, then the one-time code.

export function renderLogin(message = ""): void {
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
