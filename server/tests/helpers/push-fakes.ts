import { execFile } from "node:child_process";
import { createECDH, createDecipheriv, createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { decodeProtectedHeader, importJWK, importSPKI, jwtVerify } from "jose";

// Fakes of the push services at the edge (FCM, APNs, a Web Push service):
// real servers on 127.0.0.1 that check what a real service checks (OAuth
// bearer, the APNs provider token, VAPID) and record what they received.
// The Web Push fake decrypts the RFC 8291 payload with the browser's keys.

/** What a fake answers next for a token: a status and a body (default 200). */
type Answer = { status: number; body?: string; headers?: Record<string, string> };

class Answers {
  private readonly queued = new Map<string, Answer[]>();
  /** The next requests for `token` get these answers, in order; after them, 200. */
  set(token: string, ...answers: Answer[]): void {
    this.queued.set(token, answers);
  }
  next(token: string): Answer {
    return this.queued.get(token)?.shift() ?? { status: 200 };
  }
}

interface Received<T> {
  token: string;
  body: T;
  headers: Record<string, string | string[] | undefined>;
  /** The status the fake answered. */
  status: number;
}

function counted<T>(list: Array<Received<T>>, token: string, delivered = true): Array<Received<T>> {
  return list.filter((r) => r.token === token && (!delivered || r.status === 200));
}

async function listen(server: http.Server | https.Server | http2.Http2Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

function readBody(req: http.IncomingMessage | http2.Http2ServerRequest): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

// ---- FCM HTTP v1 -------------------------------------------------------------------

export interface FcmMessage {
  token: string;
  data: Record<string, string>;
  android?: { collapse_key?: string };
}

/** FCM's OAuth token endpoint and messages:send, for a service account whose key file it writes. */
export class FakeFcm {
  readonly received: Array<Received<FcmMessage>> = [];
  readonly answers = new Answers();
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    readonly serviceAccountFile: string,
  ) {}

  static async start(dir: string): Promise<FakeFcm> {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const spki = await importSPKI(publicKey.export({ type: "spki", format: "pem" }) as string, "RS256");
    const issued = new Set<string>();
    let self: FakeFcm | undefined;
    const server = http.createServer(async (req, res) => {
      const body = await readBody(req);
      const reply = (status: number, json: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(json));
      };
      if (req.url === "/token") {
        const form = new URLSearchParams(body.toString());
        try {
          const { payload } = await jwtVerify(form.get("assertion") ?? "", spki, { audience: `${self!.url}/token` });
          if (payload.scope !== "https://www.googleapis.com/auth/firebase.messaging") throw new Error("scope");
        } catch {
          return reply(400, { error: "invalid_grant" });
        }
        const token = randomBytes(16).toString("hex");
        issued.add(token);
        return reply(200, { access_token: token, expires_in: 3600, token_type: "Bearer" });
      }
      if (req.method !== "POST" || req.url !== "/v1/projects/chatwire-test/messages:send") return reply(404, { error: { status: "NOT_FOUND" } });
      if (!issued.has((req.headers.authorization ?? "").replace(/^Bearer /, ""))) return reply(401, { error: { status: "UNAUTHENTICATED" } });
      const message = (JSON.parse(body.toString()) as { message: FcmMessage }).message;
      const a = self!.answers.next(message.token);
      self!.received.push({ token: message.token, body: message, headers: req.headers, status: a.status });
      if (a.status === 200) return reply(200, { name: `projects/chatwire-test/messages/${randomBytes(4).toString("hex")}` });
      res.writeHead(a.status, { "content-type": "application/json", ...a.headers });
      res.end(a.body ?? "{}");
    });
    const port = await listen(server);
    const url = `http://127.0.0.1:${port}`;
    const file = path.join(dir, "fcm-service-account.json");
    await writeFile(
      file,
      JSON.stringify({
        type: "service_account",
        project_id: "chatwire-test",
        client_email: "push@chatwire-test.iam.gserviceaccount.com",
        private_key: privateKey.export({ type: "pkcs8", format: "pem" }),
        token_uri: `${url}/token`,
      }),
    );
    self = new FakeFcm(server, url, file);
    return self;
  }

  delivered(token: string): Array<Received<FcmMessage>> {
    return counted(this.received, token);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---- APNs ------------------------------------------------------------------------------

export interface ApnsPayload {
  aps: { alert: { title: string; body: string }; badge: number; "thread-id": string };
  conversation_id: string;
  unread: number;
}

/** APNs over HTTP/2 (cleartext, prior knowledge): checks the ES256 provider token and the topic. */
export class FakeApns {
  readonly received: Array<Received<ApnsPayload>> = [];
  readonly answers = new Answers();
  readonly env: Record<string, string>;
  private constructor(
    private readonly server: http2.Http2Server,
    env: Record<string, string>,
  ) {
    this.env = env;
  }

  static async start(dir: string): Promise<FakeApns> {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const keyFile = path.join(dir, "AuthKey_TESTKEY123.p8");
    await writeFile(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }));
    const spki = await importSPKI(publicKey.export({ type: "spki", format: "pem" }) as string, "ES256");
    let self: FakeApns | undefined;
    const server = http2.createServer();
    server.on("stream", (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", async () => {
        const answer = (status: number, reason?: string, extra: Record<string, string> = {}) => {
          stream.respond({ ":status": status, "apns-id": randomBytes(8).toString("hex"), ...extra });
          stream.end(reason ? JSON.stringify({ reason }) : undefined);
        };
        const jwt = String(headers.authorization ?? "").replace(/^bearer /, "");
        try {
          if (decodeProtectedHeader(jwt).kid !== "TESTKEY123") throw new Error("kid");
          await jwtVerify(jwt, spki, { issuer: "TEAM123456" });
        } catch {
          return answer(403, "InvalidProviderToken");
        }
        if (headers["apns-topic"] !== "app.chatwire.test") return answer(400, "DeviceTokenNotForTopic");
        const token = String(headers[":path"]).replace(/^\/3\/device\//, "");
        const a = self!.answers.next(token);
        self!.received.push({ token, body: JSON.parse(Buffer.concat(chunks).toString()) as ApnsPayload, headers, status: a.status });
        if (a.status === 200) return answer(200);
        stream.respond({ ":status": a.status, ...a.headers });
        stream.end(a.body);
      });
    });
    const port = await listen(server);
    const url = `http://127.0.0.1:${port}`;
    self = new FakeApns(server, {
      APNS_KEY_FILE: keyFile,
      APNS_KEY_ID: "TESTKEY123",
      APNS_TEAM_ID: "TEAM123456",
      APNS_TOPIC: "app.chatwire.test",
      APNS_ENDPOINT: url,
      APNS_SANDBOX_ENDPOINT: url,
    });
    return self;
  }

  delivered(token: string): Array<Received<ApnsPayload>> {
    return counted(this.received, token);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---- Web Push --------------------------------------------------------------------------

/** A browser's side of a subscription: its P-256 key pair and auth secret. */
export interface BrowserSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
  ecdh: ReturnType<typeof createECDH>;
}

