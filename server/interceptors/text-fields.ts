import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** Returns the path of the first string field holding U+0000 (`members[2].name`), or undefined. */
type Finder = (message: Record<string, unknown>) => string | undefined;

/**
 * Refuses a request with U+0000 in any string field, naming the field:
 * PostgreSQL cannot store it in text (it would fail there as Internal), and no
 * client means it. One rule for every RPC, present and future.
 *
 * The string fields of each request type (nested, repeated, map and oneof
 * ones too) are found once from its descriptor and compiled into a list of
 * accessors, so a call costs an indexOf per string it carries.
 */
export function textFieldsInterceptor(): Interceptor {
  const finders = new Map<DescMessage, Finder | null>();
  const check = (desc: DescMessage, message: unknown): void => {
    let find = finders.get(desc);
    if (find === undefined) {
      find = compile(desc, new Map());
      finders.set(desc, find);
    }
    const path = find?.(message as Record<string, unknown>);
    if (path !== undefined) throw new ConnectError(`${path}: must not contain U+0000`, Code.InvalidArgument);
  };
  return (next) => (req) => {
    const desc = req.method.input;
    if (!req.stream) {
      check(desc, req.message);
      return next(req);
    }
    const source = req.message;
    async function* checked() {
      for await (const m of source) {
        check(desc, m);
        yield m;
      }
    }
    return next({ ...req, message: checked() });
  };
}

const hasNul = (v: unknown): boolean => typeof v === "string" && v.indexOf("\0") !== -1;

/** null when the message holds no string at any depth. `seen` breaks cycles of recursive messages. */
function compile(desc: DescMessage, seen: Map<DescMessage, { find: Finder | null } | "pending">): Finder | null {
  const known = seen.get(desc);
  if (known === "pending") {
    // A recursive reference: resolved when the outer compile finishes.
    return (m) => {
      const done = seen.get(desc);
      return done !== undefined && done !== "pending" && done.find ? done.find(m) : undefined;
    };
  }
  if (known) return known.find;
  seen.set(desc, "pending");
  const parts: Finder[] = [];
  for (const field of desc.fields) {
    const read = fieldFinder(field, seen);
    if (read === null) continue;
    const oneof = field.oneof;
    if (oneof) {
      const name = field.localName;
      parts.push((m) => {
        const o = m[oneof.localName] as { case?: string; value?: unknown } | undefined;
        return o?.case === name ? read(o.value) : undefined;
      });
    } else {
      const name = field.localName;
      parts.push((m) => read(m[name]));
    }
  }
  const find: Finder | null =
    parts.length === 0
      ? null
      : (m) => {
          for (const part of parts) {
            const path = part(m);
            if (path !== undefined) return path;
          }
          return undefined;
        };
  seen.set(desc, { find });
  return find;
}

/** Reads one field's value; returns the offending path (from this field's name) or undefined. */
function fieldFinder(field: DescField, seen: Parameters<typeof compile>[1]): ((value: unknown) => string | undefined) | null {
  const name = field.name;
  switch (field.fieldKind) {
    case "scalar":
      if (field.scalar !== ScalarType.STRING) return null;
      return (v) => (hasNul(v) ? name : undefined);
    case "enum":
      return null;
    case "message": {
      const sub = compile(field.message, seen);
      if (sub === null) return null;
      return (v) => {
        if (v === undefined || v === null) return undefined;
        const p = sub(v as Record<string, unknown>);
        return p === undefined ? undefined : `${name}.${p}`;
      };
    }
    case "list": {
      if (field.listKind === "scalar") {
        if (field.scalar !== ScalarType.STRING) return null;
        return (v) => {
          const list = v as string[];
          for (let i = 0; i < list.length; i++) if (hasNul(list[i])) return `${name}[${i}]`;
          return undefined;
        };
      }
      if (field.listKind === "enum") return null;
      const sub = compile(field.message, seen);
      if (sub === null) return null;
      return (v) => {
        const list = v as Record<string, unknown>[];
        for (let i = 0; i < list.length; i++) {
          const p = sub(list[i]!);
          if (p !== undefined) return `${name}[${i}].${p}`;
        }
        return undefined;
      };
    }
    case "map": {
      const stringKeys = field.mapKey === ScalarType.STRING;
      const value =
        field.mapKind === "scalar"
          ? field.scalar === ScalarType.STRING
            ? (x: unknown) => (hasNul(x) ? "" : undefined)
            : null
          : field.mapKind === "message"
            ? (() => {
                const sub = compile(field.message, seen);
                return sub === null
                  ? null
                  : (x: unknown) => {
                      const p = sub(x as Record<string, unknown>);
                      return p === undefined ? undefined : `.${p}`;
                    };
              })()
            : null;
      if (!stringKeys && value === null) return null;
      return (v) => {
        for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
          if (stringKeys && hasNul(k)) return `${name} (a key)`;
          const p = value?.(x);
          if (p !== undefined) return `${name}[${JSON.stringify(k)}]${p}`;
        }
        return undefined;
      };
    }
  }
}
