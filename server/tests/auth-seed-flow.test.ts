import { createRequire } from "node:module";
import { loadSync } from "@grpc/proto-loader";
import * as grpc from "@grpc/grpc-js";
import {
  fromBinary,
  fromJson,
  fromJsonString,
  toBinary,
  toJson,
  type DescMessage,
  type DescMethod,
  type DescService,
  type JsonObject,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";
import { registryOf } from "./helpers/reflection.js";

/**
 * The original Postman collection's login flow, with its request bodies
 * verbatim, run two ways against one server:
 *  (a) as Postman does: @grpc/grpc-js, learning the API by server reflection
 *      and encoding the JSON bodies with the reflected schema (not gen/);
 *  (b) as curl does: a plain JSON POST over HTTP/1.1 (the Connect protocol).
 * Both must give the same answers.
 */

const OTP = "123456";
/** The seed collection's number, used verbatim by the Postman-style client. */
const SEED_PHONE = "+905551234567";
/** SendOTP allows one code per number per 30 s: the curl client logs in as someone else. */
const CURL_PHONE = "+905551234568";
const RESEND_WAIT_MS = 31_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]+$/;

let s: TestServer;
// Logging in again needs a new code, and a new code needs 30 s: the server's clock is ours.
const clock = new FakeClock();
beforeAll(async () => {
  s = await startTestServer({}, { clock });
});
afterAll(async () => {
  await s?.stop();
});

// --- What one step of the flow gives, whichever client made it.

type Answer = { ok: true; body: JsonObject } | { ok: false; code: string; message: string };

interface FlowClient {
  /** The request body as typed into Postman or passed to `curl -d`. */
  call(rpc: string, body: string): Promise<Answer>;
}

interface Step {
  rpc: string;
  request: string;
  answer: Answer;
}

const okBody = (a: Answer): JsonObject => {
  if (!a.ok) throw new Error(`expected success, got ${a.code}: ${a.message}`);
  return a.body;
};

/** The flow, written once; both clients' JSON uses the proto field names (phone_number, access_token). */
async function seedFlow(client: FlowClient, phone: string): Promise<Step[]> {
  const f = (protoName: string) => protoName;
  const steps: Step[] = [];
  const call = async (rpc: string, request: string): Promise<Answer> => {
    const answer = await client.call(rpc, request);
    steps.push({ rpc, request, answer });
    return answer;
  };
  const str = (body: JsonObject, name: string): string => {
    const v = body[f(name)];
    expect(typeof v, name).toBe("string");
    return v as string;
  };
  const login = async () => {
    const sent = okBody(await call("SendOTP", `{ "phone_number": "${phone}" }`));
    expect(str(sent, "message")).not.toBe("");
    const verified = okBody(await call("VerifyOTP", `{ "phone_number": "${phone}", "otp_code": "${OTP}" }`));
    const user = verified[f("user")] as JsonObject;
    expect(str(user, "phone_number")).toBe(phone);
    expect(str(user, "id")).toMatch(UUID);
    return { userId: str(user, "id"), access: str(verified, "access_token"), refresh: str(verified, "refresh_token") };
  };

  const first = await login();
  expect(first.access).toMatch(JWT_SHAPE);
  expect(first.refresh).toMatch(JWT_SHAPE);

  const valid = okBody(await call("ValidateToken", `{ "access_token": "${first.access}" }`));
  expect(valid).toEqual({ [f("is_valid")]: true, [f("user_id")]: first.userId });

  // Never an error: is_valid false and an empty user_id (which a client writing JSON without defaults leaves out).
  const garbage = okBody(await call("ValidateToken", `{ "access_token": "garbage" }`));
  expect(garbage[f("is_valid")] ?? false).toBe(false);
  expect(garbage[f("user_id")] ?? "").toBe("");

  const refreshed = okBody(await call("RefreshToken", `{ "refresh_token": "${first.refresh}" }`));
  const access2 = str(refreshed, "access_token");
  const refresh2 = str(refreshed, "refresh_token");
  expect(access2).not.toBe(first.access);
  expect(refresh2).not.toBe(first.refresh);

  expect(okBody(await call("RevokeCurrentDevice", `{ "refresh_token": "${refresh2}" }`))).toEqual({ [f("success")]: true });
  const afterRevoke = await call("RefreshToken", `{ "refresh_token": "${refresh2}" }`);
  expect(afterRevoke).toMatchObject({ ok: false, code: "unauthenticated" });

  clock.advance(RESEND_WAIT_MS);
  const second = await login();
  clock.advance(RESEND_WAIT_MS);
  const third = await login();
  expect(new Set([first.userId, second.userId, third.userId]).size).toBe(1);
  for (const session of [second, third]) {
    expect(okBody(await call("ValidateToken", `{ "access_token": "${session.access}" }`))[f("is_valid")]).toBe(true);
  }

  expect(okBody(await call("LogoutAllDevices", `{ "access_token": "${third.access}" }`))).toEqual({ [f("success")]: true });
  for (const session of [second, third]) {
    const after = okBody(await call("ValidateToken", `{ "access_token": "${session.access}" }`));
    expect(after[f("is_valid")] ?? false).toBe(false);
    expect(after[f("user_id")] ?? "").toBe("");
  }
  return steps;
}

