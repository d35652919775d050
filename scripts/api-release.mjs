#!/usr/bin/env node
// @ts-check
/**
 * `npm run api:release -- <major|minor|patch|X.Y.Z> [--date YYYY-MM-DD] [--root DIR]`
 *
 * Releases an API version: the API as it is now in proto/ becomes the baseline
 * `npm run api:check` compares against (proto/released.binpb), the version
 * moves in client-sdk/package.json (with package-lock.json) and README.md, and
 * CHANGELOG.md's [Unreleased] entries go under a `## [X.Y.Z] - date` heading.
 *
 * It refuses (and changes nothing) when the version would not say what changed:
 * - the original services (auth, chat, status) broke: they never may;
 * - another package broke and the release is not a major one;
 * - the API grew (a reverse buf breaking check finds what was added) and the
 *   release is a patch;
 * - [Unreleased] has no entries, or proto/ has uncommitted changes (the
 *   baseline must be the API of a commit).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { buf, buildImage, checkApi, ORIGINAL_PACKAGES, RELEASED_IMAGE, REPO_ROOT, report } from "./api-check.mjs";

const SEMVER = /^(\d+)\.(\d+)\.(\d+)$/;
/** The README sentence that states the API version; exactly one must exist. */
const README_VERSION = /(The released API is version \*\*)(\d+\.\d+\.\d+)(\*\*)/g;
/** The packed SDK's file name in the README's instructions. */
const README_TARBALL = /chatwire-client-\d+\.\d+\.\d+\.tgz/g;

class Refusal extends Error {}

/**
 * @param {string} v
 * @returns {[number, number, number]}
 */
