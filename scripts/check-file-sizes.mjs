// Fails when a non-test TypeScript file under server/ is longer than 450 lines (issue 14: a file that
// grows past it is split along its seams, as services/chat/ and realtime/ were). Prints the largest files.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

const LIMIT = 450;
const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "server");

function* files(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "tests") yield* files(p);
    } else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) yield p;
  }
}

const sizes = [...files(root)].map((f) => ({ f: path.relative(path.dirname(root), f), lines: readFileSync(f, "utf8").split("\n").length - 1 }));
sizes.sort((a, b) => b.lines - a.lines);
const over = sizes.filter((s) => s.lines > LIMIT);
for (const s of sizes.slice(0, 5)) console.log(`${String(s.lines).padStart(5)} ${s.f}`);
if (over.length > 0) {
  console.error(`${over.length} file(s) under server/ over ${LIMIT} lines: ${over.map((s) => s.f).join(", ")}; split them along their seams`);
  process.exit(1);
}
console.log(`${sizes.length} files, none over ${LIMIT} lines`);
