import { create, toBinary } from "@bufbuild/protobuf";
import { ValidateTokenRequestSchema } from "../../gen/auth/auth_pb.js";
import { DbFixtures } from "../lib/fixtures.js";
import { grpcFrame } from "../lib/h2.js";
import { CpuMeter } from "../lib/proc.js";
import type { Summary } from "../lib/stats.js";
import type { BenchContext, ScenarioResult } from "../lib/context.js";

interface UnaryRun {
  ok: number;
  failed: number;
  rps: number;
  latency: Summary;
  firstError?: string;
}

/** ValidateToken over gRPC and Connect JSON (h2c) against a bare node:http2 echo server, same load generator. */
export async function scenarioUnary(ctx: BenchContext): Promise<ScenarioResult> {
  const concurrency = 64;
  const connections = 4;
  const warmupSeconds = ctx.quick ? 2 : 10;
  const seconds = ctx.quick ? 4 : 10;
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  const [device] = await fx.devices(1);
  await fx.close();
  const grpcBody = grpcFrame(toBinary(ValidateTokenRequestSchema, create(ValidateTokenRequestSchema, { accessToken: device!.token }))).toString("base64");
  const jsonBody = Buffer.from(JSON.stringify({ access_token: device!.token })).toString("base64");
  const grpcHeaders = { ":method": "POST", ":path": "/auth.AuthService/ValidateToken", "content-type": "application/grpc+proto", te: "trailers" };
  const jsonHeaders = { ":method": "POST", ":path": "/auth.AuthService/ValidateToken", "content-type": "application/json" };

  const runs: Array<{ name: string; run: UnaryRun; cpu: number }> = [];
  const load = ctx.load("unary");
  const echo = ctx.load("h2-echo");
  try {
    const { port, pid } = await echo.call<{ port: number; pid: number }>("listen");
    const measure = async (name: string, url: string, pid: number, headers: Record<string, string>, body: string, grpc: boolean) => {
      const meter = new CpuMeter(pid);
      meter.start();
      const run = await load.call<UnaryRun>("run", { url, headers, body, grpc, concurrency, connections, warmupSeconds, seconds });
      runs.push({ name, run, cpu: meter.read() });
      console.log(`  ${name}: ${run.rps.toFixed(0)} req/s${run.firstError ? ` (error: ${run.firstError})` : ""}`);
    };
    await measure("bare node:http2 echo (gRPC framing)", `http://127.0.0.1:${port}`, pid, grpcHeaders, grpcBody, true);
    const server = await ctx.startServer();
    try {
      await measure("ValidateToken, gRPC (h2c)", server.url, server.pid, grpcHeaders, grpcBody, true);
      await measure("ValidateToken, Connect JSON (h2c)", server.url, server.pid, jsonHeaders, jsonBody, false);
    } finally {
      await ctx.stopServer(server);
    }
  } finally {
    await ctx.stopLoad(load, echo);
  }
  const base = runs[0]!.run.rps;
  const ratio = (i: number) => (runs[i]?.run.rps ?? 0) / base;
  return {
    id: 4,
    name: "unary",
    title: `Unary overhead: ${concurrency} calls in flight over ${connections} HTTP/2 connections, ${warmupSeconds} s warm-up, ${seconds} s measured`,
    headers: ["server", "req/s", "× baseline", "p50 ms", "p99 ms", "server cpu cores", "failed"],
    rows: runs.map((r, i) => [r.name, r.run.rps, ratio(i).toFixed(2), r.run.latency.p50, r.run.latency.p99, r.cpu.toFixed(2), r.run.failed]),
    targets: [
      { what: "gRPC ValidateToken vs bare http2", target: "≥ 0.5×", value: `${ratio(1).toFixed(2)}×`, met: ratio(1) >= 0.5 },
      { what: "Connect JSON ValidateToken vs bare http2", target: "≥ 0.5×", value: `${ratio(2).toFixed(2)}×`, met: ratio(2) >= 0.5 },
    ],
    notes: ["the baseline is one Node process, as is Chatwire", "ValidateToken: JWT verify (HS256) + the session-liveness cache"],
    data: runs,
  };
}
