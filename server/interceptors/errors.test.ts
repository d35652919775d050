import net from "node:net";
import pg from "pg";
import { afterAll, describe, expect, test } from "vitest";
import { toConnectError } from "./errors.js";
import { Code } from "@connectrpc/connect";
import { isConnectionError } from "../db/connection-errors.js";
import { MigrationError } from "../db/migrate.js";
import { JetStreamApiError } from "@nats-io/jetstream";
import { InvalidSubjectError, NoRespondersError, RequestError, connect } from "@nats-io/transport-node";
import { QueueUnavailableError } from "../messaging/message-queue.js";
import { isNatsUnavailableError } from "../messaging/nats.js";

/** The error a real pg client or pool gives for `server` (a port and what happens there). */
async function errorOf(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a failure");
}

const servers: net.Server[] = [];
afterAll(() => servers.forEach((s) => s.close()));

/** A TCP server on a free port that does `onSocket` with each connection. */
async function tcpServer(onSocket: (s: net.Socket) => void): Promise<number> {
  const srv = net.createServer(onSocket);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return (srv.address() as net.AddressInfo).port;
}

describe("isConnectionError / toConnectError", () => {
  test("what pg really throws when PostgreSQL is unreachable or drops the connection is a connection error, and answers Unavailable", async () => {
    const closedPort = await tcpServer(() => undefined);
    servers.pop()!.close();
    const refused = await errorOf(() => new pg.Client({ connectionString: `postgres://x@127.0.0.1:${closedPort}/x` }).connect());
    const hangsUp = await tcpServer((s) => s.destroy());
    const terminated = await errorOf(() => new pg.Client({ connectionString: `postgres://x@127.0.0.1:${hangsUp}/x` }).connect());
    const silent = await tcpServer(() => undefined);
    const pool = new pg.Pool({ connectionString: `postgres://x@127.0.0.1:${silent}/x`, connectionTimeoutMillis: 200 });
    const timedOut = await errorOf(() => pool.query("select 1"));
    await pool.end();
    const cases = {
      refused,
      terminated,
      timedOut,
      "wrapped by a migration": new MigrationError(undefined, refused),
      "admin shutdown (57P01)": Object.assign(new Error("terminating connection due to unexpected postmaster exit"), { code: "57P01" }),
      "starting up (57P03)": Object.assign(new Error("the database system is starting up"), { code: "57P03" }),
      "connection failure (08006)": Object.assign(new Error("connection failure"), { code: "08006" }),
      "every address refused": new AggregateError([refused, refused], "connect failed"),
    };
    for (const [name, err] of Object.entries(cases)) {
      expect(isConnectionError(err), `${name}: ${String(err)}`).toBe(true);
      expect(toConnectError(err).code, name).toBe(Code.Unavailable);
    }
  });

  test("a statement the database refuses, and a plain bug, are not: they answer Internal", () => {
    // pg's own error class, as it arrives for a statement PostgreSQL refused.
    const refusedStatement = (code: string, message: string) => Object.assign(new pg.DatabaseError(message, 0, "error"), { code });
    const syntax = refusedStatement("42601", 'syntax error at or near "selec"');
    const cases = [
      syntax,
      refusedStatement("23505", "duplicate key value violates unique constraint"),
      refusedStatement("22P02", "invalid input syntax for type uuid"),
      new TypeError("x is undefined"),
      new MigrationError("0001", syntax),
      "a string",
    ];
    for (const err of cases) {
      expect(isConnectionError(err), String(err)).toBe(false);
      expect(toConnectError(err).code).toBe(Code.Internal);
    }
  });

  test("NATS that cannot answer (refused, silent, no responder, JetStream 503 as while a stream elects a leader) answers Unavailable; a refused request does not", async () => {
    const closedPort = await tcpServer(() => undefined);
    servers.pop()!.close();
    const refused = await errorOf(() => connect({ servers: `127.0.0.1:${closedPort}`, reconnect: false, timeout: 500 }));
    const held: net.Socket[] = [];
    const silent = await tcpServer((sock) => held.push(sock));
    const timedOut = await errorOf(() => connect({ servers: `127.0.0.1:${silent}`, reconnect: false, timeout: 200 }));
    held.forEach((sock) => sock.destroy());
    const jetStream503 = new JetStreamApiError({ code: 503, err_code: 10008, description: "JetStream system temporarily unavailable" });
    const unavailable = {
      refused,
      timedOut,
      "no responders, wrapped in a RequestError": new RequestError("request failed", { cause: new NoRespondersError("$JS.API.STREAM.INFO.X") }),
      "JetStream 503": jetStream503,
      "the queue's own wrapper": new QueueUnavailableError("the message queue did not accept the message", { cause: timedOut }),
    };
    for (const [name, err] of Object.entries(unavailable)) {
      expect(toConnectError(err).code, `${name}: ${String(err)}`).toBe(Code.Unavailable);
    }
    const bugs = [
      new JetStreamApiError({ code: 400, err_code: 10058, description: "stream name already in use with a different configuration" }),
      new InvalidSubjectError("a b"),
    ];
    for (const err of bugs) {
      expect(isNatsUnavailableError(err), String(err)).toBe(false);
      expect(toConnectError(err).code, String(err)).toBe(Code.Internal);
    }
  });
});
