import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { drainHttp2Request } from "./http/drain.js";

export type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export interface ListenerOptions {
  host: string;
  port: number;
  tls?: { certFile: string; keyFile: string };
  logger: Logger;
  /** A connection that sends nothing for this long is closed. */
  firstByteTimeoutMs?: number;
  /** How much of a request body left unread by a finished response is read and dropped (HTTP/2) before the stream is reset. */
  drainBytes?: number;
}

// Every HTTP/2 connection with prior knowledge starts with this preface (RFC 9113 §3.4).
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * A response can be complete before its request body was read: an
 * unauthenticated stream is refused before its request is read, a body over
 * MAX_MESSAGE_BYTES is refused as soon as its size is known. Left so, the rest
 * of the body has nowhere to go.
 *
 * Over HTTP/2 the client keeps it buffered against a flow-control window that
 * never opens, until its connection refuses every stream (see drainHttp2Request).
 * So the rest is read and dropped, up to `drainBytes`; past that the stream is
 * ended with RST_STREAM(NO_ERROR). (Both RPC paths also read it before they
 * answer, which the client needs; this catches what is left.)
 *
 * Over HTTP/1.1 the next request cannot be parsed before the rest of the
 * body: the response says `Connection: close` and the connection ends with
 * it, so the client opens a new one.
 */
function settleUnreadBody(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  drainAfterFinish: (this: http2.Http2ServerResponse) => void,
): void {
  if (req.httpVersionMajor === 2) {
    res.once("finish", drainAfterFinish);
    return;
  }
  const h1 = res as http.ServerResponse;
  const writeHead = h1.writeHead;
  h1.writeHead = function (this: http.ServerResponse, ...args: Parameters<http.ServerResponse["writeHead"]>) {
    // A request without a body (GET) is not `complete` until its stream is read: only a body left unread counts.
    if (!req.complete && hasBody(req)) this.shouldKeepAlive = false;
    return writeHead.apply(this, args);
  } as http.ServerResponse["writeHead"];
}

