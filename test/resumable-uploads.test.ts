import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TrajgateClient } from '@trajgate/sdk';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import * as tus from 'tus-js-client';
import { cuttingProxy } from '../scripts/lib/cutting-proxy.js';
import { startGatewayProcess } from '../scripts/lib/gateway-process.js';
import { startTestServer } from './helpers/gateway.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;
type CheckpointList = { items: { sha256: string }[] };
type ErrorJson = { error: { code: string; message: string } };

/** A safetensors checkpoint of about `mib` MiB: one F32 tensor of smooth, step-dependent values. */
function checkpoint(mib: number, seed: number): Buffer {
  const n = (mib * 1024 * 1024) / 4;
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.sin(seed + i * 1e-3) * 0.1;
  const bytes = encodeSafetensors([
    { name: 'layer.weight', dtype: 'F32', shape: [n / 256, 256], data: new Uint8Array(w.buffer) },
  ]);
  return Buffer.from(bytes);
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Uploads `body` with tus-js-client as it comes (its Node HTTP stack); resolves with the last response's headers. */
function tusUpload(
  endpoint: string,
  body: Buffer,
  options: Partial<tus.UploadOptions> = {},
): Promise<{ status: string | undefined; url: string | null }> {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(body, {
      endpoint,
      retryDelays: [0, 100, 300, 500, 1000, 1000, 2000, 2000, 3000, 3000, 5000, 5000],
      metadata: { filetype: 'application/vnd.safetensors' },
      onError: reject,
      onSuccess: (payload) => {
        resolve({ status: payload.lastResponse.getHeader('x-trajgate-checkpoint-status'), url: upload.url });
      },
      ...options,
    });
    upload.start();
  });
}

async function tusFetch(url: string, init: RequestInit & { headers?: Record<string, string> } = {}) {
  return fetch(url, { ...init, headers: { 'Tus-Resumable': '1.0.0', ...init.headers } });
}

async function create(server: Server, run: string, step: number, length: number): Promise<string> {
  const res = await tusFetch(`${server.url}/v1/runs/${run}/checkpoints/${step}/uploads`, {
    method: 'POST',
    headers: { 'Upload-Length': String(length) },
  });
  assert.equal(res.status, 201, await res.text());
  return new URL(res.headers.get('location') ?? '', server.url).href;
}

