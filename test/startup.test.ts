import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import { testEnv } from './helpers/gateway.js';

describe('start-up with access control', () => {
  it('refuses to start when no token could ever sign in, and says what to set', async () => {
    const { env, dataDir } = await testEnv({ TRAJGATE_AUTH: 'tokens' });
    try {
      await assert.rejects(startServer(loadConfig(env), pino({ level: 'silent' })), /TRAJGATE_ADMIN_TOKEN/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('starts with a bootstrap admin token and answers 401 without a token', async () => {
    const admin = 'a'.repeat(48);
    const { env, dataDir } = await testEnv({ TRAJGATE_AUTH: 'tokens', TRAJGATE_ADMIN_TOKEN: admin });
    const server = await startServer(loadConfig(env), pino({ level: 'silent' }));
    try {
      const anonymous = await fetch(`${server.url}/v1/runs`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer/);
      const ok = await fetch(`${server.url}/v1/runs`, { headers: { authorization: `Bearer ${admin}` } });
      assert.equal(ok.status, 200);
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'probes stay public');
    } finally {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
