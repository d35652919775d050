import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { BenchContext } from "./lib/context.js";
import { DbFixtures } from "./lib/fixtures.js";
import { sleep } from "./lib/stats.js";
import { argValue } from "./lib/args.js";

// What an idle Subscribe stream holds on the server's heap: a production-profile server (the machine's
// PostgreSQL and NATS, a fresh database) writes a heap snapshot with no stream open and another with N idle
// streams (one HTTP/2 connection each, as scenario 3), and the difference is divided by N: by constructor,
// and by group (each object goes to the first per-stream owner on its chain of first retainers, so the
// split between groups is approximate; the totals are exact). Self sizes of what is alive after the
// snapshot's full GC; native memory that Node reports (nghttp2's) is counted, the rest of malloc's is not.
//
//   node dist/bench/heap-idle.js [--n=1000] [--top=40]

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** Groups, by the name of an object's first owner that matches one (first match wins). */
const GROUPS: Array<[string, RegExp]> = [
  ["nghttp2 and Node's native Http2Session", /^\(native\)Node \/ Http2Session$/],
  ["Node's session, socket and stream objects", /^(ServerHttp2Session|Socket|ServerHttp2Stream|Http2Session|Http2Stream|TCP|Timeout)$/],
  ["compatibility request/response", /^(Http2ServerRequest|Http2ServerResponse)$/],
  ["Subscribe call (generators, handler context, fast path)", /^(observed|subscribe|RpcFastPath|AbortController|LeanHeaders)$/],
  ["LocalStream, queue, user channel, NATS subscription", /^(LocalStream|StreamQueue|UserChannels|SubscriptionImpl|RealtimeHub|Presence)$/],
  ["auth caches", /^(TokenService|SessionGuard)$/],
  ["compiled code", /^\(code\)$/],
];

interface Totals {
  byName: Map<string, { count: number; size: number }>;
  byGroup: Map<string, number>;
  total: number;
}

function analyse(file: string): Totals {
  const j = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const meta = j.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const types = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const [iType, iName, iSize, iEdges] = ["type", "name", "self_size", "edge_count"].map((f) => meta.node_fields.indexOf(f)) as [number, number, number, number];
  const [eType, eTo] = ["type", "to_node"].map((f) => meta.edge_fields.indexOf(f)) as [number, number];
  const { nodes, edges, strings } = j;
  const n = nodes.length / nf;
  const name = (i: number): string => {
    const t = types[nodes[i * nf + iType]!]!;
    const s = strings[nodes[i * nf + iName]!]!;
    if (t === "string" || t === "concatenated string" || t === "sliced string") return "(string)";
    if (t === "code") return "(code)";
    if (t === "closure") return `(closure ${s.slice(0, 40)})`;
    return t === "object" ? s.slice(0, 60) : `(${t})${s.slice(0, 60)}`;
  };
  const owner = new Int32Array(n).fill(-1);
  let e = 0;
  for (let i = 0; i < n; i++) {
    const count = nodes[i * nf + iEdges]!;
    for (let k = 0; k < count; k++, e += ef) {
      const et = edgeTypes[edges[e + eType]!];
      if (et === "weak" || et === "shortcut") continue;
      const to = edges[e + eTo]! / nf;
      if (owner[to] === -1) owner[to] = i;
    }
  }
  const byName = new Map<string, { count: number; size: number }>();
  const byGroup = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < n; i++) {
    const size = nodes[i * nf + iSize]!;
    total += size;
    const own = name(i);
    const a = byName.get(own) ?? { count: 0, size: 0 };
    a.count++;
    a.size += size;
    byName.set(own, a);
    let group = "other";
    for (let p = i, d = 0; p >= 0 && d < 25; p = owner[p]!, d++) {
      const hit = GROUPS.find(([, re]) => re.test(name(p)));
      if (hit) {
        group = hit[0];
        break;
      }
    }
    byGroup.set(group, (byGroup.get(group) ?? 0) + size);
  }
  return { byName, byGroup, total };
}

async function admin(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Signals the server to write a heap snapshot into `dir` and waits until the file stops growing. */
async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, "SIGUSR2");
  for (;;) {
    await sleep(500);
    const file = readdirSync(dir).find((f) => f.endsWith(".heapsnapshot") && !before.has(f));
    if (!file) continue;
    let size = -1;
    for (;;) {
      await sleep(1000);
      const now = statSync(path.join(dir, file)).size;
      if (now === size) return path.join(dir, file);
      size = now;
    }
  }
}

async function main(): Promise<void> {
  const arg = argValue;
  const n = Number(arg("n") ?? 1000);
  const top = Number(arg("top") ?? 40);
  const adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const natsUrl = process.env.BENCH_NATS_URL ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const dbName = `chatwire_heap_${randomBytes(6).toString("hex")}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), "chatwire-heap-"));
  await admin(adminUrl, `CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const ctx = new BenchContext("quick", url.toString(), natsUrl, {}, false);
  try {
    // The first start migrates the fresh database.
    await ctx.stopServer(await ctx.startServer());
    const server = await ctx.startServer({ REALTIME_HEARTBEAT_SECONDS: "2", NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}` });
    const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
    const devices = await fx.devices(n);
    await fx.close();
    const [sub] = ctx.subscribers(devices, 1);
    await sleep(3000);
    const empty = await snapshot(server.pid, dir);
    const opened = await sub!.proc.call<{ opened: number; errors: string[] }>(
      "open",
      { url: server.url, devices: sub!.devices, concurrency: 200, heartbeatSeconds: 2, timeoutMs: 120_000 },
      600_000,
    );
    await sleep(8000);
    const full = await snapshot(server.pid, dir);
    await sub!.proc.call("close").catch(() => undefined);
    await ctx.stopLoad(sub!.proc);
    await ctx.stopServer(server);
    const a = analyse(empty);
    const b = analyse(full);
    const per = (bytes: number) => (bytes / opened.opened).toFixed(0).padStart(7);
    console.log(`${opened.opened} idle streams (${opened.errors.length} failed to open); bytes per stream, alive after a full GC`);
    console.log(`${per(b.total - a.total)}  all`);
    for (const [group] of [...GROUPS, ["other"] as const]) console.log(`${per((b.byGroup.get(group) ?? 0) - (a.byGroup.get(group) ?? 0))}  ${group}`);
    console.log("\nby constructor (count per stream):");
    const rows = [...b.byName].map(([k, v]) => {
      const o = a.byName.get(k) ?? { count: 0, size: 0 };
      return { k, size: v.size - o.size, count: v.count - o.count };
    });
    rows.sort((x, y) => y.size - x.size);
    for (const r of rows.slice(0, top)) console.log(`${per(r.size)}  ${(r.count / opened.opened).toFixed(2).padStart(6)}  ${r.k}`);
  } finally {
    await ctx.cleanup();
    await admin(adminUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
