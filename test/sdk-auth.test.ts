import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { TrajgateClient, TrajgateError, type AuditEntry, type CreatedToken, type Token } from '@trajgate/sdk';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { startTestServer } from './helpers/gateway.js';

/*
 * The SDK and the `trajgate` command against a gateway with access control on (TRAJGATE_AUTH=tokens): the
 * bearer token on every request, 401/403 not retried, the token never in a message, the token and audit
 * calls, and the CLI's --token, `tokens` and `audit` commands.
 */

const root = path.resolve(import.meta.dirname, '..');
const ADMIN = `admin-${randomBytes(20).toString('hex')}`; // 46 characters
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A fetch that counts requests and remembers their Authorization and Range headers. */
function countingFetch(): {
  fetch: typeof fetch;
  calls: () => number;
  authorizations: (string | null)[];
  ranges: string[];
} {
  let calls = 0;
  const authorizations: (string | null)[] = [];
  const ranges: string[] = [];
  return {
    fetch: (input, init) => {
      calls++;
      const headers = new Headers(init?.headers);
      authorizations.push(headers.get('authorization'));
      const range = headers.get('range');
      if (range !== null) ranges.push(range);
      return fetch(input, init);
    },
    calls: () => calls,
    authorizations,
    ranges,
  };
}

/** The error `promise` rejects with, which must be a TrajgateError. */
async function refusal(promise: Promise<unknown>): Promise<TrajgateError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TrajgateError, `expected a TrajgateError, got ${inspect(err)}`);
    return err;
  }
  assert.fail('expected the call to be refused');
}

function checkpointBytes(seed: number, size = 50_000): Uint8Array {
  const w = Float32Array.from({ length: size }, (_, i) => Math.sin(seed + i * 0.001));
  return encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [size], data: new Uint8Array(w.buffer) }]);
}

