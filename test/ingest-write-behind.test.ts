import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WriteBehind } from '../src/ingest/write-behind.js';
import type { BlobWriter } from '../src/storage/blob-store.js';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';

const KiB = 1024;

/** The real writer, with every call's buffer count and byte count recorded. */
function recording(writer: BlobWriter): { writer: BlobWriter; calls: { buffers: number; bytes: number }[] } {
  const calls: { buffers: number; bytes: number }[] = [];
  return {
    calls,
    writer: {
      write(data) {
        const list = Array.isArray(data) ? data : [data];
        calls.push({ buffers: list.length, bytes: list.reduce((n: number, c: Uint8Array) => n + c.byteLength, 0) });
        return writer.write(data);
      },
      commit: () => writer.commit(),
      abort: () => writer.abort(),
    },
  };
}

describe('WriteBehind', () => {
  let root: string;
  let store: LocalBlobStore;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'trajgate-write-behind-'));
    store = new LocalBlobStore(root);
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('writes the pushed bytes in order, in batches of at least batchBytes', async () => {
    const data = randomBytes(1000 * KiB + 3);
    const { writer, calls } = recording(store.createWriter('a/one'));
    const writes = new WriteBehind(writer, { batchBytes: 128 * KiB, maxBufferedBytes: 512 * KiB });
    for (let offset = 0; offset < data.length; offset += 10 * KiB) {
      if (!writes.push(data.subarray(offset, offset + 10 * KiB))) await writes.drained();
    }
    await writes.finish();
    await writer.commit();
    assert.ok((await readFile(path.join(root, 'a/one'))).equals(data));
    assert.equal(writes.bytesWritten, data.length);
    assert.equal(
      calls.reduce((n, c) => n + c.bytes, 0),
      data.length,
    );
    // Every write but the last carries a whole batch: 13 chunks of 10 KiB ≥ 128 KiB.
    for (const call of calls.slice(0, -1)) assert.equal(call.bytes, 13 * 10 * KiB);
    assert.equal(calls.length, Math.ceil(data.length / (130 * KiB)));
  });

  it('asks the caller to wait once more than maxBufferedBytes are unwritten, and lets it go on after', async () => {
    const { writer } = recording(store.createWriter('a/two'));
    const writes = new WriteBehind(writer, { batchBytes: 64 * KiB, maxBufferedBytes: 256 * KiB });
    let accepted = 0;
    while (writes.push(new Uint8Array(64 * KiB))) accepted++;
    // Nothing was written yet (no await happened), so exactly the limit went in before the refusal.
    assert.equal(accepted, 4);
    const refusedAt = writes.bytesWritten;
    await writes.drained();
    assert.ok(writes.bytesWritten > refusedAt, 'drained() waited for a write');
    writes.push(new Uint8Array(1));
    await writes.finish();
    assert.equal((await writer.commit()).size, 5 * 64 * KiB + 1);
  });

  it('reports a failed write from drained() and finish(), and takes nothing after it', async () => {
    // A file where the staging directory must go: the writer's open fails on its first write.
    const broken = await mkdtemp(path.join(os.tmpdir(), 'trajgate-write-behind-broken-'));
    try {
      await writeFile(path.join(broken, '.staging'), 'in the way');
      const writer = new LocalBlobStore(broken).createWriter('a/three');
      const writes = new WriteBehind(writer, { batchBytes: 16 * KiB, maxBufferedBytes: 32 * KiB });
      while (writes.push(new Uint8Array(16 * KiB))) {}
      await assert.rejects(writes.drained(), { code: 'storage_unavailable' });
      assert.equal(writes.push(new Uint8Array(1)), false);
      await assert.rejects(writes.finish(), { code: 'storage_unavailable' });
      await writes.stop();
      await writer.abort();
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });

  it('stop() drops queued batches and waits for the write in flight', async () => {
    const { writer, calls } = recording(store.createWriter('a/four'));
    const writes = new WriteBehind(writer, { batchBytes: 16 * KiB, maxBufferedBytes: 1024 * KiB });
    for (let i = 0; i < 20; i++) writes.push(new Uint8Array(16 * KiB));
    await writes.stop();
    assert.equal(calls.length, 1, 'only the batch already handed to the writer was written');
    await writer.abort();
    assert.equal(await store.head('a/four'), null);
  });
});