// --- (a) Postman: grpc-js, the API learned by reflection.

const require = createRequire(import.meta.url);
const reflectionProtoRoot = require
  .resolve("@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto")
  .replace(/grpc\/reflection\/v1\/reflection\.proto$/, "");

interface ReflectionRequest {
  listServices?: string;
  fileContainingSymbol?: string;
}
interface ReflectionResponse {
  messageResponse: "fileDescriptorResponse" | "listServicesResponse" | "errorResponse" | "allExtensionNumbersResponse";
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  listServicesResponse?: { service: { name: string }[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}
type ReflectionClient = grpc.Client & {
  ServerReflectionInfo(): grpc.ClientDuplexStream<ReflectionRequest, ReflectionResponse>;
};

function reflectionClient(address: string): ReflectionClient {
  const definition = loadSync("grpc/reflection/v1/reflection.proto", { includeDirs: [reflectionProtoRoot], oneofs: true, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  };
  return new loaded.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure()) as unknown as ReflectionClient;
}

function reflect(client: ReflectionClient, request: ReflectionRequest): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const responses: ReflectionResponse[] = [];
    const call = client.ServerReflectionInfo();
    call.on("data", (r: ReflectionResponse) => responses.push(r));
    call.on("error", reject);
    call.on("end", () => (responses.length === 1 ? resolve(responses[0]!) : reject(new Error(`${responses.length} answers`))));
    call.write(request);
    call.end();
  });
}

/** How Postman shows a response: proto field names, every field (defaults too). */
const POSTMAN_JSON = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(grpc.status)
    .filter((e): e is [string, number] => typeof e[1] === "number")
    .map(([name, n]) => [n, name.toLowerCase()]),
);

class PostmanClient implements FlowClient {
  readonly channel: grpc.Client;
  constructor(
    address: string,
    readonly service: DescService,
  ) {
    this.channel = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  method(rpc: string): DescMethod {
    const m = this.service.methods.find((x) => x.name === rpc);
    if (!m) throw new Error(`reflection knows no ${this.service.typeName}/${rpc}`);
    return m;
  }

  call(rpc: string, body: string): Promise<Answer> {
    const method = this.method(rpc);
    const request = fromJsonString(method.input, body);
    return new Promise((resolve) => {
      this.channel.makeUnaryRequest(
        `/${this.service.typeName}/${method.name}`,
        (m: Message) => Buffer.from(toBinary(method.input, m)),
        (b: Buffer) => fromBinary(method.output, b),
        request,
        (err, res) => {
          if (err) resolve({ ok: false, code: CODE_NAMES[err.code] ?? String(err.code), message: err.details });
          else resolve({ ok: true, body: toJson(method.output, res!, POSTMAN_JSON) as JsonObject });
        },
      );
    });
  }
}

// --- (b) curl: JSON over HTTP/1.1, no schema at all.

class CurlClient implements FlowClient {
  readonly http: Array<{ rpc: string; status: number; contentType: string | null }> = [];
  constructor(readonly baseUrl: string) {}