function hasBody(req: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/**
 * The one port: HTTP/1.1 (Connect, gRPC-Web, curl, browsers) and cleartext
 * HTTP/2 with prior knowledge (gRPC from grpcurl, Postman, grpc-js) share a
 * TCP listener. Node's http2 server does not speak HTTP/1.1 without TLS, so
 * each connection's first bytes pick the server that gets the socket. With TLS,
 * ALPN does that job inside http2.createSecureServer({ allowHTTP1: true }).
 */
export class Listener {
  private readonly tcp: net.Server | undefined;
  private readonly h1: http.Server | undefined;
  private readonly h2: http2.Http2Server | http2.Http2SecureServer;
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<http2.Http2Session>();
  private closing = false;
  // One function each for every connection (an emitter calls its listeners with itself as `this`): a closure
  // per connection would stay with it for its whole life.
  private readonly untrackSocket: (this: net.Socket) => void;
  private readonly untrackSession: (this: http2.Http2Session) => void;

  constructor(
    rpcHandler: RequestHandler,
    private readonly opts: ListenerOptions,
  ) {
    const drainBytes = opts.drainBytes ?? 4 * 1024 * 1024;
    const { sockets, sessions } = this;
    this.untrackSocket = function (this: net.Socket) {
      sockets.delete(this);
    };
    this.untrackSession = function (this: http2.Http2Session) {
      sessions.delete(this);
    };
    const drainAfterFinish = function (this: http2.Http2ServerResponse) {
      void drainHttp2Request(this.req, drainBytes, true);
    };
    const handler: RequestHandler = (req, res) => {
      settleUnreadBody(req, res, drainAfterFinish);
      rpcHandler(req, res);
    };
    const h2Settings: http2.ServerOptions = {
      settings: { maxConcurrentStreams: 1000 },
      // Streams are long-lived and many; the default 10 MiB cap is per session.
      maxSessionMemory: 64,
    };
    if (opts.tls) {
      this.h2 = http2.createSecureServer(
        { ...h2Settings, allowHTTP1: true, cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) },
        handler as never,
      );
      this.h2.on("connection", (socket: net.Socket) => this.track(socket));
    } else {
      this.h2 = http2.createServer(h2Settings, handler as never);
      this.h1 = http.createServer(handler as never);
      // Server-streams over HTTP/1.1 stay open for hours; only the request head is timed.
      this.h1.requestTimeout = 0;
      this.h1.headersTimeout = 30_000;
      this.h1.keepAliveTimeout = 65_000;
      this.h1.on("clientError", (err, socket) => this.onClientError(err, socket));
      // h1 never listens itself, so start the connection tracking Node only starts on "listening": without it closeIdleConnections() and the headersTimeout check do nothing.
      this.h1.emit("listening");
      this.tcp = net.createServer((socket) => this.sniff(socket));
    }
    this.h2.on("session", (session: http2.Http2Session) => {
      this.sessions.add(session);
      session.once("close", this.untrackSession);
      if (this.closing) session.close();
    });
    this.h2.on("sessionError", (err) => opts.logger.debug({ err }, "http2 session error"));
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  async listen(): Promise<number> {
    const server = this.tcp ?? this.h2;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return (server.address() as net.AddressInfo).port;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", this.untrackSocket);
  }

  private sniff(socket: net.Socket): void {
    this.track(socket);
    if (this.closing) {
      socket.destroy();
      return;
    }
    const onError = (err: Error) => this.opts.logger.debug({ err }, "socket error before protocol was known");
    socket.on("error", onError);
    const onTimeout = () => socket.destroy();
    socket.setTimeout(this.opts.firstByteTimeoutMs ?? 10_000, onTimeout);
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const looksH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      // A partial preface: wait for the rest before deciding.
      if (looksH2 && n < H2_PREFACE.length) return;
      socket.off("data", onData);
      socket.pause();
      // setTimeout(0) stops the timer but leaves its listener, whose closure (this one's scope) would hold
      // the first bytes (`seen`) for the connection's life. Listeners come off one by one: off() keeps the
      // shape of the socket's listener table, removeAllListeners(type) deletes the key and turns the table
      // into a dictionary (about 0.4 KiB more per connection).
      socket.setTimeout(0);
      socket.off("timeout", onTimeout);
      socket.off("error", onError);
      const first = seen;
      seen = Buffer.alloc(0);
      socket.unshift(first);
      if (looksH2) {
        // The http2 session reads what is already buffered itself, then takes over the handle.
        this.h2.emit("connection", socket);
      } else {
        this.h1!.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  }

  private onClientError(err: Error & { code?: string }, socket: net.Socket | import("node:stream").Duplex): void {
    this.opts.logger.debug({ err: { message: err.message, code: err.code } }, "bad HTTP/1.1 request");
    if (socket.writable && !(socket as net.Socket).destroyed) {
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    } else {
      socket.destroy();
    }
  }

  /**
   * Stops accepting, lets open requests finish (HTTP/2 GOAWAY, HTTP/1.1
   * idle connections closed), and after `graceMs` destroys what is left.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const server = this.tcp ?? this.h2;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    this.h1?.close(); // closes idle connections and stops the connection checker started in the constructor
    const timer = setTimeout(() => {
      for (const s of this.sessions) s.destroy();
      for (const s of this.sockets) s.destroy();
    }, graceMs);
    timer.unref();
    // HTTP/1.1 keep-alive sockets that finish a response while closing must not linger.
    const sweep = setInterval(() => this.h1?.closeIdleConnections(), 50);
    sweep.unref();
    try {
      await Promise.race([closed, new Promise<void>((resolve) => setTimeout(resolve, graceMs + 500).unref())]);
      for (const s of this.sockets) s.destroy();
    } finally {
      clearTimeout(timer);
      clearInterval(sweep);
    }
  }
}
