import { setMaxListeners } from "node:events";
import { respecGrpcMessage } from "./grpc-message.js";
import type http from "node:http";
import type http2 from "node:http2";
import type { DescMessage, DescMethodServerStreaming, DescMethodUnary, DescService, JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createServiceImplSpec,
  type ConnectRouter,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  invokeUnaryImplementation,
  type Compression,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  createEndStreamSerialization,
  endStreamFlag,
  errorToJsonBytes,
  parseContentType as parseConnectContentType,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "pino";
import { withDeadline } from "../interceptors/deadline.js";
import { toConnectError } from "../interceptors/errors.js";
import { envelope } from "./node-adapter.js";
import { preEncoded, type MaybePreEncoded } from "../pre-encoded.js";
import { LeanHeaders } from "./lean-headers.js";
import { header, parse, readBody, unwrapEnvelope } from "./rpc-request.js";
import { copyHeaders, drained, normalizeOutput, streamChain } from "./rpc-stream.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export interface RpcFastPathOptions {
  /** The same interceptors, in the same order, as the connect-node adapter. */
  interceptors: Interceptor[];
  jsonOptions: Partial<JsonReadOptions & JsonWriteOptions>;
  readMaxBytes: number;
  writeMaxBytes: number;
  maxTimeoutMs: number;
  /** Response compression the client may ask for (connect-node's gzip and brotli). */
  acceptCompression: Compression[];
  /** Smaller responses are never compressed (connect-node's default, 1 KiB). */
  compressMinBytes?: number;
  shutdownSignal: AbortSignal;
  contextValues: (req: Req) => ContextValues;
  logger: Logger;
  /** Counts the calls this path takes, by protocol. */
  counter?: { inc(labels: { protocol: string }): void };
}

interface Route {
  spec: MethodImplSpec & { kind: "unary" | "server_streaming" };
  service: DescService;
  serialization: MethodSerializationLookup<DescMessage, DescMessage>;
  /** Server-streaming: the interceptors and the handler (streamChain). */
  stream?: ReturnType<typeof streamChain>;
}

type Protocol = "grpc" | "connect";

/** connect's message for a client deadline that passed. */
const TIMED_OUT = "the operation timed out";

/**
 * Unary and server-streaming calls without connect-node's per-call machinery.
 *
 * connect-node builds, for every call, an async-iterable pipeline (even for
 * unary gRPC), a web `Headers` per header set, a linked AbortController per
 * call that it aborts without a reason at the end (which constructs a
 * DOMException and its stack), and a universal request/response pair. In a CPU
 * profile of ValidateToken that was over a third of the server's time.
 *
 * This path takes only what it can serve byte for byte like connect-node:
 * POST to a unary or server-streaming method, gRPC (`application/grpc[+proto]`)
 * on HTTP/2 or Connect (`application/json`, `application/proto`, and their
 * `connect+` streaming forms), the request not compressed. Everything else
 * (gRPC-Web, Connect GET, compressed requests, JSON over gRPC, bidi streams,
 * unknown paths, bad timeout headers) returns false and goes to connect-node.
 * The service implementations and interceptors are the same objects (unary
 * calls go through connect's own `invokeUnaryImplementation`); parsing and
 * serialization use connect's own serializers (with its read/write limits);
 * errors are encoded with connect's own `setTrailerStatus`, `errorToJsonBytes`
 * and end-of-stream serialization; response compression is negotiated by
 * connect's `compressionNegotiate`.
 *
 * One difference, by design: a unary handler's `signal` is the server's
 * shutdown signal rather than a per-call signal aborted when the call ends or
 * the client goes away. No unary handler of Chatwire reads it; deadlines
 * (grpc-timeout, connect-timeout-ms) are enforced by racing the call. Streams
 * get a signal of their own (see serveStream).
 */
export class RpcFastPath {
  private readonly routes = new Map<string, Route>();
  private readonly compressMinBytes: number;
  private readonly endStream: ReturnType<typeof createEndStreamSerialization>;

  /** The open streams' shutdown callbacks: one listener on the shutdown signal for all of them, not one each. */
  private readonly openStreams = new Set<() => void>();

