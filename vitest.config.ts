import { configDefaults, defineConfig } from "vitest/config";

// These files always run on PostgreSQL and NATS (the machine's, or private ones they start), whatever
// DATABASE_URL and NATS_URL say: the embedded profile is one process and has no NATS. CI runs them once, in
// its production suite: `.ci/run` sets CHATWIRE_TEST_SUITE=embedded for the second suite, which leaves them out.
const PRODUCTION_ONLY = [
  "server/tests/multi-instance.test.ts",
  "server/tests/nats-cluster.test.ts",
  "server/tests/nats-outage.test.ts",
  "server/tests/partitions.test.ts",
  "server/tests/processes.test.ts",
];

export default defineConfig({
  test: {
    globalSetup: ["server/tests/global-setup.ts"],
    include: ["server/**/*.test.ts", "client-sdk/**/*.test.ts"],
    exclude: process.env.CHATWIRE_TEST_SUITE === "embedded" ? [...configDefaults.exclude, ...PRODUCTION_ONLY] : configDefaults.exclude,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: more workers only make the database and servers fight.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
