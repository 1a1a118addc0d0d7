import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { startTestServer, testEnv } from './helpers/gateway.js';
import { waitFor, within } from './helpers/wait.js';

const root = path.resolve(import.meta.dirname, '..');

/**
 * A checkpoint body of ~4 MB and an upload that sends its first 3 MiB, then nothing: more than one 2 MiB
 * slab of the ingest pipeline, so a write has staged a file by then (a slab is written once full).
 */
function stalledUpload(port: number, run: string): { socket: net.Socket; response: Promise<string> } {
  const body = encodeSafetensors([
    { name: 'w', dtype: 'F32', shape: [1_000_000], data: new Uint8Array(new Float32Array(1_000_000).buffer) },
  ]);
  const socket = net.connect(port, '127.0.0.1');
  socket.write(
    `PUT /v1/runs/${run}/checkpoints/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Content-Type: application/vnd.safetensors\r\nContent-Length: ${body.byteLength}\r\n\r\n`,
  );
  socket.write(body.subarray(0, 3 * 1024 * 1024));
  let received = '';
  socket.on('data', (d: Buffer) => {
    received += d.toString('latin1');
  });
  const response = new Promise<string>((resolve) => {
    socket.on('close', () => resolve(received));
    socket.on('error', () => undefined);
  });
  return { socket, response };
}

async function stagedFiles(dataDir: string): Promise<string[]> {
  try {
    return await readdir(path.join(dataDir, 'blobs', '.staging'));
  } catch {
    return [];
  }
}

describe('timeouts and shutdown', () => {
  it('abandons an upload whose client stops sending (408) and leaves nothing staged', async () => {
    const server = await startTestServer({ TRAJGATE_UPLOAD_IDLE_S: '1' });
    after(() => server.close());
    const { port } = new URL(server.url);
    const upload = stalledUpload(Number(port), 'idle');
    await waitFor(async () => (await stagedFiles(server.dataDir)).length > 0, { what: 'the upload to be staged' });
    const answer = await within(upload.response, { what: 'the 408 answer', timeoutMs: 15_000 });
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.match(answer, /request_timeout/);
    await waitFor(async () => (await stagedFiles(server.dataDir)).length === 0, { what: 'the staged file to go' });
    assert.equal((await fetch(`${server.url}/v1/runs/idle/checkpoints/1`)).status, 404);
  });

  it('reports not ready at once on close, and cuts a stalled upload after the grace period', async () => {
    const server = await startTestServer({ TRAJGATE_UPLOAD_IDLE_S: '0' });
    const { port } = new URL(server.url);
    const upload = stalledUpload(Number(port), 'stalled');
    await waitFor(async () => (await stagedFiles(server.dataDir)).length > 0, { what: 'the upload to be staged' });
    const closing = server.close(300);
    assert.equal((await server.context.readiness()).shutdown, 'shutting down');
    await within(closing, { what: 'close() to end after the grace period', timeoutMs: 15_000 });
    await upload.response;
    assert.deepEqual(await stagedFiles(server.dataDir), [], 'the cut upload left nothing staged');
  });

  it('exits 0 on SIGTERM while a client holds an upload open without sending', async () => {
    const { env, dataDir } = await testEnv({ TRAJGATE_SHUTDOWN_GRACE_S: '1', TRAJGATE_LOG_LEVEL: 'info' });
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/main.ts')], {
      cwd: root,
      env: { ...process.env, ...env, NODE_TEST_CONTEXT: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    after(() => child.kill('SIGKILL'));
    let log = '';
    child.stdout!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    const url = await waitFor(() => /"url":"(http:[^"]+)"/.exec(log)?.[1], {
      what: 'the gateway to listen',
      timeoutMs: 30_000,
    });
    const upload = stalledUpload(Number(new URL(url).port), 'sigterm');
    await waitFor(async () => (await stagedFiles(dataDir)).length > 0, { what: 'the upload to be staged' });
    const exited = once(child, 'exit');
    const signalled = performance.now();
    child.kill('SIGTERM');
    const [code] = (await within(exited, { what: 'the process to exit', timeoutMs: 20_000 })) as [number | null];
    const seconds = (performance.now() - signalled) / 1000;
    assert.equal(code, 0, log);
    await upload.response;
    assert.deepEqual(await stagedFiles(dataDir), [], 'the cut upload left nothing staged');
    assert.match(log, /shutting down/);
    process.stdout.write(`# SIGTERM with a stalled upload: exited 0 after ${seconds.toFixed(2)} s (grace 1 s)\n`);
  });
});