describe('resumable uploads (tus 1.0)', () => {
  let server: Server;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });

  it('tus-js-client completes a 32 MiB upload cut 3 times, byte-exact, one checkpoint, the session gone', async () => {
    const body = checkpoint(32, 1);
    const proxy = await cuttingProxy(server.url, { afterBytes: 7 * 1024 * 1024, cuts: 3 });
    try {
      const result = await tusUpload(`${proxy.url}/v1/runs/tus-cut/checkpoints/10/uploads`, body);
      assert.equal(proxy.cuts(), 3);
      assert.equal(result.status, 'created');
      const list = (await (await fetch(`${server.url}/v1/runs/tus-cut/checkpoints`)).json()) as CheckpointList;
      assert.equal(list.items.length, 1);
      assert.equal(list.items[0].sha256, sha(body));
      const content = Buffer.from(
        await (await fetch(`${server.url}/v1/runs/tus-cut/checkpoints/10/content`)).arrayBuffer(),
      );
      assert.equal(content.length, body.length);
      assert.equal(sha(content), sha(body));
      const head = await tusFetch(result.url ?? '', { method: 'HEAD' });
      assert.equal(head.status, 404);
    } finally {
      await proxy.close();
    }
  });

  it('the SDK resumes from the server offset after each cut: a 24 MiB file cut 3 times, sent about once', async () => {
    const body = checkpoint(24, 4);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tg-sdk-tus-'));
    const file = path.join(dir, 'model.safetensors');
    await writeFile(file, body);
    const proxy = await cuttingProxy(server.url, { afterBytes: 7 * 1024 * 1024, cuts: 3 });
    try {
      const client = new TrajgateClient({ url: proxy.url, retry: { retries: 5, baseDelayMs: 20 } });
      const progress: number[] = [];
      const result = await client.uploadCheckpoint('sdk-tus', 5, file, {
        resumableAbove: 0,
        onProgress: (sent) => progress.push(sent),
      });
      assert.equal(proxy.cuts(), 3);
      assert.equal(result.sha256, sha(body));
      assert.equal(result.step, 5);
      assert.equal(result.decision, null);
      // Each attempt after a cut starts where the server stood, not at byte 0.
      const restarts = progress.filter((v, i) => i > 0 && v < progress[i - 1]);
      assert.ok(restarts.length >= 1 && restarts.every((v) => v >= 4 * 1024 * 1024), `restarts at ${restarts}`);
      assert.equal(progress.at(-1), body.length);
      const content = Buffer.from(
        await (await fetch(`${server.url}/v1/runs/sdk-tus/checkpoints/5/content`)).arrayBuffer(),
      );
      assert.equal(sha(content), sha(body));
      // The threshold: below it, one request (whose answer carries the retention decision).
      const smallFile = path.join(dir, 'small.safetensors');
      await writeFile(smallFile, checkpoint(1, 5));
      const small = await client.uploadCheckpoint('sdk-tus-small', 6, smallFile);
      assert.notEqual(small.decision, null);
    } finally {
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the same bytes again are unchanged; other bytes for the step are checkpoint_conflict', async () => {
    const body = checkpoint(1, 2);
    assert.equal((await tusUpload(`${server.url}/v1/runs/tus-dup/checkpoints/1/uploads`, body)).status, 'created');
    assert.equal((await tusUpload(`${server.url}/v1/runs/tus-dup/checkpoints/1/uploads`, body)).status, 'unchanged');
    const other = checkpoint(1, 3);
    const url = await create(server, 'tus-dup', 1, other.length);
    const res = await tusFetch(url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' },
      body: other,
    });
    assert.equal(res.status, 409);
    assert.equal(((await res.json()) as ErrorJson).error.code, 'checkpoint_conflict');
  });

  it('OPTIONS advertises the protocol; wrong version, type, offset, unknown and terminated uploads are refused', async () => {
    const base = `${server.url}/v1/runs/tus-proto/checkpoints/3/uploads`;
    const options = await fetch(base, { method: 'OPTIONS' });
    assert.equal(options.status, 204);
    assert.equal(options.headers.get('tus-version'), '1.0.0');
    assert.equal(options.headers.get('tus-extension'), 'creation,termination,expiration');
    assert.ok(Number(options.headers.get('tus-max-size')) > 0);

    const wrongVersion = await fetch(base, {
      method: 'POST',
      headers: { 'Tus-Resumable': '0.2.2', 'Upload-Length': '10' },
    });
    assert.equal(wrongVersion.status, 412);
    assert.equal(wrongVersion.headers.get('tus-resumable'), '1.0.0');
    assert.equal(((await wrongVersion.json()) as ErrorJson).error.code, 'tus_version_unsupported');

    const noLength = await tusFetch(base, { method: 'POST' });
    assert.equal(noLength.status, 400);
    assert.match(((await noLength.json()) as ErrorJson).error.message, /Upload-Length/);

    const body = checkpoint(1, 4);
    const url = await create(server, 'tus-proto', 3, body.length);
    const created = await tusFetch(url, { method: 'HEAD' });
    assert.equal(created.headers.get('upload-offset'), '0');
    assert.equal(created.headers.get('upload-length'), String(body.length));
    assert.ok(Date.parse(created.headers.get('upload-expires') ?? '') > Date.now());

    const wrongType = await tusFetch(url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream', 'Upload-Offset': '0' },
      body: body.subarray(0, 10),
    });
    assert.equal(wrongType.status, 415);

    const first = await tusFetch(url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' },
      body: body.subarray(0, 1000),
    });
    assert.equal(first.status, 204);
    assert.equal(first.headers.get('upload-offset'), '1000');
    assert.ok(first.headers.get('upload-expires'));

    const wrongOffset = await tusFetch(url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '500' },
      body: body.subarray(500, 1000),
    });
    assert.equal(wrongOffset.status, 409);
    assert.equal(wrongOffset.headers.get('upload-offset'), '1000');
    assert.equal(((await wrongOffset.json()) as ErrorJson).error.code, 'upload_offset_mismatch');
    assert.equal((await tusFetch(url, { method: 'HEAD' })).headers.get('upload-offset'), '1000');

    const terminated = await tusFetch(url, { method: 'DELETE' });
    assert.equal(terminated.status, 204);
    assert.equal((await tusFetch(url, { method: 'HEAD' })).status, 404);
    const unknown = await tusFetch(`${base}/0123456789abcdef`, { method: 'HEAD' });
    assert.equal(unknown.status, 404);
    assert.equal((await fetch(`${server.url}/v1/runs/tus-proto/checkpoints/3`)).status, 404);
  });

  it('bytes that fail validation fail the PATCH with the catalogue error and end the session', async () => {
    const body = checkpoint(1, 5);
    body.writeUInt32LE(0xffffffff, 0); // a header length beyond the body
    const url = await create(server, 'tus-bad', 1, body.length);
    const res = await tusFetch(url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' },
      body,
    });
    assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
    assert.equal((await tusFetch(url, { method: 'HEAD' })).status, 404);
    assert.equal((await fetch(`${server.url}/v1/runs/tus-bad/checkpoints/1`)).status, 404);
  });

  it('an expired session is 410, and the collector query removes it', async () => {
    const url = await create(server, 'tus-exp', 1, 100);
    const id = new URL(url).pathname.split('/').pop() ?? '';
    const catalog = server.context.catalog;
    await catalog.updateUploadSession(id, { offset: 0, expiresAt: new Date(Date.now() - 1000).toISOString() });
    assert.deepEqual(await catalog.expireUploadSessions(new Date().toISOString(), 10), [id]);
    assert.equal((await tusFetch(url, { method: 'HEAD' })).status, 404);

    const url2 = await create(server, 'tus-exp', 2, 100);
    const id2 = new URL(url2).pathname.split('/').pop() ?? '';
    await catalog.updateUploadSession(id2, { offset: 0, expiresAt: new Date(Date.now() - 1000).toISOString() });
    const gone = await tusFetch(url2, { method: 'HEAD' });
    assert.equal(gone.status, 410);
  });
});