/** A push service (RFC 8030) over https with a self-signed certificate: verifies VAPID and decrypts each payload. */
export class FakeWebPush {
  readonly received: Array<Received<Record<string, unknown>>> = [];
  readonly answers = new Answers();
  private readonly subscriptions = new Map<string, BrowserSubscription>();
  private constructor(
    private readonly server: https.Server,
    readonly url: string,
    /** An agent trusting this service's certificate (ChatwireServer's webPushAgent). */
    readonly agent: https.Agent,
  ) {}

  static async start(dir: string): Promise<FakeWebPush> {
    const keyFile = path.join(dir, "webpush-key.pem");
    const certFile = path.join(dir, "webpush-cert.pem");
    await promisify(execFile)("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ]);
    const [key, cert] = await Promise.all([readFile(keyFile), readFile(certFile)]);
    let self: FakeWebPush | undefined;
    const server = https.createServer({ key, cert }, async (req, res) => {
      const body = await readBody(req);
      const endpoint = `${self!.url}${req.url}`;
      const sub = self!.subscriptions.get(endpoint);
      if (!sub) {
        res.writeHead(404).end();
        return;
      }
      try {
        await verifyVapid(String(req.headers.authorization ?? ""), self!.url);
      } catch (err) {
        res.writeHead(403).end((err as Error).message);
        return;
      }
      if (req.headers["content-encoding"] !== "aes128gcm") {
        res.writeHead(415).end();
        return;
      }
      const payload = JSON.parse(decryptAes128gcm(body, sub).toString("utf8")) as Record<string, unknown>;
      const a = self!.answers.next(endpoint);
      self!.received.push({ token: endpoint, body: payload, headers: req.headers, status: a.status });
      res.writeHead(a.status === 200 ? 201 : a.status, a.headers).end(a.body);
    });
    const port = await listen(server);
    self = new FakeWebPush(server, `https://127.0.0.1:${port}`, new https.Agent({ ca: cert }));
    return self;
  }

  /** A new subscription, as PushManager.subscribe() would return it. */
  subscribe(): BrowserSubscription {
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const sub = {
      endpoint: `${this.url}/push/${randomBytes(8).toString("hex")}`,
      keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: randomBytes(16).toString("base64url") },
      ecdh,
    };
    this.subscriptions.set(sub.endpoint, sub);
    return sub;
  }

