// tsc emits only JavaScript: the database functions' definitions
// (server/db/sql/*.sql, applied by migrations) go beside the compiled code.
import { copyFileSync, cpSync } from "node:fs";
import { extname } from "node:path";

cpSync("server/db/sql", "dist/server/db/sql", { recursive: true, filter: (src) => extname(src) === "" || extname(src) === ".sql" });
// The embedded database's worker thread is plain JavaScript, run as it is from both places.
copyFileSync("server/db/pglite-thread-worker.js", "dist/server/db/pglite-thread-worker.js");
