import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// @chatwire/client as a user gets it: `npm pack`, `npm install <tarball>` into
// an empty project outside the repo (no workspace link), then a plain .mjs
// script there logs in two people, opens a conversation, subscribes and sends,
// over each transport. Also bundles a tiny browser app with the installed
// package to check that no Node code reaches browsers, and to measure it.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SDK = path.join(ROOT, "client-sdk");

const SCRIPT = `
import { createChatwireClient } from "@chatwire/client";

const [baseUrl, transport, phoneA, phoneB] = process.argv.slice(2);
const a = createChatwireClient({ baseUrl, transport });
const b = createChatwireClient({ baseUrl, transport });
for (const [client, phone] of [[a, phoneA], [b, phoneB]]) {
  await client.auth.sendCode(phone);
  await client.auth.verify(phone, "123456", { name: "pack test" });
}
const { conversation } = await a.chat.createConversation({ participantPhoneNumbers: [phoneB] });

const subA = a.subscribe();
const subB = b.subscribe();
await Promise.all([subA, subB].map((s) => new Promise((resolve) => s.once("ready", resolve))));
// B's SDK acknowledges delivery by itself; A sees the receipt.
const delivered = new Promise((resolve) => subA.on("receipt", (r) => r.deliveredToAllSeq > 0n && resolve(r.deliveredToAllSeq)));
const received = (async () => {
  for await (const event of subB) if (event.kind.case === "messageCreated") return event.kind.value.message;
})();

const sent = await a.sendMessage(conversation.id, "hello over " + transport);
const message = await received;
const deliveredSeq = await delivered;
const entry = await a.outbox.enqueue(conversation.id, "queued over " + transport);
const queued = await a.outbox.sent(entry.clientMessageId);
console.log(JSON.stringify({ sent: sent.content, received: message.content, seq: String(message.seq), delivered: String(deliveredSeq), queued: queued.content, queuedState: entry.state }));
a.close();
b.close();
`;

const BROWSER_APP = `
import { createChatwireClient } from "@chatwire/client";
const client = createChatwireClient({ baseUrl: location.origin });
await client.auth.sendCode("+905551234567");
await client.auth.verify("+905551234567", "123456");
client.subscribe().on("message", (m) => console.log(m.content));
await client.sendMessage("conversation-id", "hi");
`;

let s: TestServer;
let project: string;

beforeAll(async () => {
  if (!existsSync(path.join(SDK, "dist/client-sdk/src/node.js"))) {
    throw new Error("client-sdk/dist is missing: run `npm run build` first (`npm test` does)");
  }
  project = await mkdtemp(path.join(os.tmpdir(), "chatwire-sdk-consumer-"));
  // Built already by `npm run build`; the prepack script would only build it again.
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", project], { cwd: SDK });
  const { filename } = (JSON.parse(stdout) as Array<{ filename: string }>)[0]!;
  await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", path.join(project, filename)], { cwd: project, timeout: 150_000 });
  await writeFile(path.join(project, "chat.mjs"), SCRIPT);
  s = await startTestServer();
}, 180_000);

afterAll(async () => {
  await s?.stop();
  if (project) await rm(project, { recursive: true, force: true });
});

test("the tarball is installed as files, not a workspace link, with its generated code inside", async () => {
  const installed = path.join(project, "node_modules/@chatwire/client");
  expect((await lstat(installed)).isSymbolicLink()).toBe(false);
  const pkg = JSON.parse(await readFile(path.join(installed, "package.json"), "utf8")) as { exports: Record<string, unknown> };
  expect(Object.keys(pkg.exports["."] as object)).toEqual(["browser", "node", "default"]);
  expect(existsSync(path.join(installed, "dist/gen/chat/chat_pb.js"))).toBe(true);
  expect(existsSync(path.join(installed, "src"))).toBe(false);
  expect(await readFile(path.join(installed, "LICENSE"), "utf8")).toMatch(/^MIT License/);
});

let phone = 10;
describe.each(["connect", "grpc-web", "grpc"])("a Node script over %s", (transport) => {
  test("logs in, converses and subscribes", async () => {
    const a = `+1415559${String(phone++).padStart(4, "0")}`;
    const b = `+1415559${String(phone++).padStart(4, "0")}`;
    const { stdout } = await run(process.execPath, ["chat.mjs", s.url, transport, a, b], { cwd: project, timeout: 30_000 });
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, string>;
    expect(result.sent).toBe(`hello over ${transport}`);
    expect(result.received).toBe(`hello over ${transport}`);
    expect(BigInt(result.seq!)).toBeGreaterThan(0n);
    expect(result.delivered).toBe(result.seq);
    expect([result.queued, result.queuedState]).toEqual([`queued over ${transport}`, "sent"]);
  });
});

test("a browser bundle of the installed package holds no Node code; its size is recorded", async () => {
  const app = path.join(project, "app");
  await mkdir(app, { recursive: true });
  await writeFile(path.join(app, "index.html"), `<script type="module" src="./main.js"></script>`);
  await writeFile(path.join(app, "main.js"), BROWSER_APP);
  const { build } = await import("vite");
  const out = (await build({
    root: app,
    logLevel: "silent",
    configFile: false,
    build: { write: false, minify: true, target: "es2022" },
  })) as { output: Array<{ type: string; fileName: string; code?: string }> };
  const js = out.output
    .filter((o) => o.type === "chunk")
    .map((o) => o.code!)
    .join("\n");
  expect(js).not.toMatch(/node:http|Http2SessionManager|from"http2"/);
  const size = { minified: Buffer.byteLength(js), gzip: gzipSync(js, { level: 9 }).length };
  await mkdir(path.join(ROOT, "test-output"), { recursive: true });
  await writeFile(path.join(ROOT, "test-output/sdk-browser-bundle.json"), JSON.stringify(size, null, 2));
  console.log(`@chatwire/client browser bundle: ${size.minified} B minified, ${size.gzip} B gzip`);
  expect(size.gzip).toBeLessThan(80_000);
}, 60_000);