describe('SDK with access control on', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let dir: string;
  let admin: TrajgateClient;
  let writer: CreatedToken;
  let reader: CreatedToken;
  const fast = { retries: 3, baseDelayMs: 1, maxDelayMs: 5 };
  const writerClient = () => new TrajgateClient({ url: server.url, token: writer.token, retry: fast });

  before(async () => {
    server = await startTestServer({ TRAJGATE_AUTH: 'tokens', TRAJGATE_ADMIN_TOKEN: ADMIN });
    dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-sdk-auth-'));
    admin = new TrajgateClient({ url: server.url, token: ADMIN, retry: fast });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a writer token and a reader token with the admin token', async () => {
    writer = await admin.createToken({ name: 'trainer', role: 'writer', runs: ['team-a-*'] });
    assert.match(writer.id, /^tok_[0-9a-f]{16}$/);
    assert.equal(writer.role, 'writer');
    assert.deepEqual(writer.runs, ['team-a-*']);
    assert.equal(writer.createdBy, 'admin-env');
    assert.equal(writer.revokedAt, null);
    assert.ok(writer.token.length >= 32);

    reader = await admin.createToken({
      name: 'dashboard',
      role: 'reader',
      runs: ['team-a-*'],
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    });
    assert.notEqual(reader.expiresAt, null);

    const listed: Token[] = await admin.listTokens();
    assert.deepEqual(listed.map((t) => t.name).sort(), ['dashboard', 'trainer']);
    for (const t of listed) assert.equal('token' in t, false, 'a listed token must not carry its secret');
  });

  it('uploads, logs metrics and downloads with resume, sending the token on every request', async () => {
    const counting = countingFetch();
    const client = new TrajgateClient({ url: server.url, token: writer.token, fetch: counting.fetch, retry: fast });
    await client.putRun('team-a-1', { plannedSteps: 100 });
    const bytes = checkpointBytes(1);
    const file = path.join(dir, 'in.safetensors');
    await writeFile(file, bytes);
    const uploaded = await client.uploadCheckpoint('team-a-1', 10, { file });
    assert.equal(uploaded.sha256, sha(bytes));
    assert.equal((await client.uploadCheckpoint('team-a-1', 20, { file }, { hashFirstBytes: 0 })).status, 'kept');
    const run = client.run('team-a-1');
    for (let step = 1; step <= 5; step++) await run.log({ step, trainLoss: 1 / step });
    await run.close();
    assert.equal(await client.logMetrics('team-a-1', [{ step: 6, trainLoss: 0.1 }], { format: 'json' }), 1);
    assert.equal((await client.getMetrics('team-a-1')).length, 6);

    // A download that an earlier attempt left half done resumes with a Range request.
    const out = path.join(dir, 'out.safetensors');
    await writeFile(`${out}.partial`, bytes.subarray(0, 20_000));
    const record = await client.downloadCheckpoint('team-a-1', 10, out);
    assert.equal(record.sha256, sha(bytes));
    assert.equal(sha(await readFile(out)), sha(bytes));
    assert.deepEqual(counting.ranges, ['bytes=20000-']);

    assert.ok(counting.calls() >= 8);
    assert.deepEqual(new Set(counting.authorizations), new Set([`Bearer ${writer.token}`]));
  });

  it('is refused without a token: unauthenticated (401), not retried', async () => {
    const counting = countingFetch();
    const anonymous = new TrajgateClient({ url: server.url, token: null, fetch: counting.fetch, retry: fast });
    const err = await refusal(anonymous.listRuns());
    assert.equal(err.code, 'unauthenticated');
    assert.equal(err.status, 401);
    assert.equal(counting.calls(), 1);
    assert.equal(counting.authorizations[0], null);
  });

  it('refuses a reader an upload: forbidden (403), not retried', async () => {
    const counting = countingFetch();
    const client = new TrajgateClient({ url: server.url, token: reader.token, fetch: counting.fetch, retry: fast });
    const file = path.join(dir, 'reader.safetensors');
    await writeFile(file, checkpointBytes(2));
    const err = await refusal(client.uploadCheckpoint('team-a-1', 30, { file }));
    assert.equal(err.code, 'forbidden');
    assert.equal(err.status, 403);
    assert.equal(counting.calls(), 1);
    // Reads in scope are allowed; runs outside it are not.
    assert.equal((await client.getRun('team-a-1')).checkpoints.count, 2);
    assert.equal((await refusal(writerClient().putRun('team-b-1'))).code, 'forbidden');
  });

  it('reads the audit trail, filtered and paged', async () => {
    await admin.pin('team-a-1', 10);
    const all = await admin.listAudit();
    assert.deepEqual(
      all.items.map((e: AuditEntry) => e.action),
      ['token.create', 'token.create', 'checkpoint.pin'],
    );
    assert.equal(all.next, null);
    const pins = await admin.listAudit({ run: 'team-a-1' });
    assert.deepEqual(
      pins.items.map((e) => [e.actor, e.action, e.run, e.step]),
      [['admin-env', 'checkpoint.pin', 'team-a-1', 10]],
    );
    const first = await admin.listAudit({ limit: 2 });
    assert.equal(first.items.length, 2);
    assert.equal(first.next, first.items[1].id);
    const rest = await admin.listAudit({ after: first.next ?? undefined, since: '2000-01-01T00:00:00Z' });
    assert.deepEqual(
      rest.items.map((e) => e.action),
      ['checkpoint.pin'],
    );
    assert.equal((await refusal(writerClient().listAudit())).code, 'forbidden');
  });

  it('fails with unauthenticated once the token is revoked', async () => {
    const victim = await admin.createToken({ name: 'short-lived', role: 'writer', runs: ['team-a-*'] });
    const client = new TrajgateClient({ url: server.url, token: victim.token, retry: fast });
    await client.getRun('team-a-1');
    const revoked = await admin.revokeToken(victim.id);
    assert.equal(revoked.id, victim.id);
    assert.notEqual(revoked.revokedAt, null);
    const err = await refusal(client.getRun('team-a-1'));
    assert.equal(err.code, 'unauthenticated');
    assert.equal(err.status, 401);
    assert.equal((await refusal(admin.revokeToken('tok_0000000000000000'))).code, 'token_not_found');
  });

  it('takes the token from TRAJGATE_TOKEN when the option is absent', async (t) => {
    const saved = process.env.TRAJGATE_TOKEN;
    t.after(() => {
      if (saved === undefined) delete process.env.TRAJGATE_TOKEN;
      else process.env.TRAJGATE_TOKEN = saved;
    });
    process.env.TRAJGATE_TOKEN = reader.token;
    const fromEnv = new TrajgateClient({ url: server.url, retry: fast });
    assert.equal((await fromEnv.getRun('team-a-1')).id, 'team-a-1');
    // The option wins over the variable; null sends none.
    assert.equal((await refusal(new TrajgateClient({ url: server.url, token: null }).getRun('team-a-1'))).status, 401);
    const explicit = new TrajgateClient({ url: server.url, token: writer.token });
    assert.equal((await explicit.putRun('team-a-2')).id, 'team-a-2');
    delete process.env.TRAJGATE_TOKEN;
    assert.equal((await refusal(new TrajgateClient({ url: server.url }).listRuns())).code, 'unauthenticated');
  });

  it('never puts the token in a message or in the inspected client', async () => {
    const wrong = `tg_${randomBytes(32).toString('base64url')}`;
    const client = new TrajgateClient({ url: server.url, token: wrong, retry: fast });
    const err = await refusal(client.getRun('team-a-1'));
    assert.equal(err.code, 'unauthenticated');
    for (const text of [err.message, err.stack ?? '', inspect(err), JSON.stringify(err)]) {
      assert.equal(text.includes(wrong), false, text);
    }
    assert.equal(inspect(client, { depth: 10, showHidden: true }).includes(wrong), false);
    assert.equal(JSON.stringify(client).includes(wrong), false);

    // A proxy that echoes the request's headers in a non-JSON error page.
    const echoing: typeof fetch = async (_input, init) =>
      new Response(`bad gateway; you sent ${new Headers(init?.headers).get('authorization')}`, {
        status: 400,
        statusText: 'Bad Request',
      });
    const proxied = new TrajgateClient({ url: server.url, token: wrong, fetch: echoing, retry: fast });
    const echoed = await refusal(proxied.listRuns());
    assert.equal(echoed.code, 'http_400');
    assert.equal(echoed.message.includes(wrong), false, echoed.message);
    assert.match(echoed.message, /Bearer <token>/);

    // A token fetch would refuse as a header value is refused up front, without quoting it.
    const bad = `${wrong}\nX-Injected: 1`;
    assert.throws(
      () => new TrajgateClient({ url: server.url, token: bad }),
      (e: unknown) => e instanceof TypeError && !e.message.includes(wrong),
    );
    // Surrounding whitespace (a file's trailing newline) is trimmed.
    const trimmed = new TrajgateClient({ url: server.url, token: `  ${writer.token}\n` });
    assert.equal((await trimmed.getRun('team-a-1')).id, 'team-a-1');
  });
});

