#!/usr/bin/env node
// `npm start` / `npm run dev` / `npm test`: runs `npm run build` only when something the build reads is newer
// than the last build (dist/.build-stamp), so a start with nothing changed starts at once.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

const INPUTS = ["server", "gen", "migrations", "client-sdk/src", "client-sdk/package.json", "client-sdk/tsconfig.json", "web", "scripts/copy-sql.mjs"];
const INPUT_FILES = ["package.json", "tsconfig.json", "tsconfig.build.json"];
// `npm install` rewrites package-lock.json (a new mtime, often the same bytes): its content is what counts.
const LOCK = "package-lock.json";
const lockHash = () => (existsSync(LOCK) ? createHash("sha256").update(readFileSync(LOCK)).digest("hex") : "none");
const STAMP = "dist/.build-stamp";
const OUTPUTS = ["dist/server/main.js", "dist/web/index.html"];

/** The newest modification time under `p` (0 if it does not exist), with the file it belongs to. */
function newest(p) {
  if (!existsSync(p)) return { ms: 0, file: p };
  const st = statSync(p);
  if (!st.isDirectory()) return { ms: st.mtimeMs, file: p };
  let best = { ms: 0, file: p };
  for (const entry of readdirSync(p)) {
    if (entry === "node_modules" || entry === "dist") continue;
    const n = newest(path.join(p, entry));
    if (n.ms > best.ms) best = n;
  }
  return best;
}

// `npm run build` ends with `--stamp`: it records the build, whoever ran it.
if (process.argv.includes("--stamp")) {
  writeFileSync(STAMP, `${new Date().toISOString()}\n${LOCK} ${lockHash()}\n`);
  process.exit(0);
}

const stamp = existsSync(STAMP) ? statSync(STAMP).mtimeMs : 0;
const lockChanged = stamp > 0 && !readFileSync(STAMP, "utf8").includes(`${LOCK} ${lockHash()}`);
const missing = OUTPUTS.find((o) => !existsSync(o));
const changed = [...INPUTS, ...INPUT_FILES].map(newest).reduce((a, b) => (b.ms > a.ms ? b : a));
if (!missing && stamp > 0 && !lockChanged && changed.ms <= stamp) {
  console.error("chatwire: dist/ is up to date (nothing changed since the last build)");
} else {
  const why = missing ? `${missing} is missing` : stamp === 0 ? "no build recorded" : lockChanged ? `${LOCK} changed` : `${changed.file} changed`;
  console.error(`chatwire: building (${why})`);
  execFileSync("npm", ["run", "build"], { stdio: "inherit" });
}