  /** Pushes the service accepted for this endpoint (answers other than 201 are not counted). */
  delivered(endpoint: string): Array<Received<Record<string, unknown>>> {
    return counted(this.received, endpoint);
  }

  close(): Promise<void> {
    this.agent.destroy();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** RFC 8292: `vapid t=<ES256 JWT>, k=<public key>`, the JWT signed by k, its audience the push service's origin. */
async function verifyVapid(header: string, origin: string): Promise<void> {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header);
  if (!m) throw new Error("no VAPID authorization");
  const raw = Buffer.from(m[2]!, "base64url");
  const key = await importJWK(
    { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33, 65).toString("base64url") },
    "ES256",
  );
  const { payload } = await jwtVerify(m[1]!, key, { audience: origin });
  if (typeof payload.sub !== "string" || !/^(mailto:|https:)/.test(payload.sub)) throw new Error("VAPID sub");
}

/** RFC 8291 / RFC 8188: one aes128gcm record, decrypted with the browser's private key and auth secret. */
function decryptAes128gcm(body: Buffer, sub: BrowserSubscription): Buffer {
  const salt = body.subarray(0, 16);
  const idlen = body[20]!;
  const asPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  const hmac = (key: Buffer, data: Buffer) => createHmac("sha256", key).update(data).digest();
  const uaPublic = sub.ecdh.getPublicKey();
  const ecdhSecret = sub.ecdh.computeSecret(asPublic);
  const prkKey = hmac(Buffer.from(sub.keys.auth, "base64url"), ecdhSecret);
  const ikm = hmac(prkKey, Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic, Buffer.from([1])]));
  const prk = hmac(salt, ikm);
  const cek = hmac(prk, Buffer.from("Content-Encoding: aes128gcm\0\x01")).subarray(0, 16);
  const nonce = hmac(prk, Buffer.from("Content-Encoding: nonce\0\x01")).subarray(0, 12);
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  // The last record ends with the delimiter 0x02, then zero padding.
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (padded[end] !== 2) throw new Error("aes128gcm: no last-record delimiter");
  return padded.subarray(0, end);
}

/** A scratch directory for keys and certificates. */
export function scratchDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "chatwire-push-"));
}
