# syntax=docker/dockerfile:1
# Build stage: compilers for better-sqlite3 (it builds SQLite from source), dev dependencies, tsc
# and the esbuild bundle.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
COPY scripts ./scripts
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: production dependencies and the bundle only, no compilers, non-root. The bundle
# still loads native addons, pg, nodemailer and two packages' .proto files from node_modules.
FROM node:20-bookworm-slim
# The heap cap is what bounds RSS: at the default OTPAUTH_CACHE_MAX (50 000) full caches are ~40 MB
# live, and RSS plateaus near 225 MB under a flood; without a cap V8 lets garbage grow to ~4 × the
# live heap on a large host. Raise it with OTPAUTH_CACHE_MAX (about 1 KiB a cached number).
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-old-space-size=160 \
    OTPAUTH_ADDRESS=0.0.0.0:50051 \
    OTPAUTH_DATABASE=/data/otpauth.db
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/bundle ./dist/bundle
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# 50051 gRPC; 8080 and 9464 are the conventional ports for the optional REST door
# (OTPAUTH_HTTP_ADDRESS=0.0.0.0:8080) and Prometheus metrics (OTPAUTH_METRICS_ADDRESS=0.0.0.0:9464),
# both off unless those variables are set.
EXPOSE 50051 8080 9464
# grpc.health.v1 Check on this container's own gRPC port (from OTPAUTH_ADDRESS); exit 0 = SERVING.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "dist/bundle/health-probe.mjs"]
# node directly, not npm: npm does not pass SIGTERM on, and the service drains calls on SIGTERM.
CMD ["node", "dist/bundle/otpauth.mjs"]
