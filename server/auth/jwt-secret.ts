import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config.js";

/**
 * JWT_SECRET when configured; otherwise (never in production, config refuses
 * that) a random secret created under CHATWIRE_DATA_DIR on first start and
 * reused, so tokens survive restarts of `npm start`.
 */
export async function resolveJwtSecret(config: Config, logger: Logger): Promise<string> {
  if (config.jwtSecret) return config.jwtSecret;
  const file = path.join(config.dataDir, "jwt-secret");
  try {
    const existing = (await readFile(file, "utf8")).trim();
    if (existing.length >= 32) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(config.dataDir, { recursive: true });
  const secret = randomBytes(48).toString("base64url");
  // wx: two processes starting at once must not overwrite each other's secret.
  try {
    await writeFile(file, `${secret}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return (await readFile(file, "utf8")).trim();
    throw err;
  }
  logger.warn({ file }, "JWT_SECRET is not set: created a development secret (instances sharing a database need one JWT_SECRET)");
  return secret;
}
