import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { summariseTensors } from '../src/trajectory/accumulator.js';
import { DTYPES, FLOAT_DTYPES, type Dtype } from '@trajgate/sdk/wire/dtypes';
import { encodeNative } from '@trajgate/sdk/wire/native-format';
import type { TensorData } from '@trajgate/sdk/wire/safetensors';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

/**
 * Every dtype through the HTTP app, in both formats: the fixtures and their expected statistics are written
 * by test/fixtures/make-dtype-fixtures.py (numpy and exact rational arithmetic, independent of the gateway).
 */
const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'dtypes');
const SAFETENSORS = 'application/vnd.safetensors';
const NATIVE = 'application/vnd.trajgate.checkpoint+msgpack';

interface ExpectedStats {
  dtype: Dtype;
  shape: number[];
  count: number;
  norm: number;
  mean: number;
  maxAbs: number;
  nanCount: number;
  infCount: number;
}
interface Expected {
  files: Record<string, string[]>;
  tensors: Record<string, ExpectedStats>;
}
interface TensorRow {
  name: string;
  dtype: string;
  shape: number[];
  norm: number;
  mean: number;
  maxAbs: number;
  nanCount: number;
  infCount: number;
}

const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Expected;
const fixture = (file: string): Buffer => readFileSync(path.join(DIR, file));

/** The tensors of a safetensors file, in data order (a minimal reader, independent of the decoder). */
function readSafetensors(bytes: Buffer): TensorData[] {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: Dtype; shape: number[]; data_offsets: [number, number] }
  >;
  return Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0])
    .map(
      ([
        name,
        {
          dtype,
          shape,
          data_offsets: [begin, end],
        },
      ]) => ({
        name,
        dtype,
        shape,
        data: bytes.subarray(8 + n + begin, 8 + n + end),
      }),
    );
}

/**
 * maxAbs is one element's value: always exact. norm and mean: exact when the expected value is a safe
 * integer, else within 1e-12 relative (the gateway and the script each round once or twice).
 */
function assertStats(row: TensorRow, where: string): void {
  const want = expected.tensors[row.name];
  assert.ok(want, `${where}: unexpected tensor ${row.name}`);
  const label = `${where} ${row.name}`;
  assert.equal(row.dtype, want.dtype, label);
  assert.deepEqual(row.shape, want.shape, label);
  assert.equal(row.nanCount, want.nanCount, `${label} nanCount`);
  assert.equal(row.infCount, want.infCount, `${label} infCount`);
  assert.equal(row.maxAbs, want.maxAbs, `${label} maxAbs`);
  for (const key of ['norm', 'mean'] as const) {
    const [got, exp] = [row[key], want[key]];
    if (Number.isSafeInteger(exp)) assert.equal(got, exp, `${label} ${key}`);
    else {
      const error = Math.abs(got - exp) / Math.abs(exp);
      assert.ok(error <= 1e-12, `${label} ${key}: ${got} vs ${exp} (relative error ${error.toExponential(2)})`);
    }
  }
}

describe('every dtype, through the HTTP app', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  const upload = (run: string, body: Uint8Array, type: string) =>
    request(gw.app).put(`/v1/runs/${run}/checkpoints/1`).set('content-type', type).send(Buffer.from(body));

  it('the fixtures cover every dtype trajgate stores, one file each and all in one file', () => {
    const dtypes = (names: string[]) => names.map((name) => expected.tensors[name].dtype).sort();
    assert.deepEqual(dtypes(expected.files['all.safetensors']), [...DTYPES].sort());
    for (const dtype of DTYPES) assert.deepEqual(dtypes(expected.files[`${dtype}.safetensors`]), [dtype]);
  });

  const files = Object.keys(expected.files).filter((file) => file !== 'specials.safetensors');
  for (const file of files) {
    it(`stores ${file} with the expected statistics, as safetensors and as the SDK's native encoding`, async () => {
      const bytes = fixture(file);
      const tensors = readSafetensors(bytes);
      assert.deepEqual(
        tensors.map((t) => t.name),
        expected.files[file],
      );
      const stem = file.replace('.safetensors', '');
      // Records of 7 bytes split most elements across records: the decoder must rejoin them.
      const bodies: [string, string, Uint8Array][] = [
        [`st-${stem}`, SAFETENSORS, bytes],
        [`native-${stem}`, NATIVE, encodeNative(tensors, { chunkBytes: 7 })],
      ];
      for (const [run, type, body] of bodies) {
        const res = await upload(run, body, type);
        assert.equal(res.status, 201, `${run}: ${JSON.stringify(res.body)}`);
        assertMatchesSpec(res, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
        assert.deepEqual(
          res.body.tensors.map((t: TensorRow) => t.name),
          expected.files[file],
        );
        for (const row of res.body.tensors as TensorRow[]) assertStats(row, `${run} (upload)`);
        const stored = await request(gw.app).get(`/v1/runs/${run}/checkpoints/1`);
        assert.equal(stored.status, 200);
        assertMatchesSpec(stored, 'GET', '/v1/runs/{run}/checkpoints/{step}');
        for (const row of stored.body.tensors as TensorRow[]) assertStats(row, `${run} (stored)`);
      }
    });
  }

  it('refuses the NaN and Inf of every float dtype as non_finite_weights, counting them per tensor', async () => {
    const bytes = fixture('specials.safetensors');
    const tensors = readSafetensors(bytes);
    const bodies: [string, string, Uint8Array][] = [
      ['specials-st', SAFETENSORS, bytes],
      ['specials-native', NATIVE, encodeNative(tensors, { chunkBytes: 3 })],
    ];
    const want = expected.files['specials.safetensors'].map((name) => ({
      name,
      nanCount: expected.tensors[name].nanCount,
      infCount: expected.tensors[name].infCount,
    }));
    assert.ok(want.every((t) => t.nanCount + t.infCount > 0));
    for (const [run, type, body] of bodies) {
      const res = await upload(run, body, type);
      assert.equal(res.status, 422, run);
      assert.equal(res.body.error.code, 'non_finite_weights');
      assert.deepEqual(res.body.error.details.tensors, want, run);
      assert.equal((await request(gw.app).get(`/v1/runs/${run}/checkpoints/1`)).status, 404);
    }
  });
});

describe('every dtype, in the accumulator', () => {
  it('leaves NaN and Inf out of the statistics of every float dtype', () => {
    const tensors = readSafetensors(fixture('specials.safetensors'));
    const summary = summariseTensors(
      0,
      tensors.map((t) => ({ ...t, bytes: t.data })),
    );
    for (const stats of summary.tensors) assertStats(stats, 'specials');
  });

  it('sketches float tensors (FP8 included) and only them; the weight norm is theirs', () => {
    const tensors = readSafetensors(fixture('all.safetensors'));
    const summary = summariseTensors(
      0,
      tensors.map((t) => ({ ...t, bytes: t.data })),
    );
    let sumSq = 0;
    summary.tensors.forEach((stats, i) => {
      assertStats(stats, 'all');
      const float = FLOAT_DTYPES.has(stats.dtype);
      assert.equal(summary.tensorSketches[i].length > 0, float, `${stats.name} has per-tensor values`);
      if (float) sumSq += stats.norm ** 2;
    });
    assert.ok(Math.abs(summary.weightNorm - Math.sqrt(sumSq)) <= 1e-12 * summary.weightNorm);
    assert.ok(summary.sketch.some((v) => v !== 0));
  });
});
