import { linkify, listTime } from "./format.js";
import { h, errorText } from "./dom.js";
import { resolveNames } from "./app.js";
import { client, remember, nameOf } from "./state.js";

// The Status tab: post a text status; mine (with who viewed each) and my contacts' unexpired ones.

/** Status updates: post a text status; yours and your contacts' unexpired ones (StatusService). */
export async function renderStatus(): Promise<void> {
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
  const card = (who: string, items: typeof mine, testid: string, own: boolean) =>
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
          own && viewersButton(st.id, st.viewCount),
        ),
      ),
    );
  // Shown is seen: contacts' statuses on screen count as viewed (their authors see it in their viewers list).
  for (const a of feed) for (const st of a.statuses) if (!st.viewed) client.status.viewStatus({ statusId: st.id }).catch(() => undefined);
  view.replaceChildren(
    form,
    status,
    h(
      "ul",
      { class: "list" },
      card("My status", mine, "my-status", true),
      h("li", { class: "section" }, feed.length > 0 ? "Recent updates" : "No updates from your contacts"),
      ...feed.map((a) => card(a.author ? nameOf(a.author.id) : "", a.statuses, "contact-status", false)),
    ),
  );
}

/** "👁 N": a click lists who viewed one of my statuses, and when (GetStatusViewers). */
function viewersButton(statusId: string, count: number): HTMLElement {
  const list = h("ul", { class: "viewers", "data-testid": "viewers" });
  const button = h(
    "button",
    {
      class: "link views",
      "data-testid": "views",
      title: "Viewed by",
      onclick: async () => {
        try {
          const { viewers } = await client.status.getStatusViewers({ statusId });
          await resolveNames([{ participantIds: viewers.map((v) => v.userId) }]);
          list.replaceChildren(
            ...(viewers.length === 0
              ? [h("li", { class: "hint" }, "No views yet")]
              : viewers.map((v) =>
                  h(
                    "li",
                    { "data-testid": "viewer" },
                    nameOf(v.userId),
                    v.viewedAt && h("span", { class: "meta" }, listTime(new Date(Number(v.viewedAt.seconds) * 1000).toISOString())),
                  ),
                )),
          );
          button.textContent = `👁 ${viewers.length}`;
        } catch (err) {
          list.replaceChildren(h("li", { class: "hint" }, errorText(err)));
        }
      },
    },
    `👁 ${count}`,
  );
  return h("span", { class: "status-views" }, button, list);
}