/** Runs `bin/trajgate.js` (the TypeScript sources through tsx), as `npx trajgate` does in a checkout. */
function trajgate(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TRAJGATE_TOKEN: undefined, ...env };
  for (const key of Object.keys(childEnv)) if (childEnv[key] === undefined) delete childEnv[key];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(root, 'bin/trajgate.js'), ...args],
      { env: childEnv, timeout: 60_000, cwd: os.tmpdir() },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('trajgate CLI with access control on', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  before(async () => {
    server = await startTestServer({ TRAJGATE_AUTH: 'tokens', TRAJGATE_ADMIN_TOKEN: ADMIN });
  });
  after(async () => server.close());

  it('creates, lists and revokes tokens, reads the audit trail, and exits 1 when refused', async () => {
    const url = ['--url', server.url];
    const created = await trajgate([
      ...url,
      '--token',
      ADMIN,
      'tokens',
      'create',
      'ci',
      '--role',
      'writer',
      '--runs',
      'team-a-*, other',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const secret = created.stdout.trim();
    assert.match(secret, /^\S{32,}$/, 'stdout is the secret alone');
    assert.match(created.stderr, /not shown again/);
    assert.equal(created.stderr.includes(secret), false);

    const asJson = await trajgate(
      [
        ...url,
        '--json',
        'tokens',
        'create',
        'dash',
        '--role',
        'reader',
        '--runs',
        '*',
        '--expires',
        '2099-01-01T00:00:00Z',
      ],
      { TRAJGATE_TOKEN: ADMIN },
    );
    assert.equal(asJson.code, 0, asJson.stderr);
    const reader = JSON.parse(asJson.stdout) as CreatedToken;
    assert.equal(reader.role, 'reader');
    assert.equal(reader.expiresAt, '2099-01-01T00:00:00.000Z');
    assert.ok(reader.token.length >= 32);

    const ls = await trajgate([...url, '--token', ADMIN, 'tokens', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    const lines = ls.stdout.trim().split('\n');
    assert.match(lines[0], /^id\s+name\s+role\s+runs\s+expires\s+revoked$/);
    assert.match(ls.stdout, /tok_[0-9a-f]{16}\s+ci\s+writer\s+team-a-\*,other\s+never/);
    assert.match(ls.stdout, /dash\s+reader\s+\*\s+2099-01-01T00:00:00.000Z/);
    assert.equal(ls.stdout.includes(secret), false);

    // The writer token works for what a writer may do, and the server's refusal code is printed otherwise.
    const allowed = await trajgate([...url, '--token', secret, '--json', 'runs', 'ls']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.deepEqual(JSON.parse(allowed.stdout), []);
    const forbidden = await trajgate([...url, '--token', secret, 'tokens', 'ls']);
    assert.equal(forbidden.code, 1);
    assert.match(forbidden.stderr, /^trajgate: forbidden: /);
    assert.equal(forbidden.stderr.includes(secret), false);
    const anonymous = await trajgate([...url, 'runs', 'ls']);
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stderr, /^trajgate: unauthenticated: .*--token/);
    const badRole = await trajgate([
      ...url,
      '--token',
      ADMIN,
      'tokens',
      'create',
      'x',
      '--role',
      'boss',
      '--runs',
      '*',
    ]);
    assert.equal(badRole.code, 2);

    const id = (
      JSON.parse((await trajgate([...url, '--token', ADMIN, '--json', 'tokens', 'ls'])).stdout) as Token[]
    ).find((t) => t.name === 'ci')?.id;
    assert.ok(id);
    const revoke = await trajgate([...url, '--token', ADMIN, 'tokens', 'revoke', id]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stdout, new RegExp(`revoked ${id} 'ci'`));
    const afterRevoke = await trajgate([...url, '--token', secret, 'runs', 'ls']);
    assert.equal(afterRevoke.code, 1);
    assert.match(afterRevoke.stderr, /unauthenticated/);

    const audit = await trajgate([...url, '--token', ADMIN, 'audit']);
    assert.equal(audit.code, 0, audit.stderr);
    assert.match(audit.stdout, /^id\s+at\s+actor\s+action\s+run\s+step$/m);
    assert.deepEqual(
      [...audit.stdout.matchAll(/admin-env\s+(token\.\w+)/g)].map((m) => m[1]),
      ['token.create', 'token.create', 'token.revoke'],
    );
    const page = await trajgate([...url, '--token', ADMIN, 'audit', '--limit', '1', '--since', '2000-01-01T00:00:00Z']);
    assert.equal(page.code, 0, page.stderr);
    assert.equal(page.stdout.trim().split('\n').length, 2);
    assert.match(page.stderr, /more entries: --after 1/);
    const filtered = await trajgate([...url, '--token', ADMIN, '--json', 'audit', '--run', 'team-a-1']);
    assert.deepEqual(JSON.parse(filtered.stdout), { items: [], next: null });
    assert.equal((await trajgate([...url, '--token', ADMIN, 'audit', '--limit', '0'])).code, 2);
  });
});
