import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { toConnectError } from "../interceptors/errors.js";
import { expectStoredOnceGapless, storedOutcome, until } from "./helpers/fault-load.js";
import { login } from "./helpers/login.js";
import { PrivatePostgres } from "./helpers/private-postgres.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Issue 13, finding 1: kill -9 of the PostgreSQL postmaster while 5,000
// messages are sent (each retried by its client with the same
// client_message_id until acknowledged). The process must stay up, answer
// Unavailable (never Internal) while PostgreSQL is down, report /readyz 503,
// and resume by itself within 5 s of PostgreSQL's return, with every
// acknowledged message stored exactly once and gapless seq per conversation.
//
// The test brings its own PostgreSQL (initdb into a temp dir, own port) and
// kills only that postmaster. On the production suite the server uses the
// machine's NATS (its own stream, through startTestServer's prefix), so the
// JetStream worker and its leader lock go through the outage too; on the
// embedded suite (no NATS_URL) the same test runs on the private PostgreSQL
// with the inline queue, where SendMessage stores before it answers.

const MESSAGES = 5_000;
const CONVERSATIONS = 10;
const CONCURRENCY = 40;
/** Acknowledged sends before the kill. */
const KILL_AFTER = 1_500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let pgp: PrivatePostgres;
let s: TestServer;
/** Uncaught exceptions and unhandled rejections in this process (the server runs in it). */
const crashes: unknown[] = [];
const onCrash = (err: unknown) => crashes.push(err);

beforeAll(async () => {
  process.on("uncaughtException", onCrash);
  process.on("unhandledRejection", onCrash);
  pgp = await PrivatePostgres.create();
  await pgp.start();
  // DATABASE_URL here wins over startTestServer's own database (stop() drops that unused one).
  s = await startTestServer({ DATABASE_URL: pgp.url, WORKER_ACK_WAIT_SECONDS: "10" });
}, 60_000);

afterAll(async () => {
  await s?.stop().catch(() => undefined);
  await pgp?.dispose();
  process.off("uncaughtException", onCrash);
  process.off("unhandledRejection", onCrash);
});

type Phase = "before" | "outage" | "recovering";

interface Sender {
  id: string;
  conversationId: string;
  protocol: string;
  chat: Client<typeof ChatService>;
}

function transportFor(protocol: string, token: string): Transport {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const baseUrl = s.url;
  if (protocol === "grpc") return createGrpcTransport({ baseUrl, interceptors: [bearer] });
  if (protocol === "grpc-web") return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] });
  return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] });
}

async function readyz(): Promise<{ status: number; checks: Record<string, string> }> {
  const res = await fetch(`${s.url}/readyz`);
  const body = (await res.json()) as { checks?: Record<string, string> };
  return { status: res.status, checks: body.checks ?? {} };
}

