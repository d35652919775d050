import { h, errorText } from "./dom.js";
import { photoOf, uploadFile } from "./media.js";
import { client } from "./state.js";

// The profile form: photo, display name and about line.

export function showMyName(name: string): void {
  const el = document.getElementById("my-name");
  if (el) el.textContent = name;
}

/** Your photo, display name and about line (UserService.UpdateProfile), shown to others instead of your number. */
export async function showProfile(): Promise<void> {
  const box = document.getElementById("new")!;
  const status = h("p", { class: "status", role: "status" });
  const name = h("input", { name: "display-name", maxlength: "64", placeholder: "Your name" });
  const about = h("input", { name: "about", maxlength: "140", placeholder: "Hey there! I am using Chatwire." });
  const photoBox = h("span", { class: "photo-box", "data-testid": "my-photo" });
  const photoInput = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", "aria-label": "Profile photo", "data-testid": "photo-file" });
  const showPhoto = (url: string) => photoBox.replaceChildren(photoOf(url, "Your profile photo") ?? h("span", { class: "hint" }, "No photo"));
  // A picked picture is uploaded (MediaService) and becomes the photo at once: "/media/<id>".
  photoInput.addEventListener("change", async () => {
    const file = photoInput.files?.[0];
    photoInput.value = "";
    if (!file) return;
    status.textContent = "Uploading photo…";
    try {
      const mediaId = await uploadFile(file, crypto.randomUUID());
      const { user } = await client.users.updateProfile({ profilePictureUrl: `/media/${mediaId}` });
      showPhoto(user?.profilePictureUrl ?? "");
      status.textContent = "Photo saved.";
    } catch (err) {
      status.textContent = errorText(err);
    }
  });
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
      h("div", { class: "row" }, photoBox, h("label", {}, "Photo", photoInput)),
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
      showPhoto(user.profilePictureUrl);
    }
  } catch (err) {
    status.textContent = errorText(err);
  }
  name.focus();
}
