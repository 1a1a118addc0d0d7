import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import request from 'supertest';
import { isAppError } from '../src/errors.js';
import type { BodyAnalysisStart } from '../src/ingest/body-analysis.js';
import { AnalysisWorkers } from '../src/ingest/analysis-worker.js';
import { type PipelineOptions, runIngestPipeline } from '../src/ingest/ingest-pipeline.js';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';
import { LIMITS, chunks, prng } from './helpers/checkpoints.js';
import { createTestGateway } from './helpers/gateway.js';

const KiB = 1024;
/** Small slabs, so a ~1.2 MiB body cycles the ring many times and the receive loop waits for free slabs. */
const SMALL = { slabBytes: 64 * KiB, slabs: 3 };
/** Two workers for the whole file; the five-at-once test leaves three uploads without one. */
const WORKERS = new AnalysisWorkers(2);
const MODES: Record<string, PipelineOptions> = {
  'on the request thread': { ...SMALL, workerAboveBytes: 0, workers: null },
  'on a worker thread': { ...SMALL, workerAboveBytes: 0, workers: WORKERS },
  'with a pool of no workers': { ...SMALL, workerAboveBytes: 0, workers: new AnalysisWorkers(0) },
};

function f32(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function checkpoint(seed: number): Buffer {
  const tensors: TensorData[] = [
    {
      name: 'w',
      dtype: 'F32',
      shape: [300, 1024],
      data: f32(Array.from({ length: 300 * 1024 }, (_, i) => Math.sin(seed + i))),
    },
    { name: 'b', dtype: 'BF16', shape: [1000], data: new Uint8Array(2000) },
    { name: 'n', dtype: 'I64', shape: [3], data: new Uint8Array(24).fill(seed) },
  ];
  return Buffer.from(encodeSafetensors(tensors));
}

function start(body: Uint8Array, overrides: Partial<BodyAnalysisStart> = {}): BodyAnalysisStart {
  return {
    format: 'safetensors',
    step: 7,
    reference: null,
    limits: LIMITS,
    contentLength: body.byteLength,
    ...overrides,
  };
}

async function* cut(body: Uint8Array, seed: number): AsyncGenerator<Uint8Array> {
  // Uneven chunks up to 100 KiB, fresh buffers as a socket gives them.
  for (const chunk of chunks(body, { random: prng(seed), max: 100 * KiB })) yield Buffer.from(chunk);
}

describe('ingest pipeline', () => {
  let root: string;
  let store: LocalBlobStore;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'trajgate-pipeline-'));
    store = new LocalBlobStore(path.join(root, 'blobs'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const staged = async () => readdir(path.join(root, 'blobs', '.staging')).catch(() => []);

  it('gives the same hash, tensor table and summary on either thread, and writes the body exactly', async () => {
    const body = checkpoint(3);
    const outcomes = [];
    for (const [mode, options] of Object.entries(MODES)) {
      const key = `p/${mode.replaceAll(' ', '-')}`;
      const writer = store.createWriter(key);
      const outcome = await runIngestPipeline(cut(body, 1), writer, start(body), options);
      await writer.commit();
      assert.equal(outcome.bytes, body.byteLength, mode);
      assert.equal(outcome.sha256, createHash('sha256').update(body).digest('hex'), mode);
      assert.ok((await readFile(path.join(root, 'blobs', key))).equals(body), mode);
      outcomes.push(outcome);
    }
    for (const outcome of outcomes.slice(1)) assert.deepEqual(outcome, outcomes[0]);
    assert.deepEqual(
      outcomes[0].analysed.tensors.map((t) => t.name),
      ['w', 'b', 'n'],
    );
  });

  for (const [mode, options] of Object.entries(MODES)) {
    it(`reports a malformed body ${mode} with the decoder's error, and writes nothing visible`, async () => {
      const body = checkpoint(4);
      const wrong = Buffer.concat([body, Buffer.from([1, 2, 3])]);
      const writer = store.createWriter('bad/trailing');
      await assert.rejects(runIngestPipeline(cut(wrong, 2), writer, start(wrong), options), (err: unknown) => {
        assert.ok(isAppError(err));
        assert.equal(err.code, 'length_mismatch');
        return true;
      });
      await writer.abort();
      assert.equal(await store.head('bad/trailing'), null);
      assert.deepEqual(await staged(), []);
    });

    it(`stops ${mode} at the first bad byte without reading the rest of the body`, async () => {
      const body = checkpoint(5);
      body.fill(0x41, 8, 40); // the JSON header is garbage
      let yielded = 0;
      async function* counted(): AsyncGenerator<Uint8Array> {
        for await (const chunk of cut(body, 3)) {
          yielded += chunk.byteLength;
          yield chunk;
        }
      }
      const writer = store.createWriter('bad/header');
      await assert.rejects(runIngestPipeline(counted(), writer, start(body), options), {
        code: 'malformed_checkpoint',
      });
      await writer.abort();
      assert.ok(yielded < body.byteLength / 2, `read ${yielded} of ${body.byteLength} bytes`);
    });

    it(`passes on, ${mode}, a body that fails to arrive, and a store that fails to write`, async () => {
      const body = checkpoint(6);
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield body.subarray(0, 300 * KiB);
        throw new Error('connection reset');
      }
      const writer = store.createWriter('bad/cut');
      await assert.rejects(runIngestPipeline(broken(), writer, start(body), options), /connection reset/);
      await writer.abort();

      const brokenRoot = await mkdtemp(path.join(os.tmpdir(), 'trajgate-pipeline-broken-'));
      try {
        await writeFile(path.join(brokenRoot, '.staging'), 'in the way');
        const failing = new LocalBlobStore(brokenRoot).createWriter('x/y');
        await assert.rejects(runIngestPipeline(cut(body, 4), failing, start(body), options), {
          code: 'storage_unavailable',
        });
        await failing.abort();
      } finally {
        await rm(brokenRoot, { recursive: true, force: true });
      }
    });
  }

  it('runs more uploads at once than there are workers (the rest analyse inline) with the same results', async () => {
    const body = checkpoint(8);
    const results = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const writer = store.createWriter(`many/${i}`);
        const outcome = await runIngestPipeline(cut(body, 10 + i), writer, start(body), MODES['on a worker thread']);
        await writer.commit();
        return outcome;
      }),
    );
    for (const outcome of results.slice(1)) assert.deepEqual(outcome, results[0]);
    assert.equal(results[0].sha256, createHash('sha256').update(body).digest('hex'));
  });

  it('checks the tensor table against the reference on the worker too', async () => {
    const body = checkpoint(7);
    const writer = store.createWriter('bad/shape');
    const reference = [
      { name: 'w', dtype: 'F32' as const, shape: [1], norm: 0, mean: 0, maxAbs: 0, nanCount: 0, infCount: 0 },
    ];
    await assert.rejects(
      runIngestPipeline(cut(body, 5), writer, start(body, { reference }), MODES['on a worker thread']),
      { code: 'shape_mismatch' },
    );
    await writer.abort();
  });
});

