import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { startTestServer } from './helpers/gateway.js';

const root = path.resolve(import.meta.dirname, '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

/**
 * Runs the built `trajgate` binary (dist/cli/main.js, what `npm run build` produces and `bin` points at).
 * Asynchronously: the gateway it talks to runs in this process.
 */
function trajgate(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(root, 'dist/cli/main.js'), ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('trajgate CLI (built binary)', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let dir: string;
  before(async () => {
    // The gateway's build resolves @trajgate/sdk through its compiled package, so the SDK builds first.
    for (const project of ['packages/sdk/tsconfig.build.json', 'tsconfig.build.json']) {
      const build = spawnSync(process.execPath, [tsc, '-p', path.join(root, project)], { encoding: 'utf8' });
      assert.equal(build.status, 0, `build of ${project} failed:\n${build.stdout}${build.stderr}`);
    }
    server = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-cli-'));
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads with a progress display, lists as JSON, downloads and verifies', async () => {
    const file = path.join(dir, 'model.safetensors');
    const w = new Float32Array(200_000).map((_, i) => Math.sin(i));
    await writeFile(
      file,
      encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [200_000], data: new Uint8Array(w.buffer) }]),
    );
    const upload = await trajgate(['checkpoints', 'upload', 'cli-run', '100', file], { TRAJGATE_URL: server.url });
    assert.equal(upload.code, 0, upload.stderr);
    assert.match(upload.stderr, /upload \[.*\] 100% 800\d+\/800\d+ bytes/);
    assert.match(upload.stdout, /step 100: kept/);

    const ls = await trajgate(['--url', server.url, '--json', 'checkpoints', 'ls', 'cli-run']);
    assert.equal(ls.code, 0, ls.stderr);
    const items = JSON.parse(ls.stdout) as { step: number; status: string }[];
    assert.deepEqual(
      items.map((c) => [c.step, c.status]),
      [[100, 'kept']],
    );

    const table = await trajgate(['--url', server.url, 'checkpoints', 'ls', 'cli-run']);
    assert.match(table.stdout, /^step\s+status\s+classes/);

    const out = path.join(dir, 'back.safetensors');
    const download = await trajgate(['--url', server.url, 'checkpoints', 'download', 'cli-run', '100', out]);
    assert.equal(download.code, 0, download.stderr);
    assert.match(download.stdout, /verified/);
  });

  it('says what is wrong in one line with a meaningful exit code', async () => {
    const port = await closedPort();
    const unreachable = await trajgate(['--url', `http://127.0.0.1:${port}`, 'runs', 'ls']);
    assert.equal(unreachable.code, 3);
    assert.equal(unreachable.stderr.trim().split('\n').length, 1);
    assert.match(unreachable.stderr, new RegExp(`cannot reach trajgate at http://127.0.0.1:${port}: .*ECONNREFUSED`));

    const refused = await trajgate(['--url', server.url, 'runs', 'show', 'no-such-run']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /run_not_found/);

    const usage = await trajgate(['--url', server.url, 'checkpoints', 'pin', 'cli-run', 'abc']);
    assert.equal(usage.code, 2);
  });
});

describe('trajgate CLI from a checkout (bin/trajgate.js, nothing built)', () => {
  it('runs from the TypeScript sources, as `npx trajgate` does after `npm ci`', async () => {
    const result = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [path.join(root, 'bin/trajgate.js'), '--help'], { cwd: os.tmpdir() }, (err, stdout) =>
        resolve({ code: err ? -1 : 0, stdout }),
      );
    });
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage: trajgate/);
    assert.match(result.stdout, /checkpoints/);
  });
});
