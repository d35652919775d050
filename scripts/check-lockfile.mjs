#!/usr/bin/env node
// Checks package-lock.json is complete for every platform, so `npm ci` accepts it on
// any machine (CI runs `npm ci`): each optional dependency a locked package declares
// (e.g. @bufbuild/buf's per-platform binaries) has its own locked entry with an
// integrity hash, and package.json's dependencies are the lockfile's root dependencies.
import { readFileSync } from "node:fs";

const lock = JSON.parse(readFileSync("package-lock.json", "utf8"));
const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const packages = lock.packages ?? {};
const problems = [];

/** The entry node would find for `name` required from the package at `from` (nested first, then up to the root). */
function resolve(from, name) {
  for (let dir = from; ; ) {
    const at = `${dir ? `${dir}/` : ""}node_modules/${name}`;
    if (packages[at]) return packages[at];
    if (!dir) return undefined;
    const i = dir.lastIndexOf("node_modules/");
    dir = i <= 0 ? "" : dir.slice(0, i - 1);
  }
}

for (const [at, entry] of Object.entries(packages)) {
  if (entry.link) continue;
  for (const name of Object.keys(entry.optionalDependencies ?? {})) {
    const dep = resolve(at, name);
    if (!dep) problems.push(`${at || "(root)"}: optional dependency ${name} is not in the lockfile (install with --os/--cpu for its platform)`);
    else if (!dep.integrity && !dep.link) problems.push(`${name}: locked without an integrity hash`);
  }
}
const root = packages[""] ?? {};
for (const field of ["dependencies", "devDependencies"]) {
  for (const [name, range] of Object.entries(pkg[field] ?? {})) {
    if (root[field]?.[name] !== range)
      problems.push(`package.json ${field}.${name} ${range} is not what the lockfile records (${root[field]?.[name] ?? "nothing"}): npm install`);
  }
}

if (problems.length) {
  console.error(`package-lock.json is incomplete:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exit(1);
}
console.log(`package-lock.json: ${Object.keys(packages).length} entries, every optional (per-platform) dependency locked`);
