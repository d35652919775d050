import { fork } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { argValue } from "./lib/args.js";

// What one hop between two processes costs this machine, apart from any work:
// a Node client and a forked Node echo server, one byte back and forth over a
// loopback TCP socket, N round trips in a row or with a pause between them
// (as a message at a low rate finds every process on its path asleep).
// Prints the CPU (user + system, from process.cpuUsage) each side spends per
// round trip; the server's is the clean figure (the client's includes its timer). A 1:1 message crosses about a dozen such hops (README,
// "Where a message's CPU goes at low rates").
//
//   node dist/bench/wakeup.js [--n=2000] [--gaps=0,1,5,20]

const arg = (name: string, dflt: string) => argValue(name) ?? dflt;

function echoServer(): void {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("data", (d) => s.write(d));
  });
  server.listen(0, "127.0.0.1", () => process.send?.((server.address() as net.AddressInfo).port));
  process.on("message", () => {
    const u = process.cpuUsage();
    process.send?.({ user: u.user, system: u.system });
  });
}

type Cpu = { user: number; system: number };

async function main(): Promise<void> {
  const n = Number(arg("n", "2000"));
  const gaps = arg("gaps", "0,1,5,20").split(",").map(Number);
  const child = fork(fileURLToPath(import.meta.url), ["--serve"]);
  const port = await new Promise<number>((resolve) => child.once("message", (m) => resolve(m as number)));
  const serverCpu = () =>
    new Promise<Cpu>((resolve) => {
      child.once("message", (m) => resolve(m as Cpu));
      child.send("cpu");
    });
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  await new Promise((resolve) => socket.once("connect", resolve));
  console.log("gap ms  round trips  wall µs/rt  client µs/rt (system)  server µs/rt (system)");
  for (const gap of gaps) {
    const rounds = gap >= 5 ? Math.min(n, Math.ceil(8000 / gap)) : n; // at most ~8 s per gap
    const s0 = await serverCpu();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let done = 0;
      const onData = () => {
        if (++done >= rounds) {
          socket.off("data", onData);
          resolve();
        } else if (gap > 0) setTimeout(() => socket.write("x"), gap);
        else socket.write("x");
      };
      socket.on("data", onData);
      socket.write("x");
    });
    // Timers fire late by up to a millisecond: the wall time means something only back to back.
    const wall = gap === 0 ? (((performance.now() - t0) * 1000) / rounds).toFixed(1) : "-";
    const c = process.cpuUsage(c0);
    const s1 = await serverCpu();
    const per = (v: number) => (v / rounds).toFixed(1);
    console.log(
      `${String(gap).padStart(6)}  ${String(rounds).padStart(11)}  ${wall.padStart(10)}  ${`${per(c.user + c.system)} (${per(c.system)})`.padStart(21)}  ${`${per(s1.user + s1.system - s0.user - s0.system)} (${per(s1.system - s0.system)})`.padStart(21)}`,
    );
  }
  socket.destroy();
  child.kill();
}

if (process.argv.includes("--serve")) echoServer();
else await main();
