import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    globalSetup: ["server/tests/global-setup.ts"],
    include: ["server/**/*.test.ts", "client-sdk/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: more workers only make the database and servers fight.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
