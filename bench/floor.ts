import { fork, type ChildProcess } from "node:child_process";
import http2 from "node:http2";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { connectH2, grpcFrame, grpcHeaders } from "./lib/h2.js";
import { rssBytes } from "./lib/proc.js";
import { pool, sleep } from "./lib/stats.js";
import { argValue } from "./lib/args.js";

// The memory floor of an idle server-stream with node:http2 alone: a bare
// server holds N client connections, each with one open stream that has sent
// its response headers and one small message (as Subscribe's "ready"), and
// nothing of Chatwire runs. Whatever the server's RSS grows by per connection
// here is Node's own (nghttp2 session, socket, stream objects), the part no
// change to Chatwire's code can remove.
//
//   node dist/bench/floor.js [--n=15000] [--variant=bare|listener|compat] [--settings='{"initialWindowSize":65535}'] [--session-memory=64]
//
// bare: http2.createServer with default options, "stream" event API.
// listener: as server/listener.ts: a net server that sniffs the preface and
//   hands the socket to http2 (maxConcurrentStreams 1000, maxSessionMemory 64).
// compat: as listener, but through the request/response compatibility API
//   (Http2ServerRequest/Response), which connect-node's adapter uses.

interface ServerArgs {
  variant: string;
  settings: http2.Settings;
  sessionMemory?: number;
  heartbeatMs: number;
}

async function runServer(args: ServerArgs): Promise<void> {
  const frame = grpcFrame(Buffer.from([0x1a, 0x02, 0x08, 0x01])); // a few bytes, as a small event
  const keep = new Set<unknown>();
  const options: http2.ServerOptions = {
    settings: { ...(args.variant === "bare" ? {} : { maxConcurrentStreams: 1000 }), ...args.settings },
    ...(args.sessionMemory !== undefined ? { maxSessionMemory: args.sessionMemory } : args.variant === "bare" ? {} : { maxSessionMemory: 64 }),
  };
  const beat = (write: () => void, alive: () => boolean) => {
    if (!args.heartbeatMs) return;
    const t = setInterval(() => (alive() ? write() : clearInterval(t)), args.heartbeatMs);
    t.unref();
  };
  let h2: http2.Http2Server;
  if (args.variant === "compat") {
    h2 = http2.createServer(options, (req, res) => {
      req.on("data", () => undefined);
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/grpc+proto" });
        res.write(frame);
        keep.add(res);
        beat(
          () => res.write(frame),
          () => !res.stream.destroyed,
        );
        res.stream.once("close", () => keep.delete(res));
      });
    });
  } else {
    h2 = http2.createServer(options);
    h2.on("stream", (stream) => {
      stream.on("data", () => undefined);
      stream.on("error", () => undefined);
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/grpc+proto" });
        stream.write(frame);
        beat(
          () => stream.write(frame),
          () => !stream.destroyed,
        );
      });
    });
  }
  let server: net.Server = h2;
  if (args.variant !== "bare") {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    server = net.createServer((socket) => {
      let seen: Buffer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
        if (seen.length < preface.length) return;
        socket.off("data", onData);
        socket.pause();
        socket.unshift(seen);
        h2.emit("connection", socket);
      };
      socket.on("data", onData);
    });
  }
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  process.send!({ port: (server.address() as net.AddressInfo).port });
  process.on("message", (m: string) => {
    if (m === "mem") {
      globalThis.gc?.();
      process.send!({ mem: process.memoryUsage() });
    }
  });
}

function ask<T>(child: ChildProcess, msg: string, key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (key in m) {
        child.off("message", on);
        resolve(m[key] as T);
      }
    };
    child.on("message", on);
    if (msg) child.send(msg);
  });
}

async function main(): Promise<void> {
  const arg = argValue;
  if (arg("role") === "server") {
    await runServer(JSON.parse(arg("args")!) as ServerArgs);
    return;
  }
  const n = Number(arg("n") ?? 15_000);
  const serverArgs: ServerArgs = {
    variant: arg("variant") ?? "bare",
    settings: JSON.parse(arg("settings") ?? "{}") as http2.Settings,
    sessionMemory: arg("session-memory") ? Number(arg("session-memory")) : undefined,
    heartbeatMs: Number(arg("heartbeat-ms") ?? 5000),
  };
  const child = fork(fileURLToPath(import.meta.url), ["--role=server", `--args=${JSON.stringify(serverArgs)}`], { execArgv: ["--expose-gc"] });
  const port = await ask<number>(child, "", "port");
  const url = `http://127.0.0.1:${port}`;
  await sleep(1000);
  const before = rssBytes(child.pid!);
  const memBefore = await ask<NodeJS.MemoryUsage>(child, "mem", "mem");
  const sessions: http2.ClientHttp2Session[] = [];
  const t0 = performance.now();
  const opened = await pool(
    Array.from({ length: n }, (_, i) => i),
    200,
    async () => {
      const s = await connectH2(url);
      sessions.push(s);
      const req = s.request(grpcHeaders("/realtime.RealtimeService/Subscribe", "x".repeat(300)));
      await new Promise<void>((resolve) => {
        req.once("data", () => resolve());
        req.once("close", () => resolve());
        req.on("data", () => undefined);
        req.on("error", () => undefined);
        req.end(grpcFrame(Buffer.alloc(0)));
      });
      return true;
    },
  );
  const openS = (performance.now() - t0) / 1000;
  await sleep(3000);
  const after = rssBytes(child.pid!);
  const memAfter = await ask<NodeJS.MemoryUsage>(child, "mem", "mem");
  const per = (a: number, b: number) => ((a - b) / opened.length / 1024).toFixed(1);
  console.log(
    JSON.stringify({
      ...serverArgs,
      connections: opened.length,
      openS: openS.toFixed(1),
      rssBeforeMiB: (before / 2 ** 20).toFixed(1),
      rssAfterMiB: (after / 2 ** 20).toFixed(1),
      rssPerConnKiB: per(after, before),
      heapUsedPerConnKiB: per(memAfter.heapUsed, memBefore.heapUsed),
      externalPerConnKiB: per(memAfter.external, memBefore.external),
    }),
  );
  for (const s of sessions) s.destroy();
  child.kill();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
