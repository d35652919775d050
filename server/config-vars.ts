import net from "node:net";

// The parsers of config.ts's variables: each reads one variable through `get`, validates it and throws a
// ConfigError naming it. Only config.ts calls them (it alone reads process.env).

/** One window of a per-user call limit: at most `points` calls per `seconds`. */
export interface RateWindow {
  points: number;
  seconds: number;
}

/** A bad or missing environment variable; the message names it. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

/** Several bad or missing variables, reported together; `variable` and the first line are the first one's. */
export class ConfigErrors extends ConfigError {
  constructor(readonly errors: ConfigError[]) {
    super(errors[0]!.variable, "");
    this.message = errors.map((e) => e.message).join("\n");
    this.name = "ConfigErrors";
  }

  /** One error as itself, several as a ConfigErrors. */
  static of(errors: ConfigError[]): ConfigError {
    return errors.length === 1 ? errors[0]! : new ConfigErrors(errors);
  }
}

export function intVar(get: (n: string) => string | undefined, name: string, def: number, min: number, max: number): number {
  const raw = get(name);
  if (raw === undefined) return def;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

export function boolVar(get: (n: string) => string | undefined, name: string, def: boolean): boolean {
  const raw = get(name)?.toLowerCase();
  if (raw === undefined) return def;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

const WINDOW_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * A per-user limit: comma-separated `<calls>/<n><unit>` windows (unit s, m, h
 * or d; n defaults to 1), e.g. `20/1s,600/1m`; `off` or `0` for none.
 */
export function windowsVar(get: (n: string) => string | undefined, name: string, def: string): RateWindow[] {
  const raw = (get(name) ?? def).toLowerCase();
  if (raw === "off" || raw === "0") return [];
  const windows = raw.split(",").map((part) => {
    const m = /^(\d+)\/(\d*)([smhd])$/.exec(part.trim());
    if (!m)
      throw new ConfigError(
        name,
        `"${part.trim()}" is not a window such as 20/1s or 600/1m (calls/<n><s|m|h|d>); the whole value is a comma-separated list, or off`,
      );
    const points = Number(m[1]);
    const seconds = Number(m[2] === "" ? 1 : m[2]) * WINDOW_UNITS[m[3]!]!;
    if (points < 1 || points > 1_000_000_000) throw new ConfigError(name, `calls per window must be between 1 and 1000000000, got ${points}`);
    if (seconds < 1 || seconds > 30 * 86_400) throw new ConfigError(name, `a window must be between 1 s and 30 days, got ${seconds} s`);
    return { points, seconds };
  });
  if (windows.length > 4) throw new ConfigError(name, `at most 4 windows, got ${windows.length}`);
  return windows;
}

/** Comma-separated addresses or CIDRs (IPv4 or IPv6), normalised to "address/prefix". */
export function cidrsVar(get: (n: string) => string | undefined, name: string): string[] {
  const raw = get(name);
  if (raw === undefined) return [];
  return raw
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((part) => {
      const [address = "", prefix, extra] = part.split("/");
      const family = net.isIP(address);
      const max = family === 4 ? 32 : 128;
      const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
      if (family === 0 || extra !== undefined || !(bits >= 0 && bits <= max)) {
        throw new ConfigError(name, `"${part}" is not an IP address or CIDR such as 10.0.0.0/8 or fd00::/8`);
      }
      return `${address}/${bits}`;
    });
}
