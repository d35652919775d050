import { randomBytes } from "node:crypto";
import pg from "pg";
import { TokenService } from "../../server/auth/tokens.js";
import { systemClock } from "../../server/clock.js";
import { pool } from "./stats.js";

/** A user with one logged-in device. */
export interface Device {
  userId: string;
  token: string;
}

export interface Pair {
  a: Device;
  b: Device;
  conversationId: string;
}

// Thousands of users: written straight into the bench database, with access
// tokens minted with the server's JWT secret (what VerifyOTP would return).
// The embedded profile's database lives inside the server process, so there
// the same fixtures are made through the API (apiFixtures).

// Valid San Francisco numbers (+1 415 NXX XXXX), unique within a run.
let phoneBase = Math.floor(Math.random() * 1_000_000);
const nextPhones = (n: number) => Array.from({ length: n }, () => `+1415${2_000_000 + (++phoneBase % 8_000_000)}`);

export class DbFixtures {
  private readonly tokens: TokenService;

  constructor(
    private readonly client: pg.Client,
    jwtSecret: string,
  ) {
    this.tokens = new TokenService(jwtSecret, { accessTtlSeconds: 6 * 3600, refreshTtlSeconds: 7 * 86400 }, systemClock);
  }

  static async connect(databaseUrl: string, jwtSecret: string): Promise<DbFixtures> {
    const client = new pg.Client({ connectionString: databaseUrl });
    // The run drops the database at the end, possibly under a client a failed scenario left open.
    client.on("error", () => undefined);
    await client.connect();
    return new DbFixtures(client, jwtSecret);
  }

  async close(): Promise<void> {
    await this.client.end();
  }

  async devices(n: number): Promise<Device[]> {
    const out: Device[] = [];
    for (let i = 0; i < n; i += 5000) {
      const phones = nextPhones(Math.min(5000, n - i));
      const users = await this.client.query<{ id: string }>("insert into users (phone_number) select unnest($1::text[]) returning id", [phones]);
      const ids = users.rows.map((r) => r.id);
      const sessions = await this.client.query<{ id: string; user_id: string }>(
        `insert into user_devices (user_id, device_id, device_name, device_type, refresh_token_hash, refresh_expires_at)
         select u, 'bench', 'bench', 'bench', md5(u::text || $2), now() + interval '7 days' from unnest($1::uuid[]) as u
         returning id, user_id`,
        [ids, randomBytes(8).toString("hex")],
      );
      const tokens = await pool(sessions.rows, 64, (s) => this.tokens.sign("access", this.tokens.claimsFor("access", s.user_id, s.id)));
      sessions.rows.forEach((s, j) => out.push({ userId: s.user_id, token: tokens[j]! }));
    }
    return out;
  }

  /** Direct conversations between consecutive devices: (0,1), (2,3), ... */
  async pairs(devices: Device[]): Promise<Pair[]> {
    const pairs: Array<{ a: Device; b: Device; key: string }> = [];
    for (let i = 0; i + 1 < devices.length; i += 2) {
      const a = devices[i]!;
      const b = devices[i + 1]!;
      pairs.push({ a, b, key: [a.userId, b.userId].sort().join(":") });
    }
    const out: Pair[] = [];
    for (let i = 0; i < pairs.length; i += 5000) {
      const chunk = pairs.slice(i, i + 5000);
      const convs = await this.client.query<{ id: string; direct_key: string }>(
        "insert into conversations (is_group, direct_key, created_by) select false, k, c from unnest($1::text[], $2::uuid[]) as t(k, c) returning id, direct_key",
        [chunk.map((p) => p.key), chunk.map((p) => p.a.userId)],
      );
      const byKey = new Map(convs.rows.map((r) => [r.direct_key, r.id]));
      const convIds: string[] = [];
      const userIds: string[] = [];
      for (const p of chunk) {
        const id = byKey.get(p.key)!;
        convIds.push(id, id);
        userIds.push(p.a.userId, p.b.userId);
        out.push({ a: p.a, b: p.b, conversationId: id });
      }
      await this.client.query("insert into conversation_participants (conversation_id, user_id) select * from unnest($1::uuid[], $2::uuid[])", [
        convIds,
        userIds,
      ]);
    }
    return out;
  }

  /** A group of all `members`, the first its owner. */
  async group(members: Device[]): Promise<string> {
    const { rows } = await this.client.query<{ id: string }>(
      "insert into conversations (is_group, group_name, created_by) values (true, 'bench', $1) returning id",
      [members[0]!.userId],
    );
    const id = rows[0]!.id;
    await this.client.query(
      "insert into conversation_participants (conversation_id, user_id, role) select $1, u, case when u = $3 then 'owner' else 'member' end from unnest($2::uuid[]) as u",
      [id, members.map((m) => m.userId), members[0]!.userId],
    );
    return id;
  }

  /** Each user's last inbox position (what a caught-up device has seen last). */
  async lastPositions(userIds: string[]): Promise<Map<string, string>> {
    const { rows } = await this.client.query<{ user_id: string; last_position: string }>(
      "select user_id, last_position::text from inbox_positions where user_id = any($1::uuid[])",
      [userIds],
    );
    return new Map(rows.map((r) => [r.user_id, r.last_position]));
  }

  /** Transactions committed in this database so far (pg_stat_database.xact_commit: one per round trip outside a transaction). */
  async transactionsCommitted(): Promise<bigint> {
    const { rows } = await this.client.query<{ n: string }>("select xact_commit::text as n from pg_stat_database where datname = current_database()");
    return BigInt(rows[0]?.n ?? "0");
  }
}

/** The same fixtures through the public API (embedded profile): log in with the dev code, create direct conversations. */
export async function apiPairs(baseUrl: string, n: number): Promise<Pair[]> {
  const call = async (path: string, body: unknown, token?: string): Promise<Record<string, unknown>> => {
    const res = await fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const devices = await pool(nextPhones(n), 8, async (phone_number) => {
    await call("/auth.AuthService/SendOTP", { phone_number });
    const r = await call("/auth.AuthService/VerifyOTP", { phone_number, otp_code: "123456", device_id: "bench" });
    return { userId: (r.user as { id: string }).id, token: r.access_token as string };
  });
  const idx = Array.from({ length: Math.floor(n / 2) }, (_, i) => i * 2);
  return pool(idx, 8, async (i) => {
    const a = devices[i]!;
    const b = devices[i + 1]!;
    const r = await call("/chat.ChatService/CreateConversation", { participant_ids: [b.userId] }, a.token);
    return { a, b, conversationId: (r.conversation as { id: string }).id };
  });
}
