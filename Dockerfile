# Chatwire server image: multi-stage, runs as the unprivileged `node` user.
#   podman build -t chatwire .        (or docker build)
#   podman run -p 8080:8080 --env-file deploy/chatwire.env chatwire
# The compose file (compose.yaml) runs it with PostgreSQL and NATS.

FROM docker.io/library/node:20-bookworm-slim AS build
WORKDIR /app
# Dependencies first: this layer is reused while package*.json do not change.
COPY package.json package-lock.json ./
COPY client-sdk/package.json client-sdk/
RUN npm ci --no-audit --no-fund
COPY . .
# Server, migrations, SQL functions, descriptors, SDK and the web client into dist/;
# then only the runtime dependencies stay.
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM docker.io/library/node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    CHATWIRE_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Stops on SIGTERM within SHUTDOWN_TIMEOUT_MS (streams end with Unavailable, the port closes).
CMD ["node", "dist/server/main.js"]
