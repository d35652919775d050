// tsc emits only JavaScript: the database functions' definitions
// (server/db/sql/*.sql, applied by migrations) and the documented API
// descriptors that reflection serves (gen/descriptors.binpb) go beside the compiled code.
import { cpSync, mkdirSync } from "node:fs";
import { extname } from "node:path";

cpSync("server/db/sql", "dist/server/db/sql", { recursive: true, filter: (src) => extname(src) === "" || extname(src) === ".sql" });
mkdirSync("dist/gen", { recursive: true });
cpSync("gen/descriptors.binpb", "dist/gen/descriptors.binpb");
