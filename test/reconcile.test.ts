import assert from 'node:assert/strict';
import { readdir, utimes } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { pino } from 'pino';
import request from 'supertest';
import { CheckpointIngest } from '../src/ingest/ingest-checkpoint.js';
import { collectDiscarded } from '../src/retention/collector.js';
import { reconcile } from '../src/retention/reconcile.js';
import { checkpointDataKey, manifestKeyFor } from '../src/storage/keys.js';
import { createTestGateway, listAllBlobs, type TestGateway } from './helpers/gateway.js';
import { S3RVER_CREDENTIALS, startS3rver, type RunningS3rver } from './helpers/s3rver.js';

const quiet = pino({ level: 'silent' });
const MINUTE = 60_000;

function body(seed: number): Buffer {
  const w = new Float32Array(256).map((_, i) => Math.sin(i * seed));
  return encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [256], data: new Uint8Array(w.buffer) }]);
}

/**
 * What a crash leaves between the steps of an upload's commit, made by hand: a blob and its manifest
 * committed with no catalog row, and a staged write that never finished.
 */
async function crashLeftovers(gw: TestGateway, run: string, step: number, uploadId: string): Promise<string[]> {
  const key = checkpointDataKey(run, step, uploadId, 'safetensors');
  const writer = gw.context.blobs.createWriter(key);
  await writer.write(body(step));
  await writer.commit();
  await gw.context.blobs.putSmall(manifestKeyFor(key), '{}', 'application/json');
  return [key, manifestKeyFor(key)];
}

async function uploadTwo(gw: TestGateway, run: string): Promise<void> {
  for (const step of [10, 20]) {
    await request(gw.app)
      .put(`/v1/runs/${run}/checkpoints/${step}`)
      .set('content-type', 'application/vnd.safetensors')
      .send(body(step))
      .expect(201);
  }
}

describe('reconciliation after a crash', () => {
  it('removes orphaned blobs and stale staged writes, keeps committed checkpoints and young leftovers', async () => {
    const gw = await createTestGateway();
    after(() => gw.close());
    await uploadTwo(gw, 'local');
    const committed = await listAllBlobs(gw.context);
    const orphan = await crashLeftovers(gw, 'local', 30, 'lostupload0001');
    const otherStep = await crashLeftovers(gw, 'local', 10, 'loserupload002'); // a second upload of step 10
    const staged = gw.context.blobs.createWriter(checkpointDataKey('local', 40, 'stagedupload03', 'safetensors'));
    await staged.write(body(40));
    const stagingDir = path.join(gw.dataDir, 'blobs', '.staging');
    const old = new Date(Date.now() - 10 * MINUTE);
    for (const name of await readdir(stagingDir)) await utimes(path.join(stagingDir, name), old, old);

    const young = await reconcile(gw.context.catalog, gw.context.blobs, quiet, 5 * MINUTE);
    assert.equal(young.orphans, 0, 'blobs younger than the stale age may be an upload between blob and row');
    assert.equal(young.staged, 1, 'the staged write took no byte for 10 minutes');

    const later = new Date(Date.now() + 10 * MINUTE);
    const found = await reconcile(gw.context.catalog, gw.context.blobs, quiet, 5 * MINUTE, later);
    assert.equal(found.orphans, 4);
    assert.deepEqual((await listAllBlobs(gw.context)).sort(), committed.sort());
    for (const key of [...orphan, ...otherStep]) assert.ok(!(await gw.context.blobs.head(key)), key);
    for (const step of [10, 20]) {
      const blob = await gw.context.blobs.get((await gw.context.catalog.getCheckpoint('local', step))!.blobKey);
      const chunks: Buffer[] = [];
      for await (const chunk of blob!.body) chunks.push(chunk as Buffer);
      assert.deepEqual(Buffer.concat(chunks), body(step));
    }
    const again = await reconcile(gw.context.catalog, gw.context.blobs, quiet, 5 * MINUTE, later);
    assert.deepEqual([again.orphans, again.staged], [0, 0], 'a second pass finds nothing');
  });

  describe('with S3', () => {
    let s3: RunningS3rver;
    before(async () => {
      s3 = await startS3rver('reconcile');
    });
    after(() => s3.close());

    it('removes orphaned objects and keeps the committed ones', async () => {
      const gw = await createTestGateway({
        TRAJGATE_BLOB_URL: 's3://reconcile/prefix',
        TRAJGATE_S3_ENDPOINT: s3.endpoint,
        TRAJGATE_S3_FORCE_PATH_STYLE: 'true',
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      });
      after(() => gw.close());
      await uploadTwo(gw, 's3run');
      const committed = await listAllBlobs(gw.context);
      await crashLeftovers(gw, 's3run', 30, 'lostupload0001');
      const later = new Date(Date.now() + 10 * MINUTE);
      const found = await reconcile(gw.context.catalog, gw.context.blobs, quiet, 5 * MINUTE, later);
      assert.equal(found.orphans, 2);
      assert.deepEqual((await listAllBlobs(gw.context)).sort(), committed.sort());
    });
  });
});

