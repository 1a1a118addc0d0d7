# syntax=docker/dockerfile:1
# Build: compile the SDK package and the gateway with every dependency installed.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY packages/sdk/package.json ./packages/sdk/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY packages/sdk/tsconfig.build.json ./packages/sdk/
COPY packages/sdk/src ./packages/sdk/src
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Run: compiled code and production dependencies only, as an unprivileged user.
FROM node:20-bookworm-slim
# Reached from outside the container, so access control is on: pass TRAJGATE_ADMIN_TOKEN (from a secret) to
# create the first tokens.
ENV NODE_ENV=production \
    TRAJGATE_DATA_DIR=/var/lib/trajgate \
    HOST=0.0.0.0 \
    TRAJGATE_AUTH=tokens \
    PORT=8080
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/packages/sdk/package.json ./packages/sdk/package.json
COPY --from=build /app/packages/sdk/dist ./packages/sdk/dist
COPY openapi ./openapi
COPY bin ./bin
COPY package.json ./
RUN mkdir -p /var/lib/trajgate && chown node:node /var/lib/trajgate
USER node
VOLUME ["/var/lib/trajgate"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/main.js"]
