import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The Buf CLI from node_modules, run the way a user runs it from the project
 * root (these are the command lines the README shows): no shell, real process.
 */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BUF = path.join(ROOT, "node_modules/.bin/buf");
/** The health proto shipped by grpc-health-check: a plain directory, no buf.yaml. */
export const HEALTH_SCHEMA = "node_modules/grpc-health-check/proto";

// buf curl's exit code for a failed RPC is the gRPC code shifted left by 3.
export const EXIT_UNIMPLEMENTED = 12 << 3;
export const EXIT_UNAVAILABLE = 14 << 3;

export interface BufResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function buf(args: string[], timeoutMs = 20_000): Promise<BufResult> {
  return new Promise((resolve) => {
    execFile(BUF, args, { cwd: ROOT, timeout: timeoutMs, env: bufEnv() }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export function bufEnv(): NodeJS.ProcessEnv {
  // Plain, uncoloured logs so stderr is matchable.
  return { ...process.env, BUF_LOG_FORMAT: "text", NO_COLOR: "1" };
}

/** buf curl prints each response message as an indented JSON document; this splits them. */
export function jsonDocuments(out: string): unknown[] {
  const docs: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < out.length; i++) {
    const c = out[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{") {
      if (depth++ === 0) start = i;
    } else if (c === "}" && --depth === 0) {
      docs.push(JSON.parse(out.slice(start, i + 1)));
    }
  }
  return docs;
}