describe('what a crash or a race between the collector and a decision may leave', () => {
  it('a retried upload finishes the work a crash cut after the catalog row: indicators, estimate, the pin', async () => {
    const gw = await createTestGateway();
    after(() => gw.close());
    await request(gw.app).put('/v1/runs/retry').send({}).expect(201);
    const { config, catalog, blobs, logger } = gw.context;
    // The commit alone, as if the process died before the run-lock work.
    const ingest = new CheckpointIngest(blobs, catalog, config.limits, logger);
    async function* one(b: Buffer) {
      yield new Uint8Array(b);
    }
    await ingest.ingest({ run: 'retry', step: 5, body: one(body(5)), contentType: 'application/vnd.safetensors' });
    assert.equal((await catalog.getCheckpoint('retry', 5))?.indicators, null);
    const res = await request(gw.app)
      .put('/v1/runs/retry/checkpoints/5?pin=true')
      .set('content-type', 'application/vnd.safetensors')
      .send(body(5))
      .expect(200);
    assert.equal(res.body.pinned, true, 'the retry applies the pin');
    assert.notEqual(res.body.indicators, null, 'and computes the indicators');
    assert.ok(res.body.decision, 'and decides');
  });

  it('the collector never deletes the bytes of a checkpoint kept again, and never leaves a kept one without them', async () => {
    const gw = await createTestGateway();
    after(() => gw.close());
    await request(gw.app)
      .put('/v1/runs/race/policy')
      .send({ policy: { budget: { maxCheckpoints: 1 }, latest: 1, graceSeconds: 0 } })
      .expect(200);
    await uploadTwo(gw, 'race');
    const { catalog, blobs } = gw.context;
    const discarded = (await catalog.getCheckpoint('race', 10))!;
    assert.equal(discarded.status, 'discarded');
    // A decision keeps it again between the collector's listing and its deletion.
    await catalog.applyRetention('race', [
      { step: 10, status: 'kept', classes: ['pinned'], reasons: ['pinned'], discardedAt: null, deleteAfter: null },
    ]);
    assert.equal(await catalog.markBlobDeleted('race', 10), false, 'a kept checkpoint cannot be claimed');
    assert.equal(await collectDiscarded(catalog, blobs, quiet), 0);
    assert.ok(await blobs.head(discarded.blobKey), 'its bytes are still there');

    // Claimed, then the process dies before the bytes go: unavailable, and reconciliation removes the bytes.
    await catalog.applyRetention('race', [
      { step: 10, status: 'discarded', classes: [], reasons: ['evicted'], discardedAt: null, deleteAfter: null },
    ]);
    assert.equal(await catalog.markBlobDeleted('race', 10), true);
    assert.equal((await catalog.getCheckpoint('race', 10))?.contentAvailable, false);
    const later = new Date(Date.now() + 10 * MINUTE);
    const found = await reconcile(catalog, blobs, quiet, 5 * MINUTE, later);
    assert.equal(found.orphans, 2, "the claimed checkpoint's blob and manifest");
    assert.ok(!(await blobs.head(discarded.blobKey)));
  });
});
