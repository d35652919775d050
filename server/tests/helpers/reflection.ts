import { create, createFileRegistry, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";

/**
 * Like grpcurl and Postman: a registry built only from the files reflection
 * returned, every import resolved among them (dependencies first).
 */
export function registryOf(protos: Iterable<FileDescriptorProto>): Registry {
  const byName = new Map([...protos].map((p) => [p.name, p]));
  const ordered: FileDescriptorProto[] = [];
  const visit = (name: string): void => {
    const proto = byName.get(name);
    if (!proto) throw new Error(`reflection did not return dependency ${name}`);
    if (ordered.includes(proto)) return;
    proto.dependency.forEach(visit);
    ordered.push(proto);
  };
  [...byName.keys()].forEach(visit);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}