  async call(rpc: string, body: string): Promise<Answer> {
    const res = await fetch(`${this.baseUrl}/auth.AuthService/${rpc}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    this.http.push({ rpc, status: res.status, contentType: res.headers.get("content-type") });
    const json = (await res.json()) as JsonObject;
    if (res.status === 200) return { ok: true, body: json };
    return { ok: false, code: String(json.code), message: String(json.message) };
  }
}

// --- The tests: one flow per client, then the comparison.

let authService: DescService;
let postman: PostmanClient;
let postmanSteps: Step[];
let curl: CurlClient;
let curlSteps: Step[];

// What both clients must see for SendOTP, and the fields of VerifyOTP's answer in order.
const SEND_OTP_ANSWER = {
  ok: true,
  body: { message: "OTP sent successfully", retry_after_seconds: 30, expires_in_seconds: 600, attempts_left: 5 },
};
const VERIFY_OTP_FIELDS = ["user", "access_token", "refresh_token", "session_id", "is_new_user", "access_token_expires_at", "refresh_token_expires_at"];

describe("(a) Postman: @grpc/grpc-js with the schema learned by reflection", () => {
  afterAll(() => postman?.channel.close());

  test("reflection lists auth.AuthService and describes it", async () => {
    const address = new URL(s.url).host;
    const reflection = reflectionClient(address);
    try {
      const list = await reflect(reflection, { listServices: "" });
      expect(list.messageResponse).toBe("listServicesResponse");
      expect(list.listServicesResponse!.service.map((x) => x.name)).toContain("auth.AuthService");

      const files = await reflect(reflection, { fileContainingSymbol: "auth.AuthService" });
      expect(files.messageResponse, JSON.stringify(files.errorResponse)).toBe("fileDescriptorResponse");
      const protos = files.fileDescriptorResponse!.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, new Uint8Array(b)));
      expect(protos.map((p) => p.name)).toEqual(["auth/auth.proto", "google/protobuf/timestamp.proto"]);
      const registry = registryOf(protos);
      authService = registry.getService("auth.AuthService")!;
      expect(authService).toBeDefined();
    } finally {
      reflection.close();
    }
    expect(authService.methods.map((m) => m.name)).toEqual(
      expect.arrayContaining(["SendOTP", "VerifyOTP", "ValidateToken", "RefreshToken", "RevokeCurrentDevice", "LogoutAllDevices"]),
    );
    postman = new PostmanClient(address, authService);
  });

  test(`the seed flow as ${SEED_PHONE}`, async () => {
    expect(postman, "reflection step failed").toBeDefined();
    postmanSteps = await seedFlow(postman, SEED_PHONE);
    // What Postman shows for the first two steps.
    expect(postmanSteps[0]!.answer).toEqual(SEND_OTP_ANSWER);
    expect(Object.keys(okBody(postmanSteps[1]!.answer))).toEqual(VERIFY_OTP_FIELDS);
    expect(okBody(postmanSteps[1]!.answer).is_new_user).toBe(true);
  });
});

describe("(b) curl: plain JSON POST over HTTP/1.1", () => {
  test(`the seed flow as ${CURL_PHONE}`, async () => {
    curl = new CurlClient(s.url);
    curlSteps = await seedFlow(curl, CURL_PHONE);
    for (const h of curl.http) {
      expect(h.contentType, h.rpc).toBe("application/json");
    }
    // Successes are 200 (ValidateToken with garbage too); the dead refresh token is 401.
    expect(curl.http.map((h) => h.status)).toEqual(curlSteps.map((step) => (step.answer.ok ? 200 : 401)));
    const failures = curlSteps.filter((step) => !step.answer.ok);
    expect(failures.map((step) => step.rpc)).toEqual(["RefreshToken"]);

    expect(curlSteps[0]!.answer).toEqual(SEND_OTP_ANSWER);
    expect(Object.keys(okBody(curlSteps[1]!.answer))).toEqual(VERIFY_OTP_FIELDS);
    // ValidateToken of garbage: every field present, at its default.
    expect(curlSteps[3]).toEqual({
      rpc: "ValidateToken",
      request: '{ "access_token": "garbage" }',
      answer: { ok: true, body: { is_valid: false, user_id: "" } },
    });
  });

  test("the seed bodies with the seed number, verbatim, as a README would show them", async () => {
    clock.advance(RESEND_WAIT_MS); // flow (a) just sent SEED_PHONE a code
    const post = (rpc: string, body: string) =>
      fetch(`${s.url}/auth.AuthService/${rpc}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const sent = await post("SendOTP", '{ "phone_number": "+905551234567" }');
    expect(sent.status).toBe(200);
    expect(await sent.json()).toEqual({ message: "OTP sent successfully", retry_after_seconds: 30, expires_in_seconds: 600, attempts_left: 5 });
    const verified = await post("VerifyOTP", '{ "phone_number": "+905551234567", "otp_code": "123456" }');
    expect(verified.status).toBe(200);
    const body = (await verified.json()) as JsonObject;
    expect(body).toMatchObject({ user: { phone_number: SEED_PHONE }, is_new_user: false });
    expect(body.access_token).toMatch(JWT_SHAPE);
    expect(body.refresh_token).toMatch(JWT_SHAPE);
  });
});

