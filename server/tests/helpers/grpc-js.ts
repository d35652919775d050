import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";

/**
 * A @grpc/grpc-js client over h2c, exactly what grpcurl-style tools and
 * generated Node stubs use, with our generated schemas for (de)serialisation.
 */
export function grpcJsClient(baseUrl: string): grpc.Client {
  const address = new URL(baseUrl).host;
  return new grpc.Client(address, grpc.credentials.createInsecure());
}

const path = (m: DescMethod): string => `/${m.parent.typeName}/${m.name}`;
const serialize =
  <D extends DescMessage>(schema: D) =>
  (v: MessageShape<D>) =>
    Buffer.from(toBinary(schema, v));
const deserialize =
  <D extends DescMessage>(schema: D) =>
  (b: Buffer) =>
    fromBinary(schema, b);

export function grpcJsUnary<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  req: MessageInitShape<I>,
  metadata = new grpc.Metadata(),
): Promise<MessageShape<O>> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path(method), serialize(method.input), deserialize(method.output), create(method.input, req), metadata, (err, res) =>
      err ? reject(err) : resolve(res!),
    );
  });
}

export function grpcJsServerStream<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  req: MessageInitShape<I>,
): grpc.ClientReadableStream<MessageShape<O>> {
  return client.makeServerStreamRequest(path(method), serialize(method.input), deserialize(method.output), create(method.input, req));
}

export function grpcJsBidi<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
): grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>> {
  return client.makeBidiStreamRequest(path(method), serialize(method.input), deserialize(method.output));
}

/** The first message of a server stream, which is then canceled. */
export async function firstMessage<T>(stream: grpc.ClientReadableStream<T>): Promise<T> {
  try {
    return await new Promise<T>((resolve, reject) => {
      stream.once("data", resolve);
      stream.once("error", reject);
    });
  } finally {
    stream.cancel();
  }
}
