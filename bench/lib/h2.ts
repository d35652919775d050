import http2 from "node:http2";

// A lean gRPC / Connect client over node:http2 for the load generators: the
// request bytes are encoded once, and nothing but framing runs per call, so
// the generator's own cost stays far below the server's.

export function grpcFrame(payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b[0] = 0;
  b.writeUInt32BE(payload.length, 1);
  b.set(payload, 5);
  return b;
}

/** Splits a gRPC body into length-prefixed messages across arbitrary chunks. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer, onFrame: (flags: number, payload: Buffer) => void): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 5 + len) return;
      const flags = this.buf[0]!;
      const payload = this.buf.subarray(5, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      onFrame(flags, payload);
    }
  }
}

export function connectH2(url: string, timeoutMs = 10_000): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, { settings: { enablePush: false } });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`connect ${url}: timed out`));
    }, timeoutMs);
    session.once("connect", () => {
      clearTimeout(timer);
      session.off("error", onError);
      // Errors after connect surface on the streams; a session error must not crash the process.
      session.on("error", () => undefined);
      resolve(session);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    };
    session.once("error", onError);
  });
}

export interface UnaryResult {
  /** gRPC status (0 ok) for gRPC calls; HTTP status for anything else. */
  status: number;
  body: Buffer;
  message?: string;
}

/** One unary call; `grpc` decides how the status is read (trailers or HTTP). */
export function unary(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Buffer, grpc: boolean): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request(headers);
    } catch (err) {
      resolve({ status: -1, body: Buffer.alloc(0), message: (err as Error).message });
      return;
    }
    const chunks: Buffer[] = [];
    let status = -1;
    let message: string | undefined;
    req.on("response", (h) => {
      if (!grpc) status = Number(h[":status"]);
      else if (h["grpc-status"] !== undefined) {
        status = Number(h["grpc-status"]);
        message = h["grpc-message"] as string | undefined;
      }
    });
    req.on("trailers", (t) => {
      if (grpc && t["grpc-status"] !== undefined) {
        status = Number(t["grpc-status"]);
        message = t["grpc-message"] as string | undefined;
      }
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", (err) => {
      message = err.message;
    });
    req.on("close", () => resolve({ status, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), message }));
    req.end(body);
  });
}

export function grpcHeaders(path: string, token?: string): http2.OutgoingHttpHeaders {
  return {
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc+proto",
    te: "trailers",
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  };
}
