import { randomBytes } from "node:crypto";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { JetStreamPublisher, JetStreamPublishError } from "./jetstream-publisher.js";
import { JetStreamQueue } from "./jetstream-queue.js";
import { QueueUnavailableError } from "./message-queue.js";
import { outgoing } from "../tests/helpers/fixtures.js";

// Every outcome of a JetStream publish, against the real NATS (NATS_URL, else 127.0.0.1).
const NATS = process.env.NATS_URL || "nats://127.0.0.1:4222";
const logger = pino({ level: "silent" });

let nc: NatsConnection;
let jsm: JetStreamManager;
const streams: string[] = [];
const data = new TextEncoder().encode("{}");

beforeAll(async () => {
  nc = await connect({ servers: NATS.split(",") });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc?.close();
});

/** A stream of its own on `<subject>.>`. */
async function newStream(): Promise<{ stream: string; subject: string }> {
  const id = randomBytes(5).toString("hex");
  const stream = `PUB_${id.toUpperCase()}`;
  streams.push(stream);
  await jsm.streams.add({ name: stream, subjects: [`pub${id}.>`] });
  return { stream, subject: `pub${id}.x` };
}

async function rejection(p: Promise<unknown>): Promise<JetStreamPublishError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(JetStreamPublishError);
  return err as JetStreamPublishError;
}

describe("JetStreamPublisher", () => {
  test("stores and answers with stream and seq; the same Nats-Msg-Id again is a duplicate of the same seq, not a second message", async () => {
    const { stream, subject } = await newStream();
    const pub = new JetStreamPublisher(nc, 5000);
    const acks = await Promise.all([pub.publish(subject, data, "a", stream), pub.publish(subject, data, "b", stream)]);
    expect(acks).toEqual([
      { stream, seq: 1, duplicate: false },
      { stream, seq: 2, duplicate: false },
    ]);
    expect(await pub.publish(subject, data, "a", stream)).toEqual({ stream, seq: 1, duplicate: true });
    expect((await jsm.streams.info(stream)).state.messages).toBe(2);
    const m = await jsm.streams.getMessage(stream, { seq: 2 });
    expect(m?.header.get("Nats-Msg-Id")).toBe("b");
    expect(pub.waiting).toBe(0);
  });

  test("a subject no stream takes: 503 no responders", async () => {
    const pub = new JetStreamPublisher(nc, 5000);
    const err = await rejection(pub.publish(`nostream${randomBytes(5).toString("hex")}.x`, data, "a", "NOPE"));
    expect(err.code).toBe(503);
    expect(err.message).toMatch(/no responders/);
  });

  test("another stream takes the subject than the one expected: JetStream's error, nothing stored", async () => {
    const { stream, subject } = await newStream();
    const err = await rejection(new JetStreamPublisher(nc, 5000).publish(subject, data, "a", "SOME_OTHER_STREAM"));
    expect(err.code).toBe(400);
    expect(err.message).toMatch(/expected stream does not match/i);
    expect((await jsm.streams.info(stream)).state.messages).toBe(0);
  });

  test("nobody answers: times out, and the pending publish is forgotten", async () => {
    const subject = `silent${randomBytes(5).toString("hex")}`;
    // A plain subscriber: there is interest (no 503), but no JetStream ack ever comes.
    const sub = nc.subscribe(subject);
    await nc.flush();
    const pub = new JetStreamPublisher(nc, 200);
    const err = await rejection(pub.publish(subject, data, "a", "ANY"));
    expect(err.message).toMatch(/timed out after 200 ms/);
    expect(pub.waiting).toBe(0);
    sub.unsubscribe();
  });

  test("the connection closes while publishes wait: they fail at once, and the queue answers QueueUnavailableError", async () => {
    const own = await connect({ servers: NATS.split(",") });
    const subject = `silent${randomBytes(5).toString("hex")}`;
    const sub = own.subscribe(subject);
    await own.flush();
    const pub = new JetStreamPublisher(own, 60_000);
    const waiting = pub.publish(subject, data, "a", "ANY");
    await own.close();
    const err = await waiting.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/closed/);
    expect(pub.waiting).toBe(0);
    sub.unsubscribe();

    const queue = new JetStreamQueue({ nc: own, subjectPrefix: "closed", logger });
    await expect(queue.publish(outgoing("0190f1e2-7a4b-7c3d-8e5f-0123456789ab", "0190f1e2-7a4b-7c3d-8e5f-0123456789ac"))).rejects.toBeInstanceOf(
      QueueUnavailableError,
    );
  });

  test("JetStreamQueue.publish: a duplicate (a client retry) is a success, and the stream holds the message once", async () => {
    const prefix = `pq${randomBytes(5).toString("hex")}`;
    const queue = new JetStreamQueue({ nc, subjectPrefix: prefix, logger, partitions: 1 });
    streams.push(queue.names.stream);
    await queue.provision();
    const m = outgoing("0190f1e2-7a4b-7c3d-8e5f-0123456789ab", "0190f1e2-7a4b-7c3d-8e5f-0123456789ac");
    await expect(queue.publish(m)).resolves.toEqual({});
    await expect(queue.publish(m)).resolves.toEqual({});
    expect((await jsm.streams.info(queue.names.stream)).state.messages).toBe(1);
  });
});
