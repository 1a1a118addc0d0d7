import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CreatedToken, TrajgateClient } from '@trajgate/sdk';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';

export interface EmbeddedGateway {
  url: string;
  dataDir: string;
  /** A client with the bootstrap admin token (for policies and tokens). */
  admin: TrajgateClient;
  /** A writer token scoped to the script's runs, and a client that uses it. */
  writer: CreatedToken;
  client: TrajgateClient;
  close(): Promise<void>;
}

/**
 * A gateway on embedded defaults in a temporary directory, with access control on: a random bootstrap admin
 * token, and a writer token scoped to `runs` for the training side — how a team would run its jobs.
 */
export async function startEmbeddedGateway(name: string, runs: string[]): Promise<EmbeddedGateway> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `trajgate-${name}-`));
  const adminToken = randomBytes(32).toString('base64url');
  const server = await startServer(
    loadConfig({
      TRAJGATE_DATA_DIR: dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
      TRAJGATE_AUTH: 'tokens',
      TRAJGATE_ADMIN_TOKEN: adminToken,
    }),
    pino({ level: 'warn' }),
  );
  const admin = new TrajgateClient({ url: server.url, token: adminToken });
  const writer = await admin.createToken({ name, role: 'writer', runs });
  return {
    url: server.url,
    dataDir,
    admin,
    writer,
    client: new TrajgateClient({ url: server.url, token: writer.token }),
    async close() {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
