import http2 from "node:http2";
import { serve } from "../lib/ipc.js";

// The baseline: a bare node:http2 server that answers every POST with its
// body (gRPC requests get a grpc-status trailer), no framework in between.

let server: http2.Http2Server | undefined;

serve({
  async listen() {
    server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
    server.on("stream", (stream, headers) => {
      const grpc = String(headers["content-type"] ?? "").startsWith("application/grpc");
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", () => undefined);
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": String(headers["content-type"] ?? "application/octet-stream") }, { waitForTrailers: grpc });
        if (grpc) stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.concat(chunks));
      });
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    return { port: (server.address() as import("node:net").AddressInfo).port, pid: process.pid };
  },
});
