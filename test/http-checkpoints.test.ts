import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { encodeNative } from '@trajgate/sdk/wire/native-format';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import type { BlobWriter } from '../src/storage/blob-store.js';
import { createTestGateway, listAllBlobs, startTestServer, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';
import { signal, within } from './helpers/wait.js';

const SAFETENSORS = 'application/vnd.safetensors';
const NATIVE = 'application/vnd.trajgate.checkpoint+msgpack';

function f32(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function model(seed: number, size = 64): TensorData[] {
  const w = Array.from({ length: size }, (_, i) => Math.sin(seed * 31 + i));
  return [
    { name: 'layer.bias', dtype: 'F32', shape: [4], data: f32([seed, 1, 2, 3]) },
    { name: 'layer.weight', dtype: 'F32', shape: [size / 4, 4], data: f32(w) },
  ];
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** supertest's `parse` callback, typed by what supertest passes: the raw response stream. */
function binaryParser(res: request.Response, callback: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  const stream = res as unknown as http.IncomingMessage;
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => callback(null, Buffer.concat(chunks)));
}

describe('checkpoint upload and download', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ TRAJGATE_MAX_HEADER_KB: '32' });
  });
  after(() => gw.close());

  const upload = (run: string, step: number | string, body: Uint8Array, type = SAFETENSORS) =>
    request(gw.app).put(`/v1/runs/${run}/checkpoints/${step}`).set('content-type', type).send(Buffer.from(body));

  it('stores a safetensors checkpoint and serves it back byte-identical', async () => {
    const bytes = encodeSafetensors(model(1), { epoch: '1' });
    const res = await upload('run-a', 100, bytes);
    assertMatchesSpec(res, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(res.status, 201);
    assert.equal(res.body.step, 100);
    assert.equal(res.body.sha256, sha256(bytes));
    assert.equal(res.body.bytes, bytes.length);
    assert.equal(res.body.format, 'safetensors');
    assert.equal(res.body.status, 'kept');
    assert.deepEqual(
      res.body.tensors.map((t: { name: string; dtype: string; shape: number[] }) => [t.name, t.dtype, t.shape]),
      [
        ['layer.bias', 'F32', [4]],
        ['layer.weight', 'F32', [16, 4]],
      ],
    );
    assert.deepEqual(res.body.metadata, { epoch: '1' });

    const content = await request(gw.app)
      .get('/v1/runs/run-a/checkpoints/100/content')
      .buffer(true)
      .parse(binaryParser);
    assertMatchesSpec(content, 'GET', '/v1/runs/{run}/checkpoints/{step}/content');
    assert.equal(content.status, 200);
    assert.equal(content.headers['content-type'], SAFETENSORS);
    assert.equal(content.headers.etag, `"${sha256(bytes)}"`);
    assert.deepEqual(content.body, bytes);

    const list = await request(gw.app).get('/v1/runs/run-a/checkpoints');
    assertMatchesSpec(list, 'GET', '/v1/runs/{run}/checkpoints');
    assert.deepEqual(
      list.body.items.map((c: { step: number; sha256: string }) => [c.step, c.sha256]),
      [[100, sha256(bytes)]],
    );
    assert.equal(list.body.next, null);
    assert.equal(list.body.items[0].tensors, undefined, 'lists leave tensor tables out unless asked');
    const one = await request(gw.app).get('/v1/runs/run-a/checkpoints/100');
    assertMatchesSpec(one, 'GET', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(one.body.sha256, sha256(bytes));
    assert.deepEqual(one.body.tensors, res.body.tensors, 'one checkpoint comes with its tensor table');

    const run = await request(gw.app).get('/v1/runs/run-a');
    assertMatchesSpec(run, 'GET', '/v1/runs/{run}');
    assert.equal(run.status, 200, 'the first upload created the run');
    assert.deepEqual(run.body.checkpoints, {
      count: 1,
      kept: 1,
      latestStep: 100,
      bytesUploaded: bytes.length,
      bytesKept: bytes.length,
    });
  });

  it('serves byte ranges, suffix ranges, conditional requests and 416', async () => {
    const bytes = encodeSafetensors(model(2));
    await upload('run-range', 1, bytes).expect(201);
    const url = '/v1/runs/run-range/checkpoints/1/content';
    const cases: [string, number, number][] = [
      ['bytes=0-9', 0, 9],
      ['bytes=10-', 10, bytes.length - 1],
      ['bytes=-5', bytes.length - 5, bytes.length - 1],
      [`bytes=5-${bytes.length + 100}`, 5, bytes.length - 1],
    ];
    for (const [header, start, end] of cases) {
      const res = await request(gw.app).get(url).set('range', header).buffer(true).parse(binaryParser);
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/checkpoints/{step}/content');
      assert.equal(res.status, 206, header);
      assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${bytes.length}`);
      assert.deepEqual(res.body, Buffer.from(bytes.subarray(start, end + 1)), header);
    }
    const bad = await request(gw.app).get(url).set('range', `bytes=${bytes.length}-`);
    assertMatchesSpec(bad, 'GET', '/v1/runs/{run}/checkpoints/{step}/content');
    assert.equal(bad.status, 416);
    assert.equal(bad.body.error.code, 'range_not_satisfiable');

    const etag = `"${sha256(bytes)}"`;
    const notModified = await request(gw.app).get(url).set('if-none-match', etag);
    assert.equal(notModified.status, 304);
    const staleIfRange = await request(gw.app)
      .get(url)
      .set('range', 'bytes=0-3')
      .set('if-range', '"other"')
      .buffer(true)
      .parse(binaryParser);
    assert.equal(staleIfRange.status, 200, 'a stale If-Range gets the whole checkpoint');
    assert.equal(staleIfRange.body.length, bytes.length);
  });

  it('answers 200 for the same bytes again and 409 for other bytes, rewriting nothing', async () => {
    const bytes = encodeSafetensors(model(3));
    const first = await upload('run-idem', 5, bytes).expect(201);
    const blobsBefore = await listAllBlobs(gw.context);
    const again = await upload('run-idem', 5, bytes);
    assertMatchesSpec(again, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(again.status, 200);
    assert.equal(again.body.uploadId, first.body.uploadId);
    const other = await upload('run-idem', 5, encodeSafetensors(model(4)));
    assertMatchesSpec(other, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'checkpoint_conflict');
    assert.deepEqual(await listAllBlobs(gw.context), blobsBefore);
    const content = await request(gw.app)
      .get('/v1/runs/run-idem/checkpoints/5/content')
      .buffer(true)
      .parse(binaryParser);
    assert.deepEqual(content.body, bytes);
  });

  it('resolves concurrent uploads of one step to one committed checkpoint', async () => {
    const bytes = encodeSafetensors(model(5));
    const results = await Promise.all([1, 2, 3, 4].map(() => upload('run-race', 9, bytes)));
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 200, 200, 201]);
    const keys = (await listAllBlobs(gw.context)).filter((k) => k.startsWith('runs/run-race/'));
    assert.equal(keys.length, 2, `one data object and one manifest, got ${keys.join(', ')}`);
  });

  it('accepts the native format, declared or sniffed from application/octet-stream', async () => {
    const native = encodeNative(model(6), { chunkBytes: 40 });
    const declared = await upload('run-native', 1, native, NATIVE);
    assertMatchesSpec(declared, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(declared.status, 201);
    assert.equal(declared.body.format, 'native');
    const sniffedNative = await upload('run-native', 2, encodeNative(model(7)), 'application/octet-stream');
    assert.equal(sniffedNative.status, 201);
    assert.equal(sniffedNative.body.format, 'native');
    const sniffedSafetensors = await upload('run-native', 3, encodeSafetensors(model(8)), 'application/octet-stream');
    assert.equal(sniffedSafetensors.status, 201);
    assert.equal(sniffedSafetensors.body.format, 'safetensors');
    const content = await request(gw.app)
      .get('/v1/runs/run-native/checkpoints/1/content')
      .buffer(true)
      .parse(binaryParser);
    assert.equal(content.headers['content-type'], NATIVE);
    assert.deepEqual(content.body, native);
  });

  it('checks the declared SHA-256', async () => {
    const bytes = encodeSafetensors(model(9));
    const good = await upload('run-sha', 1, bytes).set('x-trajgate-sha256', sha256(bytes));
    assert.equal(good.status, 201);
    const wrong = await upload('run-sha', 2, bytes).set('x-trajgate-sha256', sha256(new Uint8Array([1])));
    assertMatchesSpec(wrong, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error.code, 'checksum_mismatch');
    const garbage = await upload('run-sha', 3, bytes).set('x-trajgate-sha256', 'not-hex');
    assert.equal(garbage.body.error.code, 'invalid_checksum_header');
    const list = await request(gw.app).get('/v1/runs/run-sha/checkpoints');
    assert.deepEqual(
      list.body.items.map((c: { step: number }) => c.step),
      [1],
    );
  });

  describe('rejects bad input with a 4xx naming the problem, leaving nothing behind', () => {
    const good = () => Buffer.from(encodeSafetensors(model(10)));
    const withHeader = (header: unknown, data: Uint8Array) => {
      const json = Buffer.from(JSON.stringify(header));
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([prefix, json, data]);
    };
    const cases: [string, () => Uint8Array, string, number, string?][] = [
      // Content-Length is honest about the short body, so it disagrees with the header before the end.
      ['truncated file', () => good().subarray(0, good().length - 7), 'length_mismatch', 400],
      ['malformed JSON header', () => withHeader('nope', new Uint8Array(0)).fill(0x41, 8), 'malformed_checkpoint', 400],
      [
        'offsets out of range',
        () => withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(16)),
        'malformed_checkpoint',
        400,
      ],
      [
        'unsupported dtype',
        () => withHeader({ w: { dtype: 'C64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(16)),
        'unsupported_dtype',
        422,
      ],
      [
        'header larger than the cap',
        () => withHeader({ pad: 'x'.repeat(40_000) }, new Uint8Array(0)),
        'header_too_large',
        413,
      ],
      ['trailing bytes', () => Buffer.concat([good(), Buffer.from([1, 2, 3])]), 'length_mismatch', 400],
      ['an unknown content type', good, 'unsupported_media_type', 415, 'text/plain'],
      [
        'unrecognisable octet-stream',
        () => Buffer.from('hello world, not a checkpoint'),
        'unsupported_media_type',
        415,
        'application/octet-stream',
      ],
    ];
    let step = 100;
    for (const [name, body, code, status, type] of cases) {
      it(name, async () => {
        const s = step++;
        const res = await upload('run-bad', s, body(), type);
        assertMatchesSpec(res, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.equal(res.body.error.code, code);
        assert.match(res.body.error.message, /\w/);
        const one = await request(gw.app).get(`/v1/runs/run-bad/checkpoints/${s}`);
        assert.equal(one.status, 404);
        assert.deepEqual(
          (await listAllBlobs(gw.context)).filter((k) => k.startsWith('runs/run-bad/')),
          [],
        );
      });
    }

    it('invalid run ids and steps', async () => {
      for (const [run, step, code] of [
        ['bad$run', '1', 'invalid_run_id'],
        ['.hidden', '1', 'invalid_run_id'],
        ['a..b', '1', 'invalid_run_id'],
        ['x'.repeat(129), '1', 'invalid_run_id'],
        ['ok', '-1', 'invalid_step'],
        ['ok', '1.5', 'invalid_step'],
        ['ok', '01', 'invalid_step'],
        ['ok', '99999999999999999999', 'invalid_step'],
      ]) {
        const res = await upload(run, step, good());
        assertMatchesSpec(res, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
        assert.equal(res.status, 400, `${run}/${step}`);
        assert.equal(res.body.error.code, code, `${run}/${step}`);
      }
      assert.deepEqual(await listAllBlobs(gw.context).then((k) => k.filter((x) => x.startsWith('runs/ok/'))), []);
    });
  });

  it('answers unknown routes and missing things with the error shape', async () => {
    const missingRun = await request(gw.app).get('/v1/runs/nope');
    assertMatchesSpec(missingRun, 'GET', '/v1/runs/{run}');
    assert.equal(missingRun.body.error.code, 'run_not_found');
    await upload('run-x', 1, encodeSafetensors(model(11))).expect(201);
    const missingStep = await request(gw.app).get('/v1/runs/run-x/checkpoints/2');
    assertMatchesSpec(missingStep, 'GET', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(missingStep.body.error.code, 'checkpoint_not_found');
    const route = await request(gw.app).get('/v2/whatever');
    assert.equal(route.status, 404);
    assert.equal(route.body.error.code, 'not_found');
  });
});

describe('checkpoint lists', () => {
  let gw: TestGateway;
  /** The steps uploaded to `paged`, and those its policy kept. */
  const steps = Array.from({ length: 25 }, (_, i) => i * 10);
  let kept: number[] = [];
  before(async () => {
    gw = await createTestGateway();
    await request(gw.app)
      .put('/v1/runs/paged/policy')
      .send({ policy: { budget: { maxCheckpoints: 6 }, latest: 2 } })
      .expect(200);
    for (const step of steps) {
      await request(gw.app)
        .put(`/v1/runs/paged/checkpoints/${step}`)
        .set('content-type', SAFETENSORS)
        .send(Buffer.from(encodeSafetensors(model(step, 8))))
        .expect(201);
    }
    const all = (await request(gw.app).get('/v1/runs/paged/checkpoints?limit=1000').expect(200)).body;
    kept = all.items.filter((c: { status: string }) => c.status === 'kept').map((c: { step: number }) => c.step);
    assert.ok(kept.length > 1 && kept.length < steps.length, `the policy kept ${kept.length} of ${steps.length}`);
  });
  after(() => gw.close());

  type Item = { step: number; status: string; tensors?: { name: string }[] };

  /** Follows `next` from the first page; returns the pages. */
  async function pages(query: string): Promise<{ items: Item[]; next: number | null }[]> {
    const out: { items: Item[]; next: number | null }[] = [];
    let after: number | null = null;
    do {
      const res = await request(gw.app).get(
        `/v1/runs/paged/checkpoints?${query}${after === null ? '' : `&after=${after}`}`,
      );
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/checkpoints');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      out.push(res.body);
      after = res.body.next;
      assert.ok(out.length <= steps.length + 1, 'paging does not end');
    } while (after !== null);
    return out;
  }

  it('pages through every checkpoint once, in step order, with next the last step of a full page', async () => {
    const got = await pages('limit=10');
    assert.deepEqual(
      got.map((p) => [p.items.length, p.next]),
      [
        [10, 90],
        [10, 190],
        [5, null],
      ],
    );
    assert.deepEqual(
      got.flatMap((p) => p.items.map((c) => c.step)),
      steps,
    );
    assert.ok(got.every((p) => p.items.every((c) => c.tensors === undefined)));

    // A last page that is full is followed by an empty one.
    const exact = await pages('limit=5');
    assert.deepEqual(
      exact.map((p) => p.items.length),
      [5, 5, 5, 5, 5, 0],
    );
    assert.deepEqual(
      exact.flatMap((p) => p.items.map((c) => c.step)),
      steps,
    );
    const byDefault = (await request(gw.app).get('/v1/runs/paged/checkpoints').expect(200)).body;
    assert.equal(byDefault.items.length, steps.length, 'the default page of 100 holds them all');
    assert.equal(byDefault.next, null);
  });

  it('pages through one status', async () => {
    const got = await pages('status=kept&limit=2');
    assert.deepEqual(
      got.flatMap((p) => p.items.map((c) => c.step)),
      kept,
    );
    const discarded = (await pages('status=discarded&limit=7')).flatMap((p) => p.items);
    assert.deepEqual(
      discarded.map((c) => c.step),
      steps.filter((s) => !kept.includes(s)),
    );
    assert.ok(discarded.every((c) => c.status === 'discarded'));
  });

  it('gives tensor tables with include=tensors', async () => {
    const got = await pages('include=tensors&limit=10');
    const items = got.flatMap((p) => p.items);
    assert.deepEqual(
      items.map((c) => c.step),
      steps,
    );
    for (const c of items) {
      assert.deepEqual(
        c.tensors?.map((t) => t.name),
        ['layer.bias', 'layer.weight'],
        `step ${c.step}`,
      );
    }
    const one = (await request(gw.app).get('/v1/runs/paged/checkpoints/30').expect(200)).body;
    assert.deepEqual(
      items.find((c) => c.step === 30),
      one,
      'a listed item with its tensors is the whole record',
    );
  });

  it('answers an empty last page for after at or beyond the end', async () => {
    for (const after of [240, 241, 9_007_199_254_740_991]) {
      const res = await request(gw.app).get(`/v1/runs/paged/checkpoints?after=${after}`);
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/checkpoints');
      assert.deepEqual(res.body, { items: [], next: null }, `after=${after}`);
    }
    const fromZero = (await request(gw.app).get('/v1/runs/paged/checkpoints?after=0&limit=1').expect(200)).body;
    assert.deepEqual([fromZero.items[0].step, fromZero.next], [10, 10]);
  });

  it('refuses bad paging parameters with 400 naming the parameter', async () => {
    const cases: [string, string][] = [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=2.5', 'limit'],
      ['after=-1', 'after'],
      ['after=abc', 'after'],
      ['after=1.5', 'after'],
      ['after=01', 'after'],
      ['after=', 'after'],
      ['after=99999999999999999', 'after'],
      ['after=1&after=2', 'after'],
      ['include=metrics', 'include'],
      ['include=', 'include'],
      ['include=tensors&include=tensors', 'include'],
      ['status=gone', 'status'],
      ['tensors=true', 'tensors'],
    ];
    for (const [query, names] of cases) {
      const res = await request(gw.app).get(`/v1/runs/paged/checkpoints?${query}`);
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/checkpoints');
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error.code, 'invalid_request', query);
      assert.match(res.body.error.message, new RegExp(`\\b${names}\\b`), query);
    }
    const missing = await request(gw.app).get('/v1/runs/nope/checkpoints?limit=10');
    assertMatchesSpec(missing, 'GET', '/v1/runs/{run}/checkpoints');
    assert.equal(missing.body.error.code, 'run_not_found');
  });
});

function rawUpload(
  url: string,
  path: string,
  headers: http.OutgoingHttpHeaders,
  send: (req: http.ClientRequest) => void,
) {
  const { hostname, port } = new URL(url);
  return new Promise<{ status: number | null; body: string }>((resolve) => {
    const req = http.request({ host: hostname, port, method: 'PUT', path, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? null, body }));
    });
    req.on('error', () => resolve({ status: null, body: '' }));
    send(req);
  });
}

describe('uploads over a real socket', () => {
  it('a chunked body that ends before the checkpoint does is truncated_body', async () => {
    const server = await startTestServer();
    try {
      const bytes = Buffer.from(encodeSafetensors(model(13, 1024)));
      const headers = { 'content-type': SAFETENSORS, 'transfer-encoding': 'chunked' };
      const res = await rawUpload(server.url, '/v1/runs/run-chunked/checkpoints/1', headers, (req) => {
        req.end(bytes.subarray(0, bytes.length - 100));
      });
      assert.equal(res.status, 400);
      assert.equal(JSON.parse(res.body).error.code, 'truncated_body');
      assert.deepEqual(await listAllBlobs(server.context), []);
    } finally {
      await server.close();
    }
  });

  it('a body cut mid-stream leaves no checkpoint and no blob outside staging', async () => {
    const server = await startTestServer();
    try {
      // Watch the server's staged write: the client hangs up once the server is streaming the body into it,
      // and the server's abort path has run once the staged write is discarded.
      const streaming = signal();
      const discarded = signal();
      const blobs = server.context.blobs;
      const createWriter = blobs.createWriter.bind(blobs);
      blobs.createWriter = (key: string): BlobWriter => {
        const writer = createWriter(key);
        return {
          write: async (chunk) => {
            await writer.write(chunk);
            streaming.resolve();
          },
          commit: () => writer.commit(),
          abort: async () => {
            await writer.abort();
            discarded.resolve();
          },
        };
      };
      // 16 MiB: half of it is more than one write-behind batch (4 MiB), so the server writes before the cut.
      const bytes = Buffer.from(encodeSafetensors(model(12, 4 * 1024 * 1024)));
      let hangUp: Promise<void> = Promise.resolve();
      const upload = rawUpload(
        server.url,
        '/v1/runs/run-cut/checkpoints/7',
        { 'content-type': SAFETENSORS, 'content-length': bytes.length },
        (req) => {
          req.write(bytes.subarray(0, bytes.length / 2));
          hangUp = within(streaming.promise, { what: 'the server to stage the first bytes of the body' }).finally(() =>
            req.destroy(),
          );
        },
      );
      const [res] = await Promise.all([upload, hangUp]);
      assert.equal(res.status, null, 'the client hung up before any answer');
      // The server notices the reset asynchronously: wait for its abort path to discard the staged write.
      await within(discarded.promise, { what: 'the server to discard the staged write after the reset' });
      assert.equal(await server.context.catalog.getCheckpoint('run-cut', 7), null);
      assert.deepEqual(await listAllBlobs(server.context), []);
      const after = await fetch(`${server.url}/v1/runs/run-cut/checkpoints/7`);
      assert.equal(after.status, 404);
    } finally {
      await server.close();
    }
  });
});

describe('trajectory checks at upload', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  const upload = (run: string, step: number, tensors: TensorData[]) =>
    request(gw.app)
      .put(`/v1/runs/${run}/checkpoints/${step}`)
      .set('content-type', SAFETENSORS)
      .send(Buffer.from(encodeSafetensors(tensors)));

  it('records exact per-tensor statistics', async () => {
    const res = await upload('stats', 0, [
      { name: 'w', dtype: 'F32', shape: [4], data: f32([3, -4, 0, 1]) },
      { name: 'steps', dtype: 'I32', shape: [1], data: new Uint8Array(new Int32Array([7]).buffer) },
    ]);
    assert.equal(res.status, 201);
    const [w, steps] = res.body.tensors;
    assert.deepEqual(
      { norm: w.norm, mean: w.mean, maxAbs: w.maxAbs, nanCount: w.nanCount, infCount: w.infCount },
      { norm: Math.sqrt(26), mean: 0, maxAbs: 4, nanCount: 0, infCount: 0 },
    );
    assert.equal(steps.maxAbs, 7);
  });

  it('rejects NaN or Inf weights with 422 naming the tensors, storing nothing', async () => {
    const res = await upload('nan', 0, [
      { name: 'ok', dtype: 'F32', shape: [2], data: f32([1, 2]) },
      { name: 'bad', dtype: 'F32', shape: [3], data: f32([1, Number.NaN, Infinity]) },
    ]);
    assertMatchesSpec(res, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    assert.equal(res.status, 422);
    assert.equal(res.body.error.code, 'non_finite_weights');
    assert.match(res.body.error.message, /bad \(1 NaN, 1 Inf\)/);
    assert.deepEqual(
      (await listAllBlobs(gw.context)).filter((k) => k.startsWith('runs/nan/')),
      [],
    );
  });

  it("rejects tensors that differ from the run's first checkpoint unless the run allows it", async () => {
    await upload('shapes', 0, model(1)).expect(201);
    const renamed = model(2).map((t, i) => (i === 0 ? { ...t, name: 'other.bias' } : t));
    const reshaped = model(2, 128);
    for (const [tensors, mentions] of [
      [renamed, /unexpected tensor 'other.bias'.*missing tensor 'layer.bias'/],
      [reshaped, /'layer.weight' has shape \[32,4\], the run's first checkpoint has \[16,4\]/],
    ] as const) {
      const res = await upload('shapes', 10, tensors);
      assertMatchesSpec(res, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
      assert.equal(res.status, 422);
      assert.equal(res.body.error.code, 'shape_mismatch');
      assert.match(res.body.error.message, mentions);
    }
    await request(gw.app).put('/v1/runs/shapes-free').send({ allowShapeChange: true }).expect(201);
    await upload('shapes-free', 0, model(1)).expect(201);
    await upload('shapes-free', 10, reshaped).expect(201);
  });
});
