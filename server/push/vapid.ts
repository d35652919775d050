import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import webpush from "web-push";
import type { PushConfig } from "./push-config.js";
import type { VapidKeys } from "./web-push-provider.js";

/**
 * The VAPID keys: VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY when configured;
 * otherwise (never in production) a pair generated once into
 * CHATWIRE_DATA_DIR/vapid-keys.json and reused, so browsers' subscriptions
 * survive restarts. Undefined: Web Push is off.
 */
export async function resolveVapidKeys(config: PushConfig["vapid"], logger: Logger): Promise<VapidKeys | undefined> {
  if (!config) return undefined;
  if ("publicKey" in config) return config;
  const file = path.join(config.generateInto, "vapid-keys.json");
  const read = async () => JSON.parse(await readFile(file, "utf8")) as { publicKey: string; privateKey: string };
  try {
    return { ...(await read()), subject: config.subject };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(config.generateInto, { recursive: true });
  const keys = webpush.generateVAPIDKeys();
  try {
    // wx: two processes starting at once must agree on one pair.
    await writeFile(file, `${JSON.stringify(keys)}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return { ...(await read()), subject: config.subject };
    throw err;
  }
  logger.warn({ file }, "VAPID keys are not set: generated development keys (set VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY in production)");
  return { ...keys, subject: config.subject };
}
