import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { stopChild } from "./proc.js";

// The orchestrator drives each load generator (a separate Node process) with
// request/response messages over the fork IPC channel.

interface Request {
  id: number;
  method: string;
  arg: unknown;
}
interface Response {
  id: number;
  result?: unknown;
  error?: string;
}

export class LoadProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    /** Merged under every call's argument object (what the scenario does not say). */
    private readonly defaults: Record<string, unknown> = {},
  ) {
    child.on("message", (m: Response) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) w.reject(new Error(`${name}: ${m.error}`));
      else w.resolve(m.result);
    });
    child.on("exit", (code, signal) => {
      this.exited = true;
      for (const w of this.waiting.values()) w.reject(new Error(`${name} exited (${code ?? signal})`));
      this.waiting.clear();
    });
  }

  /** Forks dist/bench/load/<script>.js. */
  static start(script: string, name = script, execArgv: string[] = [], defaults: Record<string, unknown> = {}): LoadProcess {
    const file = fileURLToPath(new URL(`../load/${script}.js`, import.meta.url));
    const child = fork(file, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: ["--max-old-space-size=4096", ...execArgv] });
    return new LoadProcess(name, child, defaults);
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T>(method: string, arg: unknown = {}, timeoutMs = 300_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name}.${method}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const withDefaults = arg !== null && typeof arg === "object" && !Array.isArray(arg) ? { ...this.defaults, ...arg } : arg;
      this.child.send({ id, method, arg: withDefaults } satisfies Request);
    });
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    await stopChild(this.child, 5000);
  }
}

/** In a load process: answers the orchestrator's calls; exits when it goes away. */
export function serve(methods: Record<string, (arg: never) => unknown>): void {
  process.on("disconnect", () => process.exit(0));
  process.on("message", (m: Request) => {
    const fn = methods[m.method];
    if (!fn) {
      process.send!({ id: m.id, error: `no method ${m.method}` } satisfies Response);
      return;
    }
    Promise.resolve()
      .then(() => fn(m.arg as never))
      .then(
        (result) => process.send!({ id: m.id, result } satisfies Response),
        (err: unknown) => process.send!({ id: m.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies Response),
      );
  });
}
