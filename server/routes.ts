import type { ConnectRouter } from "@connectrpc/connect";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { file_grpc_reflection_v1_reflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { AuthService, file_auth_auth } from "../gen/auth/auth_pb.js";
import { ChatService, file_chat_chat } from "../gen/chat/chat_pb.js";
import { RealtimeService, file_realtime_realtime } from "../gen/realtime/realtime_pb.js";
import { Health, file_health_v1_health } from "../gen/health/v1/health_pb.js";
import { StatusService, file_status_status } from "../gen/status/status_pb.js";
import { UserService, file_user_user } from "../gen/user/user_pb.js";
import { PushService, file_push_push } from "../gen/push/push_pb.js";
import { MediaService, file_media_media } from "../gen/media/media_pb.js";
import { createMediaService } from "./media/media-service.js";
import type { AppContext } from "./context.js";
import { createAuthService } from "./services/auth-service.js";
import { createChatService } from "./services/chat/index.js";
import { createRealtimeService } from "./services/realtime-service.js";
import { createHealthService } from "./services/health-service.js";
import { documentedDescriptors } from "./services/documented-descriptors.js";
import { registerReflection } from "./services/reflection-service.js";
import { createStatusService } from "./services/status-service.js";
import { createUserService } from "./services/user-service.js";
import { createPushService } from "./services/push-service.js";

/**
 * Every service registered in one place. Returns the names of the services
 * served, which are also what health and reflection report.
 */
export function registerRoutes(router: ConnectRouter, ctx: AppContext): string[] {
  const files: DescFile[] = [file_health_v1_health, file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection];
  const services: DescService[] = [Health];

  router.service(Health, createHealthService(ctx.health));

  if (ctx.config.roles.has("api")) {
    router.service(AuthService, createAuthService(ctx));
    router.service(ChatService, createChatService(ctx));
    router.service(RealtimeService, createRealtimeService(ctx));
    services.push(AuthService, ChatService, RealtimeService);
    files.push(file_auth_auth, file_chat_chat, file_realtime_realtime);
    router.service(UserService, createUserService(ctx));
    router.service(StatusService, createStatusService(ctx));
    services.push(UserService, StatusService);
    files.push(file_user_user, file_status_status);
    router.service(PushService, createPushService(ctx));
    services.push(PushService);
    files.push(file_push_push);
    router.service(MediaService, createMediaService(ctx, ctx.media));
    services.push(MediaService);
    files.push(file_media_media);
  }

  const names = [...services.map((s) => s.typeName), "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];
  registerReflection(router, files, () => names, documentedDescriptors(files, ctx.logger));
  return names;
}
