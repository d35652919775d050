import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

// The API contract guard bites: `npm run api:check` (scripts/api-check.mjs, the
// same script CI runs) on scratch copies of buf.yaml and proto/, each with one
// kind of change, against the committed baseline proto/released.binpb. Then
// `npm run api:release` on a scratch copy of the files it writes.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

let scratch: string;
let copies = 0;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "chatwire-api-contract-"));
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A fresh copy of the API workspace (plus `extra` repo files) to change. */
async function copyWorkspace(extra: string[] = []): Promise<string> {
  const dir = path.join(scratch, `ws-${++copies}`);
  for (const f of ["buf.yaml", "proto", ...extra]) await cp(path.join(ROOT, f), path.join(dir, f), { recursive: true });
  return dir;
}

/**
 * Replaces the first `from` after `anchor` in a file, failing loudly if either
 * is missing, so a proto edit elsewhere cannot quietly make a case vacuous.
 */
async function edit(file: string, anchor: string, from: string, to: string): Promise<void> {
  const text = await readFile(file, "utf8");
  const at = text.indexOf(anchor);
  expect(at, `${anchor} in ${file}`).toBeGreaterThanOrEqual(0);
  const i = text.indexOf(from, at);
  expect(i, `${from} after ${anchor} in ${file}`).toBeGreaterThanOrEqual(0);
  await writeFile(file, text.slice(0, i) + to + text.slice(i + from.length));
}

async function append(file: string, text: string): Promise<void> {
  await writeFile(file, (await readFile(file, "utf8")) + text);
}

