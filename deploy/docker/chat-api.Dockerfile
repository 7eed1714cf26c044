# syntax=docker/dockerfile:1
# The chat API image: built from the workspace with its frozen lockfile, shipped as the server
# package and its production dependencies only (`pnpm deploy --prod`), on a slim Node 20.
#   docker build -f deploy/docker/chat-api.Dockerfile -t chatify/chat-api:0.1.0 .   (scripts/up.sh)
#
# No init process: node is PID 1. The server installs its own SIGTERM/SIGINT handlers (graceful
# drain, NodeRuntime.runMain), spawns no child processes (only worker threads), so there is nothing
# for an init to forward or reap; the exec-form CMD keeps a shell from standing in between.

FROM node:20-bookworm AS build
# better-sqlite3 compiles against these headers when no prebuilt binary matches (the repository's
# .npmrc points node-gyp at /usr, where Debian's nodejs keeps them; the node image has them here)
ENV npm_config_nodedir=/usr/local \
    PNPM_HOME=/pnpm
RUN npm install -g pnpm@12.4.2
WORKDIR /src
# the lockfile alone decides what is fetched: this layer is reused until it changes
COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
# pnpm-workspace.yaml's patchedDependencies name these: the lockfile's hashes cover them
COPY patches ./patches
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store pnpm fetch --store-dir /pnpm/store
COPY . .
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store \
    pnpm install --offline --frozen-lockfile --store-dir /pnpm/store \
 && pnpm run build \
 && pnpm --filter @chatify/server deploy --prod --legacy --store-dir /pnpm/store /out \
 && mkdir -p packages/web/dist

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=8080 \
    CHATIFY__EMBEDDED__DATADIRECTORY=/var/lib/chatify
WORKDIR /app
COPY --from=build --chown=root:root /out /app
# the chat page, where the server looks for it (packages/web/dist beside packages/server)
COPY --from=build --chown=root:root /src/packages/web/dist /web/dist
# the data directory is the only place the server writes (an emptyDir in Kubernetes)
RUN mkdir -p /var/lib/chatify && chown node:node /var/lib/chatify
USER node
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
