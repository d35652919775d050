import type http2 from "node:http2";
import { connectH2, unary } from "../lib/h2.js";
import { serve } from "../lib/ipc.js";
import { nowMs, summarize } from "../lib/stats.js";

// Closed-loop unary load (as h2load does): `concurrency` calls always in
// flight over `connections` HTTP/2 connections, the same request bytes each time.

serve({
  async run(arg: {
    url: string;
    headers: Record<string, string>;
    /** Base64 request body. */
    body: string;
    grpc: boolean;
    concurrency: number;
    connections: number;
    warmupSeconds: number;
    seconds: number;
  }) {
    const body = Buffer.from(arg.body, "base64");
    const sessions: http2.ClientHttp2Session[] = [];
    for (let i = 0; i < arg.connections; i++) sessions.push(await connectH2(arg.url));
    let measuring = false;
    let stop = false;
    let ok = 0;
    let failed = 0;
    const lat: number[] = [];
    let firstError: string | undefined;
    const worker = async (i: number) => {
      const session = sessions[i % sessions.length]!;
      while (!stop) {
        const t0 = nowMs();
        const r = await unary(session, arg.headers, body, arg.grpc);
        const good = arg.grpc ? r.status === 0 : r.status === 200;
        if (!measuring) continue;
        if (good) {
          ok++;
          if (lat.length < 1_000_000) lat.push(nowMs() - t0);
        } else {
          failed++;
          firstError ??= `${r.status} ${r.message ?? r.body.toString().slice(0, 100)}`;
        }
      }
    };
    const workers = Array.from({ length: arg.concurrency }, (_, i) => worker(i));
    await new Promise((r) => setTimeout(r, arg.warmupSeconds * 1000));
    measuring = true;
    const t0 = nowMs();
    await new Promise((r) => setTimeout(r, arg.seconds * 1000));
    measuring = false;
    const elapsed = (nowMs() - t0) / 1000;
    stop = true;
    await Promise.all(workers);
    for (const s of sessions) s.destroy();
    return { ok, failed, rps: ok / elapsed, latency: summarize(lat), firstError };
  },
});