describe("PostgreSQL outage", () => {
  test("a connection PostgreSQL drops while it is checked out (mid-transaction) fails that transaction, not the process", async () => {
    const admin = new pg.Client({ connectionString: pgp.url });
    await admin.connect();
    try {
      const failed = await s.server.ctx.database.db
        .transaction()
        .execute(async (trx) => {
          const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
          // Between two statements, no query in flight: pg emits 'error' on the client itself.
          await admin.query("select pg_terminate_backend($1)", [rows[0]!.pid]);
          await until(
            "the connection to be gone",
            async () => (await admin.query("select count(*)::int as n from pg_stat_activity where pid = $1", [rows[0]!.pid])).rows[0].n === 0,
            5_000,
          );
          await sql`select 1`.execute(trx);
        })
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(toConnectError(failed).code, String(failed)).toBe(Code.Unavailable);
      expect(crashes, String(crashes[0])).toEqual([]);
      // The pool replaced the connection.
      expect((await readyz()).status).toBe(200);
    } finally {
      await admin.end();
    }
  });

  test("kill -9 of the postmaster while 5,000 messages are sent: the process stays up, no Internal, nothing lost or doubled, resumes within 5 s", async () => {
    const production = s.server.ctx.messages.kind === "jetstream";
    const recipient = await login(s.url, "+14155550100");
    const protocols = ["grpc", "connect", "grpc-web"];
    const senders: Sender[] = [];
    for (let i = 0; i < CONVERSATIONS; i++) {
      const me = await login(s.url, `+1415555${String(1000 + i)}`);
      const protocol = protocols[i % protocols.length]!;
      const chat = createClient(ChatService, transportFor(protocol, me.accessToken));
      const conv = await chat.createConversation({ participantIds: [recipient.id] });
      senders.push({ id: me.id, conversationId: conv.conversation!.id, protocol, chat });
    }

    // Answers by phase and code ("ok" included), and by protocol for anything but ok/unavailable.
    let phase: Phase = "before";
    const answers: Record<Phase, Record<string, number>> = { before: {}, outage: {}, recovering: {} };
    const odd: string[] = [];
    const count = (code: string, protocol: string, detail: string) => {
      answers[phase][code] = (answers[phase][code] ?? 0) + 1;
      if (code !== "ok" && code !== "unavailable" && odd.length < 20) odd.push(`${phase} ${protocol} ${code}: ${detail}`);
    };
    let acked = 0;
    let firstAckAfterRestart: number | undefined;
    let restartedAt: number | undefined;

    const work = Array.from({ length: MESSAGES }, (_, n) => ({ sender: senders[n % CONVERSATIONS]!, clientMessageId: `m-${n}` }));
    let next = 0;
    const sendAll = async (): Promise<void> => {
      for (let item = work[next++]; item; item = work[next++]) {
        const { sender, clientMessageId } = item;
        for (;;) {
          try {
            await sender.chat.sendMessage({ conversationId: sender.conversationId, content: clientMessageId, clientMessageId }, { timeoutMs: 15_000 });
            count("ok", sender.protocol, "");
            acked++;
            if (restartedAt !== undefined && firstAckAfterRestart === undefined) firstAckAfterRestart = Date.now();
            break;
          } catch (err) {
            const ce = ConnectError.from(err);
            count(Code[ce.code].toLowerCase(), sender.protocol, ce.rawMessage);
            await sleep(50);
          }
        }
      }
    };
    const sendStarted = Date.now();
    const sending = Promise.all(Array.from({ length: CONCURRENCY }, sendAll));

    // Mid-send: kill the postmaster.
    await until(`${KILL_AFTER} messages acknowledged`, () => acked >= KILL_AFTER, 60_000, 10);
    const pid = pgp.pid;
    await pgp.kill();
    const killedAt = Date.now();
    const sendRate = Math.round((acked * 1000) / (killedAt - sendStarted));
    phase = "outage";
    const ackedAtKill = acked;

    const readyzDownMs = await until("/readyz answers 503", async () => (await readyz()).status === 503, 10_000);
    const down = await readyz();
    expect(down.checks.database).toMatch(/^unreachable/);
    // Clients see the outage (as Unavailable, asserted below) over every protocol.
    const failures = () => Object.entries(answers.outage).reduce((n, [code, k]) => (code === "ok" ? n : n + k), 0);
    await until("200 failed answers", () => failures() >= 200, 15_000);
    let workerDuringOutage: string | undefined;
    if (production) {
      // The worker's lock connection died with the postmaster: it stopped working its messages and stands by.
      await until("the worker stands by", async () => (await readyz()).checks.worker === "standby", 10_000);
      workerDuringOutage = (await readyz()).checks.worker;
    }
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const outageAnswers = { ...answers.outage };

    // PostgreSQL comes back (crash recovery on the same data directory).
    await pgp.start();
    restartedAt = Date.now();
    phase = "recovering";
    const readyzUpMs = await until("/readyz answers 200", async () => (await readyz()).status === 200, 15_000);
    await until("a message acknowledged after the restart", () => firstAckAfterRestart !== undefined, 15_000, 10);
    const firstAckMs = firstAckAfterRestart! - restartedAt;
    // The worker takes its lock back on its own (it polls every second while standing by); SendMessage acks need only JetStream.
    let workerBackMs: number | undefined;
    if (production) {
      await until("the worker running again", async () => (await readyz()).checks.worker === "running", 10_000);
      workerBackMs = Date.now() - restartedAt;
    }

    await sending;
    const sendsDoneAt = Date.now();
    expect(acked).toBe(MESSAGES);

    // Every acknowledged message stored once (the worker may still be catching up), asked of PostgreSQL itself.
    expect(s.config.databaseUrl).toBe(pgp.url);
    const { storedAllMs, rows, lost, doubled } = await storedOutcome(pgp.url, work, 30_000);
    const all = Object.values(answers).flatMap((byCode) => Object.entries(byCode));
    const internal = all.filter(([code]) => code === "internal" || code === "unknown").reduce((n, [, k]) => n + k, 0);
    console.info(
      `[pg-outage] ${production ? "production (JetStream worker, leader lock)" : "inline queue"}: postmaster pid ${pid} killed after ${ackedAtKill} of ${MESSAGES} acks (${sendRate}/s); ` +
        `/readyz 503 after ${readyzDownMs} ms (database: "${down.checks.database}"${workerDuringOutage ? `, worker: ${workerDuringOutage}` : ""}); ` +
        `outage ${restartedAt - killedAt} ms; answers during the outage ${JSON.stringify(outageAnswers)} (until restart: ${JSON.stringify(answers.outage)}); ` +
        `after the restart: /readyz 200 in ${readyzUpMs} ms, first ack in ${firstAckMs} ms, worker running in ${workerBackMs ?? "-"} ms, answers ${JSON.stringify(answers.recovering)}; ` +
        `all ${MESSAGES} acked ${sendsDoneAt - restartedAt} ms and stored ${sendsDoneAt - restartedAt + storedAllMs} ms after the restart; ` +
        `lost ${lost}, doubled ${doubled}, internal ${internal}` +
        (odd.length ? `; other answers: ${odd.join(" | ")}` : ""),
    );
    expectStoredOnceGapless({ rows, lost, doubled }, work);
    expect(internal, odd.join("\n")).toBe(0);
    expect(
      Object.keys(outageAnswers).filter((c) => c !== "unavailable" && c !== "ok" && c !== "deadline_exceeded"),
      odd.join("\n"),
    ).toEqual([]);
    expect(readyzUpMs).toBeLessThan(5_000);
    expect(firstAckMs).toBeLessThan(5_000);
    expect(crashes, String(crashes[0])).toEqual([]);
  }, 120_000);
});
