import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// Built into dist/web, which the server serves at `/` (server/http/http-routes.ts).
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: true,
  },
  // `npm run dev:web` proxies the API to a server started with `npm start`.
  server: {
    proxy: { "^/[a-z]+\\.[A-Za-z]+Service/": "http://127.0.0.1:8080" },
  },
});
