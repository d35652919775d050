// tsc emits only JavaScript: the database functions' definitions
// (server/db/sql/*.sql, applied by migrations) go beside the compiled code.
import { cpSync } from "node:fs";
import { extname } from "node:path";

cpSync("server/db/sql", "dist/server/db/sql", { recursive: true, filter: (src) => extname(src) === "" || extname(src) === ".sql" });