async function script(name: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, "scripts", name), ...args], { cwd: ROOT });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof err.code !== "number") throw e;
    return { code: err.code, out: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

const apiCheck = (dir: string) => script("api-check.mjs", [dir]);

/** The lines api:check printed for one rule set ("FILE" or "PACKAGE"), with its verdict. */
function section(out: string, rules: "FILE" | "PACKAGE"): string {
  const lines = out.split("\n");
  const start = lines.findIndex((l) => l.includes(`(buf breaking, ${rules} rules`));
  expect(start, `a ${rules} section in:\n${out}`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && !l.startsWith("  "));
  return lines.slice(start, end === -1 ? undefined : end).join("\n");
}

/** Additions of every kind, in original and other packages, plus a new package. */
async function addEverything(dir: string): Promise<void> {
  const chat = path.join(dir, "proto/chat/chat.proto");
  await edit(chat, "message Message {", "  string content = 4;", "  string content = 4;\n  bool flagged = 1000;");
  await edit(chat, "service ChatService {", "\n", "\n  rpc FlagMessage(FlagMessageRequest) returns (FlagMessageResponse);\n");
  await edit(chat, "enum MessageKind {", "  MESSAGE_KIND_SYSTEM = 2;", "  MESSAGE_KIND_SYSTEM = 2;\n  MESSAGE_KIND_CALL = 100;");
  await append(chat, "\nmessage FlagMessageRequest {\n  string message_id = 1;\n}\n\nmessage FlagMessageResponse {}\n");
  const user = path.join(dir, "proto/user/user.proto");
  await edit(user, "message Profile {", "  bool blocked_by_me = 10;", "  bool blocked_by_me = 10;\n  string pronouns = 1000;");
  await edit(user, "service UserService {", "\n", "\n  rpc GetUserCount(GetUserCountRequest) returns (GetUserCountResponse);\n");
  await append(user, "\nmessage GetUserCountRequest {}\n\nmessage GetUserCountResponse {\n  int64 count = 1;\n}\n");
  await append(
    path.join(dir, "proto/realtime/realtime.proto"),
    "\nservice PingService {\n  rpc Ping(PingRequest) returns (PingResponse);\n}\n\nmessage PingRequest {}\n\nmessage PingResponse {}\n",
  );
  await mkdir(path.join(dir, "proto/stickers"));
  await writeFile(
    path.join(dir, "proto/stickers/stickers.proto"),
    'syntax = "proto3";\n\npackage stickers;\n\nimport "chat/chat.proto";\n\nservice StickerService {\n' +
      "  rpc Attach(AttachRequest) returns (AttachResponse);\n}\n\nmessage AttachRequest {\n  string upload_id = 1;\n}\n\n" +
      "message AttachResponse {\n  chat.Message message = 1;\n}\n",
  );
}

describe("api:check", () => {
  test("a renumbered field in chat.proto fails under FILE rules, naming the field", async () => {
    const dir = await copyWorkspace();
    await edit(path.join(dir, "proto/chat/chat.proto"), "message Message {", "  string content = 4;", "  string content = 40;");
    const { code, out } = await apiCheck(dir);
    expect(code, out).toBe(1);
    expect(out).toContain("api:check: BREAKS the released API");
    const file = section(out, "FILE");
    expect(file).toContain("FAILED");
    expect(file).toMatch(/chat\/chat\.proto:\d+:\d+:Previously present field "4" with name "content" on message "Message" was deleted/);
    expect(section(out, "PACKAGE")).toMatch(/: ok$/m);
  });

  test("a renamed field in user.proto fails (JSON names are part of the contract)", async () => {
    const dir = await copyWorkspace();
    await edit(path.join(dir, "proto/user/user.proto"), "message Profile {", "  string display_name = 3;", "  string name = 3;");
    const { code, out } = await apiCheck(dir);
    expect(code, out).toBe(1);
    const other = section(out, "PACKAGE");
    expect(other).toContain("FAILED");
    expect(other).toMatch(/user\/user\.proto:\d+:\d+:Field "3" with name "name" on message "Profile" changed option "json_name" from "displayName" to "name"/);
    expect(other).toMatch(/user\/user\.proto:\d+:\d+:Field "3" on message "Profile" changed name from "display_name" to "name"/);
    expect(section(out, "FILE")).toMatch(/: ok$/m);
  });

  test("a deleted RPC outside the original services fails (stricter than WIRE_JSON, which allows it)", async () => {
    const dir = await copyWorkspace();
    await edit(
      path.join(dir, "proto/realtime/realtime.proto"),
      "service RealtimeService {",
      "  rpc GetPresence(GetPresenceRequest) returns (GetPresenceResponse) {\n    option idempotency_level = NO_SIDE_EFFECTS;\n  }\n",
      "",
    );
    const { code, out } = await apiCheck(dir);
    expect(code, out).toBe(1);
    expect(section(out, "PACKAGE")).toMatch(/realtime\/realtime\.proto:\d+:\d+:Previously present RPC "GetPresence" on service "RealtimeService" was deleted/);
  });

  test("an RPC newly marked NO_SIDE_EFFECTS passes (GET is added, POST stays); any other idempotency change fails", async () => {
    const dir = await copyWorkspace();
    const chat = path.join(dir, "proto/chat/chat.proto");
    await edit(
      chat,
      "service ChatService {",
      "  rpc SendMessage(SendMessageRequest) returns (SendMessageResponse);",
      "  rpc SendMessage(SendMessageRequest) returns (SendMessageResponse) {\n    option idempotency_level = IDEMPOTENT;\n  }",
    );
    await edit(
      path.join(dir, "proto/user/user.proto"),
      "service UserService {",
      "  rpc UpdateProfile(UpdateProfileRequest) returns (UpdateProfileResponse);",
      "  rpc UpdateProfile(UpdateProfileRequest) returns (UpdateProfileResponse) {\n    option idempotency_level = NO_SIDE_EFFECTS;\n  }",
    );
    const { code, out } = await apiCheck(dir);
    expect(code, out).toBe(1);
    expect(section(out, "FILE")).toMatch(
      /RPC "SendMessage" on service "ChatService" changed option "idempotency_level" from "IDEMPOTENCY_UNKNOWN" to "IDEMPOTENT"/,
    );
    const other = section(out, "PACKAGE");
    expect(other).toMatch(/: ok$/m);
    expect(other).toMatch(
      /allowed \(POST still works; GET added\): user\/user\.proto:\d+:\d+:RPC "UpdateProfile" on service "UserService" changed option "idempotency_level" from "IDEMPOTENCY_UNKNOWN" to "NO_SIDE_EFFECTS"/,
    );
  });

  test("added fields, RPCs, enum values, services and a new package pass", async () => {
    const dir = await copyWorkspace();
    await addEverything(dir);
    const { code, out } = await apiCheck(dir);
    expect(out).toContain("api:check: compatible with the released API");
    expect(section(out, "FILE")).toMatch(/: ok$/m);
    expect(section(out, "PACKAGE")).toMatch(/: ok$/m);
    expect(code).toBe(0);
  });
});

describe("api:release", () => {
  const FILES = ["README.md", "CHANGELOG.md", "client-sdk/package.json", "package-lock.json"];
  const release = (dir: string, ...args: string[]) => script("api-release.mjs", [...args, "--root", dir, "--date", "2030-01-02"]);
  const sdkVersion = async (dir: string) => (JSON.parse(await readFile(path.join(dir, "client-sdk/package.json"), "utf8")) as { version: string }).version;

  test("checks the version fits the change, then moves the baseline, the versions and the changelog", async () => {
    const dir = await copyWorkspace(FILES);
    const before = await sdkVersion(dir);
    const [major, minor] = before.split(".").map(Number) as [number, number];
    const expected = `${major}.${minor + 1}.0`;
    const baseline = await readFile(path.join(dir, "proto/released.binpb"));
    await addEverything(dir);

    // Nothing listed under [Unreleased] yet (whatever the repository's own changelog has there now): refused.
    const log = path.join(dir, "CHANGELOG.md");
    const text = await readFile(log, "utf8");
    const unreleased = text.indexOf("## [Unreleased]\n") + "## [Unreleased]\n".length;
    await writeFile(log, `${text.slice(0, unreleased)}\n${text.slice(text.indexOf("\n## [", unreleased) + 1)}`);
    const empty = await release(dir, "minor");
    expect(empty.code, empty.out).toBe(1);
    expect(empty.out).toContain("[Unreleased] section lists nothing");
    await edit(path.join(dir, "CHANGELOG.md"), "## [Unreleased]", "\n", "\n\n### Added\n\n- `chat.ChatService.FlagMessage`.\n");

    // The API grew, so a patch is refused and nothing is written.
    const patch = await release(dir, "patch");
    expect(patch.code, patch.out).toBe(1);
    expect(patch.out).toMatch(
      new RegExp(`refused: the API grew since ${before.replaceAll(".", "\\.")} \\(added .*\\): that needs a minor release, not a patch`),
    );
    expect(await sdkVersion(dir)).toBe(before);
    expect((await readFile(path.join(dir, "proto/released.binpb"))).equals(baseline)).toBe(true);

    const minorRelease = await release(dir, "minor");
    expect(minorRelease.code, minorRelease.out).toBe(0);
    expect(await sdkVersion(dir)).toBe(expected);
    const lock = JSON.parse(await readFile(path.join(dir, "package-lock.json"), "utf8")) as { packages: Record<string, { version?: string }> };
    expect(lock.packages["client-sdk"]?.version).toBe(expected);
    const readme = await readFile(path.join(dir, "README.md"), "utf8");
    expect(readme).toContain(`The released API is version **${expected}**`);
    expect(readme).toContain(`chatwire-client-${expected}.tgz`);
    expect(readme).not.toContain(`chatwire-client-${before}.tgz`);
    const changelog = await readFile(path.join(dir, "CHANGELOG.md"), "utf8");
    expect(changelog).toMatch(
      new RegExp(
        `## \\[Unreleased\\]\\n\\n## \\[${expected}\\] - 2030-01-02\\n\\n### Added\\n\\n- \`chat.ChatService.FlagMessage\`\\.\\n\\n## \\[${before}\\]`,
      ),
    );

    // The baseline moved: the additions are now released, so taking one back breaks.
    await edit(path.join(dir, "proto/chat/chat.proto"), "service ChatService {", "  rpc FlagMessage(FlagMessageRequest) returns (FlagMessageResponse);\n", "");
    const back = await apiCheck(dir);
    expect(back.code, back.out).toBe(1);
    expect(section(back.out, "FILE")).toContain('Previously present RPC "FlagMessage" on service "ChatService" was deleted');
    expect(section(back.out, "PACKAGE")).toMatch(/: ok$/m);
  });

  test("a break outside the original services needs a major release; in them, no release allows it", async () => {
    const dir = await copyWorkspace(FILES);
    const [major] = (await sdkVersion(dir)).split(".").map(Number) as [number];
    await edit(path.join(dir, "CHANGELOG.md"), "## [Unreleased]", "\n", "\n\n### Removed\n\n- `realtime.RealtimeService.GetPresence`.\n");
    const realtime = path.join(dir, "proto/realtime/realtime.proto");
    const chat = path.join(dir, "proto/chat/chat.proto");
    const chatText = await readFile(chat, "utf8");
    await edit(chat, "message Message {", "  string content = 4;", "  string content = 40;");
    await edit(
      realtime,
      "service RealtimeService {",
      "  rpc GetPresence(GetPresenceRequest) returns (GetPresenceResponse) {\n    option idempotency_level = NO_SIDE_EFFECTS;\n  }\n",
      "",
    );

    const frozen = await release(dir, "major");
    expect(frozen.code, frozen.out).toBe(1);
    expect(frozen.out).toMatch(/refused: auth, chat, status are frozen in every version/);

    await writeFile(chat, chatText);
    const minor = await release(dir, "minor");
    expect(minor.code, minor.out).toBe(1);
    expect(minor.out).toContain(`needs a major release (${major + 1}.0.0), not minor`);

    const ok = await release(dir, "major");
    expect(ok.code, ok.out).toBe(0);
    expect(await sdkVersion(dir)).toBe(`${major + 1}.0.0`);
  });
});