function parse(v) {
  const m = SEMVER.exec(v);
  if (!m) throw new Refusal(`"${v}" is not a version: give major, minor, patch or X.Y.Z (e.g. 1.2.0)`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/**
 * @param {string} current
 * @param {string} bump
 * @returns {{ next: string, kind: "major" | "minor" | "patch" }}
 */
export function nextVersion(current, bump) {
  const [ma, mi, pa] = parse(current);
  if (bump === "major") return { next: `${ma + 1}.0.0`, kind: "major" };
  if (bump === "minor") return { next: `${ma}.${mi + 1}.0`, kind: "minor" };
  if (bump === "patch") return { next: `${ma}.${mi}.${pa + 1}`, kind: "patch" };
  const [nma, nmi, npa] = parse(bump);
  const kind = nma !== ma ? "major" : nmi !== mi ? "minor" : "patch";
  const newer = nma > ma || (nma === ma && (nmi > mi || (nmi === mi && npa > pa)));
  if (!newer) throw new Refusal(`${bump} is not newer than the current version ${current}`);
  return { next: bump, kind };
}

/**
 * The CHANGELOG with a release heading under [Unreleased]: what was unreleased
 * becomes the release's entries, and [Unreleased] starts empty.
 * @param {string} changelog
 * @param {string} version
 * @param {string} date
 */
export function releaseChangelog(changelog, version, date) {
  const heading = /^## \[Unreleased\][^\n]*\n/im.exec(changelog);
  if (!heading) throw new Refusal('CHANGELOG.md has no "## [Unreleased]" section');
  const start = heading.index + heading[0].length;
  const rest = changelog.slice(start);
  const nextHeading = /^## \[/m.exec(rest);
  const unreleased = nextHeading ? rest.slice(0, nextHeading.index) : rest;
  if (!/^\s*[-*] \S/m.test(unreleased)) {
    throw new Refusal("CHANGELOG.md's [Unreleased] section lists nothing: write what this release adds or changes first");
  }
  if (new RegExp(`^## \\[${version.replaceAll(".", "\\.")}\\]`, "m").test(changelog)) {
    throw new Refusal(`CHANGELOG.md already has a [${version}] section`);
  }
  return `${changelog.slice(0, start)}\n## [${version}] - ${date}\n${unreleased.replace(/^\n+/, "\n")}${nextHeading ? rest.slice(nextHeading.index) : ""}`;
}

/**
 * What the API gained since the baseline: FILE rules run backwards (baseline
 * as input, current as "against") report every addition as a deletion.
 * @param {Buffer} current
 * @param {string} baseline
 */
async function additions(current, baseline) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "chatwire-api-release-"));
  try {
    const file = path.join(dir, "current.binpb");
    await writeFile(file, current);
    const config = JSON.stringify({ version: "v2", breaking: { use: ["FILE"] } });
    const r = await buf(["breaking", baseline, "--exclude-imports", "--against", file, "--config", config]);
    if (r.code !== 0 && r.code !== 100) throw new Error(`buf breaking (reverse) failed:\n${r.stderr.trim()}`);
    return (r.stdout.toString("utf8") + r.stderr)
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => line.replace(/^[^:]*:\d+:\d+:/, "").replace(/^Previously present (.*?) was deleted( from file)?\.?$/, "added $1"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** @param {string} root */
function uncommittedProto(root) {
  try {
    execFileSync("git", ["-C", root, "rev-parse", "--is-inside-work-tree"], { stdio: "ignore" });
  } catch {
    return ""; // not a git checkout (a scratch copy): nothing to compare with
  }
  return execFileSync("git", ["-C", root, "status", "--porcelain", "--", "proto", `:!${RELEASED_IMAGE}`], {
    encoding: "utf8",
  }).trim();
}

/**
 * @param {{ root?: string, bump: string, date?: string, log?: (line: string) => void }} options
 */
export async function releaseApi({ root = REPO_ROOT, bump, date = new Date().toISOString().slice(0, 10), log = console.log }) {
  root = path.resolve(root);
  const file = (/** @type {string} */ f) => path.join(root, f);
  const sdkJson = await readFile(file("client-sdk/package.json"), "utf8");
  const current = /** @type {{ version: string }} */ (JSON.parse(sdkJson)).version;
  const { next, kind } = nextVersion(current, bump);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) throw new Refusal(`--date ${date}: expected YYYY-MM-DD`);

  const changelog = releaseChangelog(await readFile(file("CHANGELOG.md"), "utf8"), next, date);
  const readme = await readFile(file("README.md"), "utf8");
  const stated = [...readme.matchAll(README_VERSION)];
  if (stated.length !== 1) throw new Refusal(`README.md must state "The released API is version **X.Y.Z**" once (found ${stated.length})`);
  if (stated[0]?.[2] !== current) {
    throw new Refusal(`README.md says the API is ${stated[0]?.[2]}, client-sdk/package.json says ${current}: make them agree first`);
  }
  const dirty = uncommittedProto(root);
  if (dirty) throw new Refusal(`proto/ has uncommitted changes; commit them first so the release is a commit's API:\n${dirty}`);

  const currentImage = await buildImage(root, ["--exclude-source-info"]);
  const [check, added] = await Promise.all([checkApi({ workspace: root, image: currentImage }), additions(currentImage, path.join(root, RELEASED_IMAGE))]);
  const original = check.results.find((r) => r.rules === "FILE");
  if (original && !original.ok) {
    report(check, log);
    throw new Refusal(`${ORIGINAL_PACKAGES.join(", ")} are frozen in every version: undo the break above`);
  }
  if (!check.ok && kind !== "major") {
    report(check, log);
    throw new Refusal(`the API breaks compatibility (above): that needs a major release (${nextVersion(current, "major").next}), not ${kind}`);
  }
  if (added.length > 0 && kind === "patch") {
    throw new Refusal(
      `the API grew since ${current} (${added.slice(0, 5).join("; ")}${added.length > 5 ? "; …" : ""}): that needs a minor release, not a patch`,
    );
  }

  // Everything checked: write. The image goes through a temporary file so a failure leaves the old one.
  const image = file(RELEASED_IMAGE);
  await writeFile(`${image}.tmp`, currentImage);
  await rename(`${image}.tmp`, image);
  await writeFile(file("client-sdk/package.json"), sdkJson.replace(/("version":\s*")[^"]*(")/, `$1${next}$2`));
  try {
    const lock = await readFile(file("package-lock.json"), "utf8");
    const updated = lock.replace(/("client-sdk": \{\s*"name": "@chatwire\/client",\s*"version": ")[^"]*(")/, `$1${next}$2`);
    if (updated !== lock) await writeFile(file("package-lock.json"), updated);
  } catch (e) {
    if (/** @type {NodeJS.ErrnoException} */ (e).code !== "ENOENT") throw e;
  }
  await writeFile(file("README.md"), readme.replace(README_VERSION, `$1${next}$3`).replace(README_TARBALL, `chatwire-client-${next}.tgz`));
  await writeFile(file("CHANGELOG.md"), changelog);

  log(`API ${current} → ${next} (${kind}${added.length ? `, ${added.length} addition${added.length === 1 ? "" : "s"}` : ""}${check.ok ? "" : ", breaking"})`);
  log(`wrote ${RELEASED_IMAGE}, client-sdk/package.json, package-lock.json, README.md, CHANGELOG.md`);
  log(`next: review, commit ("Release API ${next}") and tag v${next}`);
  return { previous: current, version: next, kind, added };
}

async function main() {
  const args = process.argv.slice(2);
  /** @type {{ bump?: string, date?: string, root?: string }} */
  const o = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--date" || a === "--root") o[a === "--date" ? "date" : "root"] = args[++i];
    else if (a && !a.startsWith("-") && o.bump === undefined) o.bump = a;
    else o.bump = "";
  }
  if (!o.bump) {
    console.error("usage: npm run api:release -- <major|minor|patch|X.Y.Z> [--date YYYY-MM-DD] [--root DIR]");
    process.exit(2);
  }
  await releaseApi({ root: o.root, bump: o.bump, date: o.date });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((e) => {
    console.error(`api:release: ${e instanceof Refusal ? "refused: " : ""}${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
