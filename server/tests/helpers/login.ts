import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../../gen/auth/auth_pb.js";

/** The development OTP every number accepts on test servers. */
export const DEV_CODE = "123456";

export interface LoggedIn {
  id: string;
  phone: string;
  accessToken: string;
  refreshToken: string;
}

/** The seed flow: SendOTP, then VerifyOTP with the dev code. */
export async function login(baseUrl: string, phone: string): Promise<LoggedIn> {
  const auth = createClient(AuthService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  await auth.sendOTP({ phoneNumber: phone });
  const res = await auth.verifyOTP({ phoneNumber: phone, otpCode: DEV_CODE });
  return { id: res.user!.id, phone, accessToken: res.accessToken, refreshToken: res.refreshToken };
}

/** A transport that sends `Authorization: Bearer <token>` on every call. */
export function bearerTransport(baseUrl: string, token: string, protocol: "grpc" | "connect" = "connect"): Transport {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl, interceptors: [bearer] })
    : createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] });
}
