#!/usr/bin/env node
// @ts-check
/**
 * `npm run api:check [-- <workspace>] [--against <image>]`
 *
 * Runs `buf breaking` on the API in <workspace> (a directory holding buf.yaml and
 * the proto/ module; default: this repository) against the last released API,
 * the Buf image <workspace>/proto/released.binpb that `npm run api:release`
 * writes. Exits 0 when compatible, 1 with buf's messages when not.
 *
 * The promise differs by package, so there are two rule sets:
 * - auth, chat, status (the original services, whose Go clients and Postman
 *   collections are deployed): buf's FILE rules. Nothing in a file may be
 *   removed, renamed, renumbered, retyped or moved.
 * - every other package (realtime, user and any added later): buf's PACKAGE
 *   rules, stricter than WIRE_JSON. Within a major version they only grow: no
 *   deleted RPC, service, message or field (WIRE_JSON would let RPCs and
 *   services go), no renamed or retyped field; declarations may move between
 *   files of the same package.
 * buf's breaking config is per module and proto/ is one module, so each rule
 * set is one `buf breaking` run over its directories (--path / --exclude-path)
 * with the rules given in --config. --exclude-imports keeps a package checked
 * only by its own rule set when another package imports it.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Where the released API's image lives, relative to a workspace. */
export const RELEASED_IMAGE = path.join("proto", "released.binpb");
/** The original services' packages (= directories under proto/). */
export const ORIGINAL_PACKAGES = ["auth", "chat", "status"];

/** @typedef {{ name: string, rules: string, promise: string, filter: string[] }} Policy */
/** @type {Policy[]} */
export const POLICIES = [
  {
    name: ORIGINAL_PACKAGES.join(", "),
    rules: "FILE",
    promise: "frozen: wire, JSON and generated-code names never change",
    filter: ORIGINAL_PACKAGES.flatMap((p) => ["--path", p]),
  },
  {
    name: "other packages",
    rules: "PACKAGE",
    promise: "additive within a major version",
    filter: ORIGINAL_PACKAGES.flatMap((p) => ["--exclude-path", p]),
  },
];

const BUF = path.join(REPO_ROOT, "node_modules", ".bin", "buf");

/**
 * buf reports every change of an RPC's idempotency_level, but one direction is additive for a
 * server: an RPC newly marked NO_SIDE_EFFECTS is also served over Connect GET (browsers and CDNs
 * can cache it, curl can GET it) while POST works as before, so every existing client is unaffected.
 * Those lines are listed as allowed; any other idempotency change still fails.
 */
const ALLOWED = /changed option "idempotency_level" from "IDEMPOTENCY_UNKNOWN" to "NO_SIDE_EFFECTS"\.$/;

/**
 * Runs buf, feeding `input` on stdin.
 * @param {string[]} args
 * @param {Buffer} [input]
 * @returns {Promise<{ code: number, stdout: Buffer, stderr: string }>}
 */
export function buf(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(BUF, args, { stdio: ["pipe", "pipe", "pipe"] });
    /** @type {Buffer[]} */
    const out = [];
    /** @type {Buffer[]} */
    const err = [];
    child.stdout.on("data", (c) => out.push(c));
    child.stderr.on("data", (c) => err.push(c));
    child.on("error", (e) => reject(new Error(`cannot run ${BUF} (npm install first?): ${e.message}`)));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8") }));
    child.stdin.on("error", () => {}); // buf may exit before reading all of stdin; its exit code says why
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

/**
 * Builds the workspace's API into a Buf image (with source info, so breaks
 * are reported at their line). Throws with buf's message if it does not compile.
 * @param {string} workspace
 * @param {string[]} [extra] more `buf build` flags
 */
export async function buildImage(workspace, extra = []) {
  const built = await buf(["build", workspace, "-o", "-", ...extra]);
  if (built.code !== 0) throw new Error(`buf build ${workspace} failed:\n${built.stderr.trim()}`);
  return built.stdout;
}

/**
 * @typedef {Policy & { ok: boolean, output: string }} PolicyResult
 * @param {{ workspace?: string, against?: string, image?: Buffer }} [options] `image`: the
 *   workspace already built (without source info, breaks are reported without line numbers)
 * @returns {Promise<{ ok: boolean, against: string, results: PolicyResult[] }>}
 */
export async function checkApi(options = {}) {
  const workspace = path.resolve(options.workspace ?? REPO_ROOT);
  const against = path.resolve(options.against ?? path.join(workspace, RELEASED_IMAGE));
  const image = options.image ?? (await buildImage(workspace));
  const results = await Promise.all(
    POLICIES.map(async (policy) => {
      const config = JSON.stringify({ version: "v2", breaking: { use: [policy.rules] } });
      const args = ["breaking", "-", "--exclude-imports", "--against", against, "--config", config, ...policy.filter];
      const r = await buf(args, image);
      const lines = (r.stdout.toString("utf8") + r.stderr).trim().split("\n").filter(Boolean);
      const allowed = lines.filter((l) => ALLOWED.test(l));
      const breaks = lines.filter((l) => !ALLOWED.test(l));
      const ok = r.code === 0 || (breaks.length === 0 && allowed.length > 0);
      const output = [...breaks, ...allowed.map((l) => `allowed (POST still works; GET added): ${l}`)].join("\n");
      return { ...policy, ok, output };
    }),
  );
  return { ok: results.every((r) => r.ok), against, results };
}

/**
 * Prints a check's outcome the way CI shows it.
 * @param {Awaited<ReturnType<typeof checkApi>>} check
 * @param {(line: string) => void} [print]
 */
export function report(check, print = (line) => console.log(line)) {
  const against = path.relative(process.cwd(), check.against) || check.against;
  print(`api:check: ${check.ok ? "compatible with" : "BREAKS"} the released API (${against})`);
  for (const r of check.results) {
    print(`${r.name} (buf breaking, ${r.rules} rules; ${r.promise}): ${r.ok ? "ok" : "FAILED"}`);
    if (r.output) print(r.output.replace(/^/gm, "  "));
  }
  if (!check.ok) {
    print(
      "Paths are relative to proto/. Put back what the released API had (a field that is no longer " +
        "wanted stays, marked deprecated). The original services never break; a break in another " +
        "package ships in the same change as a major release (npm run api:release -- major). " +
        'See README.md, "API versions and compatibility".',
    );
  }
}

async function main() {
  const args = process.argv.slice(2);
  /** @type {{ workspace?: string, against?: string }} */
  const options = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--against") options.against = args[++i];
    else if (a?.startsWith("--against=")) options.against = a.slice("--against=".length);
    else if (a && !a.startsWith("-") && options.workspace === undefined) options.workspace = a;
    else {
      console.error(`usage: npm run api:check [-- <workspace dir>] [--against <image.binpb>]  (unexpected: ${a})`);
      process.exit(2);
    }
  }
  const check = await checkApi(options);
  report(check);
  process.exit(check.ok ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((e) => {
    console.error(`api:check: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