describe('resumable uploads across a gateway restart', () => {
  it('a gateway killed mid-upload and restarted: tus-js-client resumes the same session and commits once', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-tus-restart-'));
    const env = { TRAJGATE_DATA_DIR: dataDir, TRAJGATE_LOG_LEVEL: 'info' };
    let gateway = await startGatewayProcess(env);
    const port = new URL(gateway.url).port;
    try {
      const body = checkpoint(32, 6);
      let killed = false;
      const done = tusUpload(`${gateway.url}/v1/runs/tus-restart/checkpoints/1/uploads`, body, {
        chunkSize: 4 * 1024 * 1024,
        onChunkComplete: (_size, accepted) => {
          if (killed || accepted < 12 * 1024 * 1024) return;
          killed = true;
          const old = gateway;
          void old.kill().then(async () => {
            gateway = await startGatewayProcess({ ...env, PORT: port });
          });
        },
      });
      const result = await done;
      assert.ok(killed, 'the gateway was killed mid-upload');
      assert.equal(result.status, 'created');
      const list = (await (await fetch(`${gateway.url}/v1/runs/tus-restart/checkpoints`)).json()) as CheckpointList;
      assert.equal(list.items.length, 1);
      const content = Buffer.from(
        await (await fetch(`${gateway.url}/v1/runs/tus-restart/checkpoints/1/content`)).arrayBuffer(),
      );
      assert.equal(sha(content), sha(body));
      assert.deepEqual(gateway.errors, []);
    } finally {
      await gateway.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
