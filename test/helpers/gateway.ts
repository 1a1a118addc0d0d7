import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Express } from 'express';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { createApp } from '../../src/http/app.js';
import { closeContext, openContext, startServer, type GatewayContext, type RunningServer } from '../../src/server.js';

/** A gateway on embedded defaults (local directory + SQLite) in a fresh temporary data directory. */
export interface TestGateway {
  app: Express;
  context: GatewayContext;
  dataDir: string;
  close(): Promise<void>;
}

export async function testEnv(
  extra: Record<string, string> = {},
): Promise<{ env: Record<string, string>; dataDir: string }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-test-'));
  return {
    dataDir,
    // Tests fire requests far faster than any client; the request-rate limit is tested on its own (limits.test.ts).
    env: {
      TRAJGATE_DATA_DIR: dataDir,
      TRAJGATE_LOG_LEVEL: 'silent',
      PORT: '0',
      HOST: '127.0.0.1',
      TRAJGATE_RATE_LIMIT_RPS: '0',
      ...extra,
    },
  };
}

export async function createTestGateway(extra: Record<string, string> = {}): Promise<TestGateway> {
  const { env, dataDir } = await testEnv(extra);
  const context = await openContext(loadConfig(env), pino({ level: 'silent' }));
  return {
    app: createApp(context),
    context,
    dataDir,
    async close() {
      await closeContext(context);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The same, listening on a real socket on 127.0.0.1. */
export async function startTestServer(
  extra: Record<string, string> = {},
): Promise<RunningServer & { dataDir: string }> {
  const { env, dataDir } = await testEnv(extra);
  const server = await startServer(loadConfig(env), pino({ level: 'silent' }));
  return {
    ...server,
    dataDir,
    async close() {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Every committed key in the gateway's blob store. */
export async function listAllBlobs(context: GatewayContext): Promise<string[]> {
  const keys: string[] = [];
  for await (const blob of context.blobs.list('')) keys.push(blob.key);
  return keys;
}