describe("both clients", () => {
  /** The JSON's structure with values replaced by their JSON types. */
  const shape = (v: JsonValue): JsonValue => {
    if (Array.isArray(v)) return v.map(shape);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]));
    return typeof v;
  };

  test("made the same calls and got the same outcomes", () => {
    expect(postmanSteps, "flow (a) did not finish").toBeDefined();
    expect(curlSteps, "flow (b) did not finish").toBeDefined();
    expect(curlSteps.map((x) => x.rpc)).toEqual(postmanSteps.map((x) => x.rpc));
    expect(curlSteps.map((x) => (x.answer.ok ? "ok" : x.answer.code))).toEqual(postmanSteps.map((x) => (x.answer.ok ? "ok" : x.answer.code)));
    // Same request texts, up to the phone number and the tokens each session got.
    const template = (req: string) => req.replace(CURL_PHONE, SEED_PHONE).replace(/"[\w-]+\.[\w-]+\.[\w-]+"/g, '"<token>"');
    expect(curlSteps.map((x) => template(x.request))).toEqual(postmanSteps.map((x) => template(x.request)));
  });

  test("answers have the same field names, in the same order, and the same shapes", () => {
    for (const [i, step] of postmanSteps.entries()) {
      const theirs = curlSteps[i]!;
      if (!step.answer.ok || !theirs.answer.ok) continue;
      const where = `${step.rpc} #${i}`;
      expect(shape(theirs.answer.body), where).toEqual(shape(step.answer.body));
      expect(JSON.stringify(shape(theirs.answer.body)), where).toBe(JSON.stringify(shape(step.answer.body)));
      // The curl JSON parses strictly (no unknown keys) with the reflected schema,
      // and is exactly what that schema writes the way Postman shows it.
      const output: DescMessage = authService.methods.find((m) => m.name === step.rpc)!.output;
      expect(toJson(output, fromJson(output, theirs.answer.body), POSTMAN_JSON), where).toEqual(theirs.answer.body);
    }
  });

  test("same deterministic values", () => {
    const values = (steps: Step[]) =>
      steps.map((x) => {
        if (!x.answer.ok) return x.answer.code;
        const { message, retry_after_seconds, is_valid, success, is_new_user } = x.answer.body;
        return { message, retry_after_seconds, is_valid, success, is_new_user };
      });
    expect(values(curlSteps)).toEqual(values(postmanSteps));
  });
});
