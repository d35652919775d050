import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { freePort } from "./private-postgres.js";

/**
 * nats-server processes of a test's own: JetStream on, their own free ports
 * (asked of the OS) and store dirs, started and killed by the test through the
 * PIDs it spawned. Never the machine's NATS on 4222. One server alone
 * (nats-outage.test.ts), or a cluster of them (nats-cluster.test.ts).
 */

const NATS_SERVER = "/usr/sbin/nats-server";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node's part in a cluster: its route port and the other nodes' route ports. */
interface ClusterMembership {
  name: string;
  port: number;
  routes: number[];
}

export interface PrivateNatsOptions {
  /** --server_name (JetStream in a cluster needs one per server). */
  serverName?: string;
  /** The store dir; default a fresh temp dir, removed by dispose(). */
  storeDir?: string;
  cluster?: ClusterMembership;
  /** An HTTP monitoring port (/jsz, /healthz). */
  monitorPort?: number;
}

export class PrivateNats {
  private child: ChildProcess | undefined;
  private log = "";

  private constructor(
    readonly port: number,
    readonly storeDir: string,
    private readonly ownsStoreDir: boolean,
    private readonly opts: PrivateNatsOptions,
  ) {}

  static async create(opts: PrivateNatsOptions = {}): Promise<PrivateNats> {
    const storeDir = opts.storeDir ?? (await mkdtemp(path.join(os.tmpdir(), "chatwire-nats-")));
    return new PrivateNats(await freePort(), storeDir, opts.storeDir === undefined, opts);
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get serverName(): string | undefined {
    return this.opts.serverName;
  }

  get monitorPort(): number | undefined {
    return this.opts.monitorPort;
  }

  /** The nats-server's PID while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The last lines the server wrote (for failure messages). */
  get output(): string {
    return this.log;
  }

  /** Starts nats-server with JetStream and waits (bounded) until it accepts connections. */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.child) throw new Error("nats-server already running");
    const { serverName, cluster, monitorPort } = this.opts;
    const args = ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDir];
    if (serverName) args.push("--server_name", serverName);
    if (monitorPort) args.push("-m", String(monitorPort));
    if (cluster) {
      args.push("--cluster_name", cluster.name, "--cluster", `nats://127.0.0.1:${cluster.port}`);
      if (cluster.routes.length > 0) args.push("--routes", cluster.routes.map((p) => `nats://127.0.0.1:${p}`).join(","));
    }
    const child = spawn(NATS_SERVER, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const keep = (b: Buffer) => (this.log = (this.log + b.toString()).slice(-8000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    let exited = false;
    child.once("exit", () => (exited = true));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exited) {
        this.child = undefined;
        throw new Error(`nats-server exited at start (code ${child.exitCode}):\n${this.log}`);
      }
      if (await accepts(this.port)) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`nats-server did not accept connections on ${this.port} within ${timeoutMs} ms:\n${this.log}`);
      }
      await sleep(50);
    }
  }

  /** SIGTERM, and waits for the exit (SIGKILL after `timeoutMs`). */
  async stop(timeoutMs = 5_000): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  /** kill -9 of this server (its own PID only), and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    process.kill(child.pid!, "SIGKILL");
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownsStoreDir) await rm(this.storeDir, { recursive: true, force: true });
  }
}

/** What a node's /jsz says of the JetStream meta group. */
interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number; replicas?: Array<{ name: string; current: boolean }> };
}

/**
 * A NATS cluster on loopback: `size` JetStream servers (n1, n2, ...) routed to
 * each other, each with its own client, route and monitoring port and its own
 * store dir under one temp dir.
 */
export class PrivateNatsCluster {
  private constructor(
    readonly name: string,
    readonly nodes: PrivateNats[],
    private readonly dir: string,
  ) {}

  /** Starts every node and waits (bounded) until JetStream has a meta leader all nodes agree on. */
  static async start(size = 3, timeoutMs = 30_000): Promise<PrivateNatsCluster> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "chatwire-nats-cluster-"));
    const name = `chatwire-test-${randomBytes(4).toString("hex")}`;
    const routePorts: number[] = [];
    for (let i = 0; i < size; i++) routePorts.push(await freePort());
    const nodes: PrivateNats[] = [];
    for (let i = 0; i < size; i++) {
      nodes.push(
        await PrivateNats.create({
          serverName: `n${i + 1}`,
          storeDir: path.join(dir, `n${i + 1}`),
          monitorPort: await freePort(),
          cluster: { name, port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) },
        }),
      );
    }
    const cluster = new PrivateNatsCluster(name, nodes, dir);
    try {
      await Promise.all(nodes.map((n) => n.start()));
      await cluster.jetStreamReady(timeoutMs);
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
    return cluster;
  }

  /** Every running node's client URL, comma-separated (a NATS_URL). */
  get urls(): string {
    return this.nodes
      .filter((n) => n.running)
      .map((n) => n.url)
      .join(",");
  }

  node(serverName: string): PrivateNats {
    const node = this.nodes.find((n) => n.serverName === serverName);
    if (!node) throw new Error(`no node ${serverName} in cluster ${this.name}`);
    return node;
  }

  /**
   * Waits (bounded) until every running node names the same JetStream meta
   * leader among its peers and the JetStream API answers through a client.
   */
  async jetStreamReady(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      const running = this.nodes.filter((n) => n.running);
      const leaders = await Promise.all(running.map((n) => jsz(n).then((j) => j?.meta_cluster?.leader ?? "")));
      last = JSON.stringify(Object.fromEntries(running.map((n, i) => [n.serverName, leaders[i]])));
      const leader = leaders[0];
      if (leader && leaders.every((l) => l === leader) && (await this.apiAnswers())) return leader;
      if (Date.now() > deadline) {
        throw new Error(
          `NATS cluster ${this.name}: no JetStream meta leader within ${timeoutMs} ms (leaders seen ${last})\n${running.map((n) => n.output).join("\n")}`,
        );
      }
      await sleep(100);
    }
  }

  /**
   * The server name of a stream's leader (JetStream stream info cluster.leader),
   * waiting (bounded) while it has none, as during an election.
   */
  async streamLeader(stream: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      const nc = await connect({ servers: this.urls.split(","), reconnect: false, timeout: 2000 }).catch((err: unknown) => {
        last = err;
        return undefined;
      });
      if (nc) {
        try {
          const jsm = await jetstreamManager(nc, { timeout: 2000 });
          const leader = (await jsm.streams.info(stream)).cluster?.leader;
          if (leader) return leader;
          last = "no leader";
        } catch (err) {
          last = err;
        } finally {
          await nc.close();
        }
      }
      if (Date.now() > deadline) throw new Error(`stream ${stream}: no leader within ${timeoutMs} ms (${String(last)})`);
      await sleep(100);
    }
  }

  /** Stops every node still running (SIGTERM, then SIGKILL) and removes the store dirs. */
  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.dispose()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private async apiAnswers(): Promise<boolean> {
    const nc = await connect({ servers: this.urls.split(","), reconnect: false, timeout: 2000 }).catch(() => undefined);
    if (!nc) return false;
    try {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      await jsm.getAccountInfo();
      return true;
    } catch {
      return false;
    } finally {
      await nc.close();
    }
  }
}

async function jsz(node: PrivateNats): Promise<Jsz | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`, { signal: AbortSignal.timeout(2000) });
    return res.ok ? ((await res.json()) as Jsz) : undefined;
  } catch {
    return undefined;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: "127.0.0.1" });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
    sock.setTimeout(500, () => done(false));
  });
}
