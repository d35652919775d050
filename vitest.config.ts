import { configDefaults, defineConfig } from "vitest/config";

// These files always run on PostgreSQL and NATS (the machine's, or private ones they start), whatever
// DATABASE_URL and NATS_URL say: the embedded profile is one process and has no NATS. CI runs them once, in
// its production suite: `.ci/run` sets CHATWIRE_TEST_SUITE=embedded for the second suite, which leaves them out
// (and PROFILE_FREE below).
const PRODUCTION_ONLY = [
  "server/db/migrate.test.ts", // PostgreSQL and PGlite both, named explicitly
  "server/interceptors/errors-pg.test.ts",
  "server/messaging/bus.test.ts",
  "server/messaging/message-worker.test.ts",
  "server/tests/multi-instance.test.ts",
  "server/tests/nats-cluster.test.ts",
  "server/tests/nats-outage.test.ts",
  "server/tests/partitions.test.ts",
  "server/tests/processes.test.ts",
  "server/tests/startup-wait.test.ts",
];

// Pure unit tests: no database, no NATS, no server, so the same on either profile; and config-errors, a server
// process configured whole by the test that stops before any database. CI runs them once too.
const PROFILE_FREE = [
  "client-sdk/src/retry.test.ts",
  "client-sdk/src/subscription.test.ts",
  "server/auth/twilio-otp-provider.test.ts",
  "server/config.test.ts",
  "server/db/call-coalescer.test.ts",
  "server/db/pglite-dialect.test.ts",
  "server/domain/*.test.ts",
  "server/http/client-address.test.ts",
  "server/interceptors/errors.test.ts",
  "server/interceptors/rate-limit.test.ts",
  "server/interceptors/text-fields.test.ts",
  "server/push/push-config.test.ts",
  "server/realtime/wire.test.ts",
  "server/scheduler.test.ts",
  "server/services/blocking.test.ts",
  "server/services/documented-descriptors.test.ts",
  "server/services/reflection-service.test.ts",
  "server/tests/api-contract.test.ts",
  "server/tests/config-errors.test.ts",
];

export default defineConfig({
  test: {
    globalSetup: ["server/tests/global-setup.ts"],
    include: ["server/**/*.test.ts", "client-sdk/**/*.test.ts"],
    exclude: process.env.CHATWIRE_TEST_SUITE === "embedded" ? [...configDefaults.exclude, ...PRODUCTION_ONLY, ...PROFILE_FREE] : configDefaults.exclude,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: more workers only make the database and servers fight.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
