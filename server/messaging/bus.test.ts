import { randomUUID } from "node:crypto";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { until } from "../tests/helpers/fault-load.js";
import { NatsBus } from "./bus.js";
import { NatsLink } from "./nats.js";

// Always the machine's NATS (NATS_URL, else the default): CI runs this file once, in its production suite.
const NATS = process.env.NATS_URL || "nats://127.0.0.1:4222";
const logger = pino({ level: "silent" });
const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** What one handler received, in order. */
function recorder(): { got: string[]; handler: (p: Uint8Array) => void } {
  const got: string[] = [];
  return { got, handler: (p) => got.push(decode(p)) };
}

describe("NatsBus: an instance's own notices go to its subscribers directly, others' through NATS", () => {
  // Two instances, each with the connection the server opens (NatsLink: noEcho).
  let a: NatsLink;
  let b: NatsLink;
  let echoing: NatsConnection;
  const subject = `bustest.${randomUUID()}`;

  beforeAll(async () => {
    a = await NatsLink.connect(NATS, "bus-test-a", logger);
    b = await NatsLink.connect(NATS, "bus-test-b", logger);
    echoing = await connect({ servers: NATS.split(",") });
  });
  afterAll(async () => {
    await Promise.all([a?.nc.close(), b?.nc.close(), echoing?.close()]);
  });

  test("the server's connection does not echo: a notice reaches each subscriber, local or remote, exactly once", async () => {
    expect((a.nc as unknown as { options: { noEcho?: boolean } }).options.noEcho).toBe(true);
    const busA = new NatsBus(a.nc, logger);
    const busB = new NatsBus(b.nc, logger);
    const [a1, a2, b1] = [recorder(), recorder(), recorder()];
    const offs = [busA.subscribe(subject, a1.handler), busA.subscribe(subject, a2.handler), busB.subscribe(subject, b1.handler)];
    // Both subscriptions are known to the server before anything is published.
    await Promise.all([a.nc.flush(), b.nc.flush()]);

    busA.publish(subject, encode("from A"));
    // Local: delivered without NATS, in a microtask.
    expect(a1.got).toEqual([]);
    await Promise.resolve();
    expect(a1.got).toEqual(["from A"]);
    expect(a2.got).toEqual(["from A"]);
    await until("B to receive A's notice", () => b1.got.length === 1, 10_000, 5);
    // The server answers a flush after what it sent this connection before: an echo would be here by now.
    await a.nc.flush();
    expect(a1.got).toEqual(["from A"]);

    busB.publish(subject, encode("from B"));
    await until("A to receive B's notice", () => a1.got.length === 2, 10_000, 5);
    await Promise.all([a.nc.flush(), b.nc.flush()]);
    expect(a1.got).toEqual(["from A", "from B"]);
    expect(a2.got).toEqual(["from A", "from B"]);
    expect(b1.got).toEqual(["from A", "from B"]);

    // Unsubscribed: neither the local path nor NATS delivers any more.
    offs[0]!();
    busA.publish(subject, encode("after unsubscribe"));
    busB.publish(subject, encode("remote after unsubscribe"));
    await until("the second handler to receive both", () => a2.got.length === 4, 10_000, 5);
    await Promise.all([a.nc.flush(), b.nc.flush()]);
    expect(a1.got).toEqual(["from A", "from B"]);
    for (const off of offs.slice(1)) off();
  });

  test("a handler that throws neither stops the others nor the publish", async () => {
    const busA = new NatsBus(a.nc, logger);
    const busB = new NatsBus(b.nc, logger);
    const s = `${subject}.throws`;
    const good = recorder();
    const remote = recorder();
    const offs = [
      busA.subscribe(s, () => {
        throw new Error("handler bug");
      }),
      busA.subscribe(s, good.handler),
      busB.subscribe(s, remote.handler),
    ];
    await Promise.all([a.nc.flush(), b.nc.flush()]);
    expect(() => busA.publish(s, encode("x"))).not.toThrow();
    await until("both handlers to receive it", () => good.got.length === 1 && remote.got.length === 1, 10_000, 5);
    await a.nc.flush();
    expect(good.got).toEqual(["x"]);
    for (const off of offs) off();
  });

  test("on a connection that echoes (not the server's), NATS alone delivers: once, not twice", async () => {
    const bus = new NatsBus(echoing, logger);
    const r = recorder();
    const off = bus.subscribe(`${subject}.echo`, r.handler);
    await echoing.flush();
    bus.publish(`${subject}.echo`, encode("one"));
    await until("the echo", () => r.got.length === 1, 10_000, 5);
    await echoing.flush();
    expect(r.got).toEqual(["one"]);
    off();
  });
});