describe('the gateway’s analysis threads (TRAJGATE_ANALYSIS_THREADS)', () => {
  it('store the same checkpoint, tensor table and trajectory with a worker as without', async () => {
    // Over 8 MiB, so with a thread configured the analysis runs on it; two steps, so a displacement exists.
    const body = (seed: number) =>
      Buffer.from(
        encodeSafetensors([
          {
            name: 'w',
            dtype: 'F32',
            shape: [2560, 1024],
            data: f32(Array.from({ length: 2560 * 1024 }, (_, i) => Math.sin(seed + i * 0.001))),
          },
          { name: 'n', dtype: 'I64', shape: [3], data: new Uint8Array(24).fill(seed) },
        ]),
      );
    const seen = [];
    for (const threads of ['1', '0']) {
      const gw = await createTestGateway({ TRAJGATE_ANALYSIS_THREADS: threads });
      try {
        for (const step of [1, 2]) {
          const res = await request(gw.app)
            .put(`/v1/runs/threads/checkpoints/${step}`)
            .set('content-type', 'application/vnd.safetensors')
            .send(body(step));
          assert.equal(res.status, 201, JSON.stringify(res.body));
        }
        const checkpoint = await request(gw.app).get('/v1/runs/threads/checkpoints/2');
        const trajectory = await request(gw.app).get('/v1/runs/threads/trajectory');
        assert.equal(checkpoint.status, 200);
        assert.equal(trajectory.status, 200);
        seen.push({ sha256: checkpoint.body.sha256, tensors: checkpoint.body.tensors, trajectory: trajectory.body });
      } finally {
        await gw.close();
      }
    }
    assert.ok(seen[0].tensors?.length === 2, JSON.stringify(seen[0]).slice(0, 300));
    assert.deepEqual(seen[0], seen[1]);
  });
});
