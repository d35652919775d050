import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { TestProject } from "vitest/node";

/**
 * PGlite's initdb takes seconds on this machine; every test server on the
 * embedded profile would pay it. One empty cluster is made here, once per run,
 * and test databases start from a copy of it (same bytes a fresh directory
 * would get, minus the wait).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "chatwire-pglite-template-"));
  const pgdata = path.join(dir, "pgdata");
  const pglite = await PGlite.create(pgdata);
  await pglite.query("select 1");
  await pglite.close();
  project.provide("pgliteTemplate", pgdata);
  return async () => {
    await rm(dir, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    pgliteTemplate: string;
  }
}