  constructor(private readonly opts: RpcFastPathOptions) {
    // Unary handlers get the shutdown signal as theirs (see serve): any number of them may listen, not a leak.
    setMaxListeners(0, opts.shutdownSignal);
    opts.shutdownSignal.addEventListener(
      "abort",
      () => {
        for (const onShutdown of [...this.openStreams]) onShutdown();
      },
      { once: true },
    );
    this.compressMinBytes = opts.compressMinBytes ?? 1024;
    this.endStream = createEndStreamSerialization(opts.jsonOptions);
  }

  /** Takes the unary and server-streaming methods of a service implementation (the same object given to the router). */
  register(service: DescService, impl: Partial<ServiceImpl<DescService>>): void {
    const specs = createServiceImplSpec(service, impl);
    for (const method of service.methods) {
      if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
      const spec = specs.methods[method.localName] as Route["spec"];
      this.routes.set(`/${service.typeName}/${method.name}`, {
        spec,
        service,
        serialization: createMethodSerializationLookup(method as DescMethodUnary | DescMethodServerStreaming, undefined, this.opts.jsonOptions, {
          readMaxBytes: this.opts.readMaxBytes,
          writeMaxBytes: this.opts.writeMaxBytes,
        }),
        stream:
          spec.kind === "server_streaming"
            ? streamChain(this.opts.interceptors, service, spec.method, spec.impl as (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>)
            : undefined,
      });
    }
  }

  /** A router that registers with `router` and lets this path see the same implementations. */
  recording(router: ConnectRouter): ConnectRouter {
    const recorder: ConnectRouter = Object.create(router) as ConnectRouter;
    Object.defineProperty(recorder, "service", {
      value: (service: DescService, impl: Partial<ServiceImpl<DescService>>, options?: Parameters<ConnectRouter["service"]>[2]) => {
        router.service(service, impl, options);
        // A service with its own handler options (interceptors, limits) stays with connect-node.
        if (options === undefined) this.register(service, impl);
        return recorder;
      },
    });
    return recorder;
  }

  /** Serves the call and returns true, or returns false (untouched) for connect-node. */
  handle(req: Req, res: Res): boolean {
    if (req.method !== "POST") return false;
    const route = this.routes.get(req.url ?? "");
    if (route === undefined) return false;
    const h = req.headers;
    const contentType = h["content-type"];
    let protocol: Protocol;
    let binary: boolean;
    let timeout: { timeoutMs?: number; error?: ConnectError };
    if (contentType === "application/grpc" || contentType === "application/grpc+proto") {
      if (req.httpVersionMajor !== 2) return false;
      const enc = h["grpc-encoding"];
      if (enc !== undefined && enc !== "identity") return false;
      timeout = parseGrpcTimeout(header(h["grpc-timeout"]), this.opts.maxTimeoutMs);
      protocol = "grpc";
      binary = true;
    } else {
      const type = parseConnectContentType(contentType ?? null);
      const streaming = route.spec.kind === "server_streaming";
      if (type === undefined || type.stream !== streaming) return false;
      const enc = h[streaming ? "connect-content-encoding" : "content-encoding"];
      if (enc !== undefined && enc !== "identity") return false;
      const version = h["connect-protocol-version"];
      if (version !== undefined && version !== "1") return false;
      timeout = parseConnectTimeout(header(h["connect-timeout-ms"]), this.opts.maxTimeoutMs);
      protocol = "connect";
      binary = type.binary;
    }
    if (timeout.error) return false;
    this.opts.counter?.inc({ protocol });
    const served =
      route.spec.kind === "unary"
        ? this.serve(req, res, route, protocol, binary, timeout.timeoutMs)
        : this.serveStream(req, res, route, protocol, binary, timeout.timeoutMs);
    served.catch((err: unknown) => {
      this.opts.logger.warn({ err, rpc: req.url }, "fast path could not answer");
      res.destroy();
    });
    return true;
  }

  /** The handler context connect would build, from the node request, without its per-call signal machinery. */
  private context(
    req: Req,
    route: Route,
    protocol: Protocol,
    signal: AbortSignal,
    deadline: number | undefined,
    responseHeader: Headers,
    responseTrailer: Headers,
  ): HandlerContext {
    return {
      method: route.spec.method,
      service: route.service,
      requestMethod: "POST",
      protocolName: protocol,
      url: `http://${header(req.headers[":authority"]) ?? header(req.headers.host) ?? "localhost"}${req.url}`,
      signal,
      timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
      requestHeader: LeanHeaders.fromNode(req.headers),
      responseHeader,
      responseTrailer,
      values: this.opts.contextValues(req),
    };
  }

  /**
   * The response's first headers and trailers as connect-node starts them, and
   * the compression negotiated for it (announced in a header, except for a
   * Connect unary response, which says so only when it compresses).
   */
  private start(req: Req, protocol: Protocol, binary: boolean, streaming: boolean) {
    const contentType = protocol === "grpc" ? "application/grpc+proto" : `application/${streaming ? "connect+" : ""}${binary ? "proto" : "json"}`;
    const responseHeader = LeanHeaders.of("content-type", contentType);
    const responseTrailer = protocol === "grpc" ? LeanHeaders.of("grpc-status", "0") : new LeanHeaders();
    const acceptName = protocol === "grpc" ? "grpc-accept-encoding" : streaming ? "connect-accept-encoding" : "accept-encoding";
    const compression = compressionNegotiate(this.opts.acceptCompression, null, header(req.headers[acceptName]), acceptName);
    if (compression.response && (protocol === "grpc" || streaming)) {
      responseHeader.set(protocol === "grpc" ? "grpc-encoding" : "connect-content-encoding", compression.response.name);
    }
    return { responseHeader, responseTrailer, compression: compression.response };
  }

  /** `data` compressed when the client takes it and it is worth it (connect's compressMinBytes). */
  private async compress(compression: Compression | null, data: Uint8Array): Promise<{ data: Uint8Array; compressed: boolean }> {
    if (!compression || data.byteLength < this.compressMinBytes) return { data, compressed: false };
    return { data: await compression.compress(data), compressed: true };
  }

  /**
   * A server-streaming call: each message is written as it comes, with
   * backpressure; the end is gRPC trailers or Connect's end-of-stream
   * message. Unlike unary calls the handler gets a signal of its own, aborted
   * when the client goes away, the deadline passes, or the server shuts down.
   */
  private async serveStream(req: Req, res: Res, route: Route, protocol: Protocol, binary: boolean, timeoutMs: number | undefined): Promise<void> {
    const { responseHeader, responseTrailer, compression } = this.start(req, protocol, binary, true);
    const abort = new AbortController();
    const shutdown = this.opts.shutdownSignal;
    const onShutdown = () => abort.abort(shutdown.reason);
    let closed = false;
    const onClose = () => {
      closed = true;
      abort.abort(new ConnectError("the client closed the stream", Code.Canceled));
    };
    if (shutdown.aborted) onShutdown();
    else this.openStreams.add(onShutdown);
    res.once("close", onClose);
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => abort.abort(new ConnectError(TIMED_OUT, Code.DeadlineExceeded)), timeoutMs);
    const output = route.spec.method.output;
    const serializer = route.serialization.getO(binary);
    let headSent = false;
    const sendHead = () => {
      if (headSent) return;
      headSent = true;
      res.writeHead(200, responseHeader.copyTo({}));
    };
    let it: AsyncIterator<unknown> | undefined;
    let error: ConnectError | undefined;
    try {
      const response = await this.openStream(req, route, protocol, binary, abort.signal, deadline, responseHeader, responseTrailer);
      copyHeaders(response.header, responseHeader);
      it = (response.message as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      for (;;) {
        const next = await it.next();
        if (next.done) break;
        const raw = (next.value as MaybePreEncoded)[preEncoded];
        const out = await this.compress(compression, binary && raw !== undefined ? raw : serializer.serialize(normalizeOutput(output, next.value)));
        if (closed) break;
        sendHead();
        if (!(res as http.ServerResponse).write(envelope(out.compressed ? 1 : 0, out.data))) await drained(res, () => closed);
        if (closed) break;
      }
      copyHeaders(response.trailer, responseTrailer);
    } catch (e) {
      error = toConnectError(e);
    } finally {
      clearTimeout(timer);
      this.openStreams.delete(onShutdown);
      // Stopped early (the client went away): let the handler's finally blocks run.
      if (it && (closed || error === undefined)) await it.return?.().catch(() => undefined);
    }
    res.off("close", onClose);
    if (!abort.signal.aborted) abort.abort(new ConnectError("the stream has ended", Code.Canceled));
    if (closed || res.writableEnded) return;
    sendHead();
    if (protocol === "grpc") {
      setTrailerStatus(responseTrailer, error);
      respecGrpcMessage(responseTrailer);
      res.addTrailers(responseTrailer.copyTo({}));
      res.end();
      return;
    }
    const end = await this.compress(compression, this.endStream.serialize({ metadata: responseTrailer, error }));
    res.end(envelope(endStreamFlag | (end.compressed ? 1 : 0), end.data));
  }

  /**
   * Reads the request and calls the handler through the interceptors: the handler's response (its messages
   * not pulled yet). Its own scope, so nothing of it (the request body, the call's closures) stays with a
   * stream that lives for hours.
   */
  private async openStream(
    req: Req,
    route: Route,
    protocol: Protocol,
    binary: boolean,
    signal: AbortSignal,
    deadline: number | undefined,
    responseHeader: Headers,
    responseTrailer: Headers,
  ): Promise<StreamResponse> {
    const { spec, service, serialization } = route;
    const context = this.context(req, route, protocol, signal, deadline, responseHeader, responseTrailer);
    // Unlike connect-node (which reads it when the handler asks, after authentication), the request is read
    // before anything is answered, as for unary calls: a client whose body is still buffered when a refusal
    // arrives can refuse that answer (node's http2 client does, with RST_STREAM 11, once its session memory
    // is full) and then every later stream of the connection.
    const body = readBody(req, this.opts.readMaxBytes, null);
    await body.catch(() => undefined);
    const readInput = async function* (this: RpcFastPath) {
      yield parse(serialization, binary, unwrapEnvelope(await body, this.opts.readMaxBytes, "server-streaming"), spec.method.input.typeName);
    }.bind(this);
    return route.stream!(
      {
        stream: true,
        service,
        method: spec.method,
        requestMethod: "POST",
        url: context.url,
        signal,
        header: context.requestHeader,
        contextValues: context.values,
        message: readInput(),
      } as StreamRequest,
      context,
    );
  }

  private async serve(req: Req, res: Res, route: Route, protocol: Protocol, binary: boolean, timeoutMs: number | undefined): Promise<void> {
    const { spec, serialization } = route;
    let closed = false;
    res.once("close", () => (closed = true));
    const { responseHeader, responseTrailer, compression } = this.start(req, protocol, binary, false);
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const context = this.context(req, route, protocol, this.opts.shutdownSignal, deadline, responseHeader, responseTrailer);

    let body: Uint8Array | undefined;
    let error: ConnectError | undefined;
    try {
      const raw = await readBody(req, this.opts.readMaxBytes, protocol === "connect" ? header(req.headers["content-length"]) : null);
      const bytes = protocol === "grpc" ? unwrapEnvelope(raw, this.opts.readMaxBytes) : raw;
      const input = parse(serialization, binary, bytes, spec.method.input.typeName);
      const call = invokeUnaryImplementation(spec as MethodImplSpec & { kind: "unary" }, context, input, this.opts.interceptors);
      const output = deadline === undefined ? await call : await withDeadline(call, deadline - Date.now(), TIMED_OUT);
      body = serialization.getO(binary).serialize(output);
    } catch (e) {
      error = toConnectError(e);
    }
    if (closed || res.writableEnded) return; // the client went away

    if (protocol === "grpc") {
      const head = responseHeader.copyTo({});
      if (error) {
        setTrailerStatus(responseTrailer, error);
        respecGrpcMessage(responseTrailer);
        res.writeHead(200, head);
      } else {
        const out = await this.compress(compression, body!);
        res.writeHead(200, head);
        (res as http.ServerResponse).write(envelope(out.compressed ? 1 : 0, out.data));
      }
      res.addTrailers(responseTrailer.copyTo({}));
      res.end();
      return;
    }

    let status = 200;
    if (error) {
      status = codeToHttpStatus(error.code);
      responseHeader.set("content-type", "application/json");
      error.metadata.forEach((value, key) => responseHeader.set(key, value));
      body = errorToJsonBytes(error, this.opts.jsonOptions);
    }
    const out = await this.compress(compression, body!);
    if (out.compressed) responseHeader.set("content-encoding", compression!.name);
    const head = responseHeader.copyTo({});
    responseTrailer.copyTo(head, "trailer-");
    head["content-length"] = String(out.data.byteLength);
    res.writeHead(status, head);
    res.end(out.data);
  }
}
