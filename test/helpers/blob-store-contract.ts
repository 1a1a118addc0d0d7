import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { isAppError } from '../../src/errors.js';
import type { BlobInfo, BlobStore } from '../../src/storage/blob-store.js';

export interface BlobStoreFixture {
  /** An empty store, private to one test. */
  store: BlobStore;
  cleanup(): Promise<void>;
  /** Returns a store (this one or another) on which committing a write of `key` fails in the backend. */
  breakWrites(key: string): Promise<BlobStore>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

/**
 * The behaviour every `BlobStore` promises (see `storage/blob-store.ts`). `makeStore` is called once per
 * test and must return an empty store; S3 fixtures should use the minimum 5 MiB part size so the 12 MiB
 * write below takes several parts.
 */
export function describeBlobStoreContract(name: string, makeStore: () => Promise<BlobStoreFixture>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let fixture: BlobStoreFixture;
    let store: BlobStore;

    beforeEach(async () => {
      fixture = await makeStore();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    it('keeps a streamed write invisible until commit, then shows the exact bytes', async () => {
      const data = randomBytes(200 * KiB + 17);
      const writer = store.createWriter('runs/r1/checkpoints/0000000001-u.safetensors');
      await writeChunks(writer, data);

      assert.equal(await store.get('runs/r1/checkpoints/0000000001-u.safetensors'), null);
      assert.equal(await store.head('runs/r1/checkpoints/0000000001-u.safetensors'), null);
      assert.deepEqual(await listKeys(store, ''), []);

      const info = await writer.commit();
      assert.equal(info.key, 'runs/r1/checkpoints/0000000001-u.safetensors');
      assert.equal(info.size, data.length);
      assert.ok(info.lastModified instanceof Date);

      const head = await store.head(info.key);
      assert.equal(head?.size, data.length);
      const read = await store.get(info.key);
      assert.ok(read);
      assert.equal(read.size, data.length);
      assert.equal(read.range, undefined);
      assert.ok((await readAll(read.body)).equals(data));
      assert.deepEqual(await listKeys(store, ''), [info.key]);
    });

    it('commits an empty blob', async () => {
      const writer = store.createWriter('empty/blob');
      const info = await writer.commit();
      assert.equal(info.size, 0);
      const read = await store.get('empty/blob');
      assert.ok(read);
      assert.equal(read.size, 0);
      assert.equal((await readAll(read.body)).length, 0);
    });

    it('leaves nothing behind after abort, even after several MiB', async () => {
      const writer = store.createWriter('runs/r1/checkpoints/0000000002-u.bin');
      await writeChunks(writer, randomBytes(6 * MiB + 3));
      await writer.abort();
      await writer.abort();

      assert.equal(await store.head('runs/r1/checkpoints/0000000002-u.bin'), null);
      assert.equal(await store.get('runs/r1/checkpoints/0000000002-u.bin'), null);
      assert.deepEqual(await listAll(store, ''), []);
      await store.collectStaging(0);
      assert.deepEqual(await listAll(store, ''), []);
    });

    it('round-trips a multi-part write byte-identically', async () => {
      const data = randomBytes(12 * MiB + 1234);
      const writer = store.createWriter('big/blob.bin');
      await writeChunks(writer, data);
      const info = await writer.commit();
      assert.equal(info.size, data.length);

      const read = await store.get('big/blob.bin');
      assert.ok(read);
      assert.equal(read.size, data.length);
      assert.equal(sha256(await readAll(read.body)), sha256(data));
      assert.equal((await store.head('big/blob.bin'))?.size, data.length);
    });

    it('writes several buffers in one call, in order (a write-behind batch)', async () => {
      const data = randomBytes(11 * MiB + 5);
      const writer = store.createWriter('batched/blob.bin');
      // Batches of 1000 uneven buffers (one of them empty), as a socket delivers them.
      for (let offset = 0; offset < data.length; ) {
        const batch: Buffer[] = [];
        for (let i = 0; i < 1000 && offset < data.length; i++) {
          const n = i === 3 ? 0 : 1 + ((i * 7919) % (8 * KiB));
          batch.push(data.subarray(offset, offset + n));
          offset += n;
        }
        await writer.write(batch);
      }
      const info = await writer.commit();
      assert.equal(info.size, data.length);
      const read = await store.get('batched/blob.bin');
      assert.ok(read);
      assert.equal(sha256(await readAll(read.body)), sha256(data));
    });

    it('reads inclusive byte ranges and reports the whole size', async () => {
      const data = randomBytes(100 * KiB);
      await store.putSmall('ranged', data);
      const last = data.length - 1;
      const cases = [
        { start: 0, end: 0 },
        { start: 1000, end: 51_199 },
        { start: last, end: last },
        { start: 0, end: last },
      ];
      for (const range of cases) {
        const read = await store.get('ranged', range);
        assert.ok(read, `range ${range.start}-${range.end}`);
        assert.equal(read.size, data.length);
        assert.deepEqual(read.range, range);
        assert.ok((await readAll(read.body)).equals(data.subarray(range.start, range.end + 1)));
      }
    });

    it('answers null for a missing key', async () => {
      assert.equal(await store.get('no/such/key'), null);
      assert.equal(await store.get('no/such/key', { start: 0, end: 9 }), null);
      assert.equal(await store.head('no/such/key'), null);
    });

    it('deletes idempotently', async () => {
      await store.putSmall('to/delete', 'x');
      await store.delete('to/delete');
      await store.delete('to/delete');
      await store.delete('never/existed');
      assert.equal(await store.head('to/delete'), null);
      assert.deepEqual(await listKeys(store, ''), []);
    });

    it('lists by plain string prefix, in lexicographic order, with sizes', async () => {
      // No key with a character below '/' (like 'a-1' vs 'a/1'): s3rver lists those in directory order.
      for (const key of ['ab/1', 'a/2', 'b', 'a/1', 'a0']) await store.putSmall(key, key);
      assert.deepEqual(await listKeys(store, 'a/'), ['a/1', 'a/2']);
      assert.deepEqual(await listKeys(store, 'a'), ['a/1', 'a/2', 'a0', 'ab/1']);
      assert.deepEqual(await listKeys(store, ''), ['a/1', 'a/2', 'a0', 'ab/1', 'b']);
      assert.deepEqual(await listKeys(store, 'ab/'), ['ab/1']);
      assert.deepEqual(await listKeys(store, 'c'), []);
      const [first] = await listAll(store, 'ab/');
      assert.equal(first.size, 4);
      assert.ok(first.lastModified instanceof Date);
    });

    it('lists more than one page of keys', async () => {
      const keys = Array.from({ length: 1100 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      await inParallel(keys, 32, (key) => store.putSmall(key, 'v'));
      const listed = await listKeys(store, 'many/');
      assert.equal(listed.length, keys.length);
      assert.deepEqual(listed, keys);
    });

    it('round-trips putSmall and overwrites', async () => {
      await store.putSmall('runs/r/checkpoints/0000000001-u.json', '{"a":1}', 'application/json');
      const read = await store.get('runs/r/checkpoints/0000000001-u.json');
      assert.ok(read);
      assert.equal((await readAll(read.body)).toString('utf8'), '{"a":1}');

      const bytes = new Uint8Array([1, 2, 3, 250]);
      await store.putSmall('runs/r/checkpoints/0000000001-u.json', bytes);
      const again = await store.get('runs/r/checkpoints/0000000001-u.json');
      assert.ok(again);
      assert.equal(again.size, 4);
      assert.ok((await readAll(again.body)).equals(Buffer.from(bytes)));
    });

    it('pings and collects staging without error when there is nothing to collect', async () => {
      await store.ping();
      assert.equal(typeof (await store.collectStaging(60_000)), 'number');
      assert.ok(store.description.length > 0);
    });

    it('reports a backend failure as storage_unavailable', async () => {
      const key = 'fail/here/blob';
      const broken = await fixture.breakWrites(key);
      const writer = broken.createWriter(key);
      await assert.rejects(
        async () => {
          await writeChunks(writer, randomBytes(100 * KiB));
          await writer.commit();
        },
        (err: unknown) => isAppError(err) && err.code === 'storage_unavailable' && err.status === 503,
      );
      await writer.abort();
      await assert.rejects(
        () => broken.putSmall(key, 'x'),
        (err: unknown) => isAppError(err) && err.code === 'storage_unavailable',
      );
      if (broken !== store) await broken.close();
    });
  });
}

async function writeChunks(writer: { write(chunk: Uint8Array): Promise<void> }, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    await writer.write(data.subarray(offset, offset + CHUNK));
  }
}

export async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function listAll(store: BlobStore, prefix: string): Promise<BlobInfo[]> {
  const out: BlobInfo[] = [];
  for await (const info of store.list(prefix)) out.push(info);
  return out;
}

async function listKeys(store: BlobStore, prefix: string): Promise<string[]> {
  return (await listAll(store, prefix)).map((info) => info.key);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: width }, worker));
}
