import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isAppError } from '../src/errors.js';
import type { BlobStore } from '../src/storage/blob-store.js';
import { createBlobStore } from '../src/storage/factory.js';
import { S3BlobStore } from '../src/storage/s3-blob-store.js';
import { describeBlobStoreContract, readAll } from './helpers/blob-store-contract.js';
import { S3RVER_CREDENTIALS, startS3rver, type RunningS3rver } from './helpers/s3rver.js';

const MIN_PART_SIZE = 5 * 1024 * 1024;

let server: RunningS3rver;
let stores = 0;

before(async () => {
  server = await startS3rver();
});

after(async () => {
  await server.close();
});

function s3Store(endpoint: string, bucket: string, prefix: string): S3BlobStore {
  return new S3BlobStore({
    bucket,
    prefix,
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    partSizeBytes: MIN_PART_SIZE,
  });
}

/** An endpoint where nothing listens. */
async function deadEndpoint(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return `http://127.0.0.1:${address.port}`;
}

function isStorageUnavailable(err: unknown): boolean {
  return isAppError(err) && err.code === 'storage_unavailable';
}

// Each test gets its own prefix in the one bucket, so "the whole store" is that prefix.
describeBlobStoreContract('S3 (s3rver)', async () => {
  const store = s3Store(server.endpoint, server.bucket, `contract-${++stores}/`);
  return {
    store,
    cleanup: () => store.close(),
    breakWrites: async () => s3Store(await deadEndpoint(), server.bucket, 'dead/'),
  };
});

describe('S3BlobStore', () => {
  it('maps an unreachable server to storage_unavailable for every call', async () => {
    const store = s3Store(await deadEndpoint(), server.bucket, '');
    try {
      await assert.rejects(() => store.ping(), isStorageUnavailable);
      await assert.rejects(() => store.get('k'), isStorageUnavailable);
      await assert.rejects(() => store.head('k'), isStorageUnavailable);
      await assert.rejects(() => store.delete('k'), isStorageUnavailable);
      await assert.rejects(async () => {
        for await (const info of store.list('')) assert.fail(`unexpected ${info.key}`);
      }, isStorageUnavailable);
      await assert.rejects(() => store.collectStaging(0), isStorageUnavailable);
    } finally {
      await store.close();
    }
  });

  it('rejects the write or the commit when the server goes away mid-upload', async () => {
    const own = await startS3rver('mid-write');
    const store = s3Store(own.endpoint, own.bucket, '');
    try {
      const writer = store.createWriter('k');
      const chunk = new Uint8Array(64 * 1024);
      for (let i = 0; i < 96; i++) await writer.write(chunk); // 6 MiB: the first part is under way
      await own.close();
      await assert.rejects(async () => {
        for (let i = 0; i < 16; i++) await writer.write(chunk);
        await writer.commit();
      }, isStorageUnavailable);
      await writer.abort();
    } finally {
      await store.close();
    }
  });

  it('maps a missing bucket to storage_unavailable, not to an empty store', async () => {
    const store = s3Store(server.endpoint, 'no-such-bucket', '');
    try {
      await assert.rejects(() => store.ping(), isStorageUnavailable);
      await assert.rejects(() => store.putSmall('k', 'v'), isStorageUnavailable);
    } finally {
      await store.close();
    }
  });

  it('collects nothing where ListMultipartUploads is not implemented', async () => {
    const store = s3Store(server.endpoint, server.bucket, 'collect/');
    try {
      assert.equal(await store.collectStaging(0), 0);
    } finally {
      await store.close();
    }
  });

  it('works with an empty prefix, built by the factory from an s3:// URL', async () => {
    const own = await startS3rver('bare-bucket');
    let store: BlobStore | undefined;
    try {
      store = await createBlobStore({
        blobUrl: `s3://${own.bucket}`,
        s3: {
          endpoint: own.endpoint,
          forcePathStyle: true,
          region: 'us-east-1',
          partSizeBytes: MIN_PART_SIZE,
          queueSize: 2,
          ...S3RVER_CREDENTIALS,
        },
      });
      assert.equal(store.description, `s3://${own.bucket}/`);
      await store.putSmall('runs/r/x.json', '{}');
      const keys: string[] = [];
      for await (const info of store.list('')) keys.push(info.key);
      assert.deepEqual(keys, ['runs/r/x.json']);
      const read = await store.get('runs/r/x.json');
      assert.ok(read);
      assert.equal((await readAll(read.body)).toString(), '{}');
    } finally {
      await store?.close();
      await own.close();
    }
  });
});
