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
    // Each worker keeps its modules from one test file to the next instead of importing the server's whole
    // graph (connect, protobuf, kysely, pg, NATS, PGlite) afresh per file: "import" fell from 118–131 s to
    // 21 s per suite, the embedded suite from 362 to 277 s. Test files own their servers, databases and
    // listeners and undo what they change of the process (fake timers, process listeners).
    isolate: false,
    reporters: ["default"],
  },
});
