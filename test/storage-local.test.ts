import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { createBlobStore, parseBlobUrl } from '../src/storage/factory.js';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';
import { describeBlobStoreContract } from './helpers/blob-store-contract.js';

const S3_SETTINGS = { region: 'us-east-1', partSizeBytes: 5 * 1024 * 1024, queueSize: 4 };

async function tempRoot(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'trajgate-blobs-'));
}

describeBlobStoreContract('local directory', async () => {
  const root = await tempRoot();
  const store = new LocalBlobStore(path.join(root, 'blobs'));
  return {
    store,
    cleanup: () => rm(root, { recursive: true, force: true }),
    async breakWrites(key) {
      // A file where the key's parent directory must go: the rename into place fails (chmod would not stop root).
      const parent = path.join(root, 'blobs', path.dirname(key));
      await mkdir(path.dirname(parent), { recursive: true });
      await writeFile(parent, 'not a directory');
      return store;
    },
  };
});

describe('LocalBlobStore', () => {
  it('rejects keys that could leave the root', async () => {
    const root = await tempRoot();
    try {
      const store = new LocalBlobStore(root);
      for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', '', 'a/', '.staging/x', 'a\\..\\b']) {
        await assert.rejects(() => store.putSmall(key, 'x'), /invalid blob key/, key);
        await assert.rejects(() => store.head(key), /invalid blob key/, key);
        assert.throws(() => store.createWriter(key), /invalid blob key/, key);
      }
      assert.deepEqual(await readdir(root), []);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('keeps uncommitted bytes in .staging and collects only old leftovers', async () => {
    const root = await tempRoot();
    try {
      const store = new LocalBlobStore(root);
      const crashed = store.createWriter('runs/r/checkpoints/1.bin');
      await crashed.write(new Uint8Array([1, 2, 3]));
      const recent = store.createWriter('runs/r/checkpoints/2.bin');
      await recent.write(new Uint8Array([4]));

      const staging = path.join(root, '.staging');
      const [first] = (await readdir(staging)).sort();
      const old = new Date(Date.now() - 3_600_000);
      const stale = await readdir(staging);
      assert.equal(stale.length, 2);
      await utimes(path.join(staging, first), old, old);

      assert.equal(await store.collectStaging(60_000), 1);
      assert.equal((await readdir(staging)).length, 1);
      assert.deepEqual(await readdir(root), ['.staging']);
      await crashed.abort();
      await recent.abort();
      assert.deepEqual(await readdir(staging), []);
      assert.equal(await store.collectStaging(0), 0);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('lists in byte order across directory boundaries', async () => {
    const root = await tempRoot();
    try {
      const store = new LocalBlobStore(root);
      for (const key of ['a0', 'a/1', 'a-1', 'a.x/1']) await store.putSmall(key, key);
      const keys: string[] = [];
      for await (const info of store.list('a')) keys.push(info.key);
      assert.deepEqual(keys, ['a-1', 'a.x/1', 'a/1', 'a0']);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('answers 0 from collectStaging before anything was written', async () => {
    const root = await tempRoot();
    try {
      assert.equal(await new LocalBlobStore(path.join(root, 'none')).collectStaging(0), 0);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('parseBlobUrl / createBlobStore', () => {
  it('parses s3 URLs and normalises the prefix', () => {
    assert.deepEqual(parseBlobUrl('s3://bucket'), { kind: 's3', bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseBlobUrl('s3://bucket/'), { kind: 's3', bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseBlobUrl('s3://bucket/trajgate'), { kind: 's3', bucket: 'bucket', prefix: 'trajgate/' });
    assert.deepEqual(parseBlobUrl('s3://bucket/a/b/'), { kind: 's3', bucket: 'bucket', prefix: 'a/b/' });
    assert.throws(() => parseBlobUrl('s3://'), /s3:\/\/bucket/);
  });

  it('parses file URLs and plain paths', () => {
    const dir = path.join(os.tmpdir(), 'blobs dir');
    assert.deepEqual(parseBlobUrl(pathToFileURL(dir).href), { kind: 'local', root: dir });
    assert.deepEqual(parseBlobUrl(dir), { kind: 'local', root: dir });
    assert.deepEqual(parseBlobUrl('relative/blobs'), { kind: 'local', root: path.resolve('relative/blobs') });
  });

  it('rejects other schemes, naming the supported ones', () => {
    for (const url of ['http://example.com/x', 'gs://bucket/x', 'sqlite:///x.db']) {
      assert.throws(() => parseBlobUrl(url), /s3:\/\/bucket\/prefix, file:\/\/\/absolute\/dir/);
    }
  });

  it('creates the matching backend', async () => {
    const local = await createBlobStore({ blobUrl: '/tmp/trajgate-blobs', s3: S3_SETTINGS });
    assert.ok(local instanceof LocalBlobStore);
    assert.equal(local.description, 'local:/tmp/trajgate-blobs');
    const s3 = await createBlobStore({ blobUrl: 's3://bucket/pre', s3: S3_SETTINGS });
    assert.equal(s3.description, 's3://bucket/pre/');
    await s3.close();
  });
});
