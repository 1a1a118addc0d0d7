import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { isAppError } from '../src/errors.js';
import type { TensorVisitor } from '../src/ingest/decoder.js';
import { describe as describeValue } from '../src/ingest/header-checks.js';
import { createSafetensorsDecoder } from '../src/ingest/safetensors-decoder.js';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import {
  LIMITS,
  RecordingVisitor,
  assertCode,
  assertDecodedAs,
  chunks,
  decode,
  feedAll,
  measureDecodeGrowth,
  prng,
  randomCheckpoint,
  tensor,
  type Chunking,
  type DecoderFactory,
  decodeThroughReusedBuffer,
} from './helpers/checkpoints.js';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';

const create = createSafetensorsDecoder;

/** A safetensors body with an arbitrary JSON header (or raw header bytes) and data section. */
function withHeader(header: unknown, data: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

const entry = (dtype: unknown, shape: unknown, data_offsets: unknown) => ({ dtype, shape, data_offsets });

function chunkings(seed: number): Chunking[] {
  return [Number.MAX_SAFE_INTEGER, 1, 3, 7, 64, { random: prng(seed), max: 40 }, { random: prng(seed + 1), max: 5000 }];
}

describe('safetensors decoder: well-formed checkpoints', () => {
  it('reports every tensor of every dtype byte-exact, element-aligned and in order, however the body is cut', () => {
    for (let seed = 1; seed <= 25; seed++) {
      const rng = prng(seed);
      const tensors = randomCheckpoint(rng);
      const metadata = seed % 2 ? { seed: String(seed), note: 'ünïcode ✓' } : undefined;
      const body = encodeSafetensors(tensors, metadata);
      for (const chunking of chunkings(seed)) {
        const result = decode(create, body, chunking);
        assertDecodedAs(result, tensors, metadata ?? null);
        assert.equal(result.decoder.expectedLength, body.length);
        assert.equal(result.layout.format, 'safetensors');
      }
    }
  });

  it('lists tensors in data order, whatever the JSON key order', () => {
    const rng = prng(7);
    const [a, b, c] = [tensor(rng, 'a', 'F32', [3]), tensor(rng, 'b', 'I8', [5]), tensor(rng, 'c', 'F64', [])];
    // Keys c, a, b; data laid out b, c, a.
    const header = {
      c: entry('F64', [], [5, 13]),
      a: entry('F32', [3], [13, 25]),
      b: entry('I8', [5], [0, 5]),
    };
    const body = withHeader(header, Buffer.concat([b.data, c.data, a.data]));
    for (const chunking of [1, 4, 1000]) assertDecodedAs(decode(create, body, chunking), [b, c, a], null);
  });

  it('places zero-byte tensors before a tensor at the same offset, and allows several at one offset', () => {
    const rng = prng(8);
    const w = tensor(rng, 'w', 'BF16', [2, 2]);
    const header = {
      w: entry('BF16', [2, 2], [0, 8]),
      e1: entry('F32', [0], [8, 8]),
      e0: entry('I64', [3, 0], [0, 0]),
      e2: entry('U8', [0, 7], [8, 8]),
    };
    const result = decode(create, withHeader(header, w.data), 3);
    assert.deepEqual(
      result.layout.tensors.map((t) => t.name),
      ['e0', 'w', 'e1', 'e2'],
    );
    assert.deepEqual(result.visitor.bytesOf('w'), Buffer.from(w.data));
    assert.deepEqual(result.visitor.bytesOf('e0'), Buffer.alloc(0));
  });

  it('accepts a checkpoint with no tensors, with or without metadata, and trailing spaces in the header', () => {
    assertDecodedAs(decode(create, withHeader({})), [], null);
    assertDecodedAs(decode(create, withHeader({ __metadata__: { k: 'v' } }), 1), [], { k: 'v' });
    assertDecodedAs(decode(create, withHeader(Buffer.from('{"__metadata__":{}}    '))), [], {});
  });

  it('keeps a metadata key named __proto__ as an ordinary key', () => {
    const body = withHeader(Buffer.from('{"__metadata__":{"__proto__":"x","k":"v"}}'));
    const { layout } = decode(create, body, 5);
    assert.deepEqual(Object.entries(layout.metadata ?? {}), [
      ['__proto__', 'x'],
      ['k', 'v'],
    ]);
  });

  it("does not keep the caller's chunks: one write buffer reused for every chunk is fine", () => {
    const tensors = randomCheckpoint(prng(13));
    const body = encodeSafetensors(tensors, { a: 'b' });
    for (const size of [1, 6, 64]) assertDecodedAs(decodeThroughReusedBuffer(create, body, size), tensors, { a: 'b' });
  });

  it('knows the expected length only once the header is parsed', () => {
    const body = encodeSafetensors([tensor(prng(1), 'w', 'F32', [4])]);
    const decoder = create(new RecordingVisitor(), LIMITS);
    const headerEnd = body.length - 16;
    decoder.write(body.subarray(0, headerEnd - 1));
    assert.equal(decoder.expectedLength, null);
    decoder.write(body.subarray(headerEnd - 1, headerEnd));
    assert.equal(decoder.expectedLength, body.length);
    decoder.write(body.subarray(headerEnd));
    decoder.end();
  });

  it('hands out zero-copy subarrays of the written chunks when elements are not split', () => {
    const body = encodeSafetensors([tensor(prng(2), 'w', 'F64', [64])]);
    const seen: Uint8Array[] = [];
    const visitor: TensorVisitor = { onHeader() {}, onData: (_i, _o, bytes) => seen.push(bytes) };
    const decoder = create(visitor, LIMITS);
    decoder.write(body);
    decoder.end();
    assert.equal(seen.length, 1);
    assert.equal(seen[0].buffer, body.buffer, 'the slice views the input buffer');
  });

  it('carries an element split across chunks and sends it as one element', () => {
    const t = tensor(prng(3), 'w', 'F64', [3]);
    const body = encodeSafetensors([t]);
    const headerEnd = body.length - 24;
    const slices: [number, number][] = [];
    const visitor: TensorVisitor = {
      onHeader() {},
      onData: (_i, offset, bytes) => slices.push([offset, bytes.byteLength]),
    };
    const decoder = create(visitor, LIMITS);
    // Header plus 5 bytes, then 14 (completes element 0, whole element 1, 3 bytes of element 2), then 5.
    for (const chunk of chunks(body, [headerEnd + 5, 14, 5])) decoder.write(chunk);
    decoder.end();
    assert.deepEqual(slices, [
      [0, 8],
      [8, 8],
      [16, 8],
    ]);
  });
});

describe('safetensors decoder: malformed checkpoints', () => {
  it('rejects a header length over the cap as soon as the 8 length bytes arrive', () => {
    for (const length of [LIMITS.maxHeaderBytes + 1, 2 ** 40, 2 ** 63]) {
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(length));
      const decoder = create(new RecordingVisitor(), LIMITS);
      decoder.write(prefix.subarray(0, 7));
      assertCode(() => decoder.write(prefix.subarray(7)), 'header_too_large');
    }
    assertCode(
      feedAll(create, withHeader({ pad: 'x'.repeat(LIMITS.maxHeaderBytes) })),
      'header_too_large',
      /exceeds the limit/,
    );
  });

  it('rejects a zero header length, bad JSON, bad UTF-8 and a header that is not an object', () => {
    const bad: [string, Buffer, RegExp][] = [
      ['zero length', Buffer.alloc(8), /length is 0/],
      ['bad JSON', withHeader(Buffer.from('{"w": ')), /not valid UTF-8 JSON/],
      ['JSON with garbage after it', withHeader(Buffer.from('{} x')), /JSON/],
      ['bad UTF-8', withHeader(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), /UTF-8/],
      ['array', withHeader([1, 2]), /must start with '\{'/],
      ['number', withHeader(42), /must start with '\{'/],
      ['null', withHeader(null), /must start with '\{'/],
      ['leading space', withHeader(Buffer.from(' {}')), /must start with '\{'/],
    ];
    for (const [name, body, message] of bad) {
      for (const chunking of [1, 1000]) assertCode(feedAll(create, body, chunking), 'malformed_checkpoint', message);
      assert.ok(name);
    }
  });

  it('classifies dtypes: valid-but-unsupported → unsupported_dtype, missing or garbage → malformed', () => {
    for (const dtype of ['F4', 'F6_E2M3', 'F6_E3M2', 'C64']) {
      assertCode(
        feedAll(create, withHeader({ w: entry(dtype, [2], [0, 2]) }, new Uint8Array(2))),
        'unsupported_dtype',
        new RegExp(`'w' has dtype ${dtype}, which trajgate does not store: a (sub-byte|complex) type`),
      );
    }
    for (const dtype of ['U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0'] as const) {
      const w = tensor(prng(3), 'w', dtype, [2]);
      const body = withHeader({ w: entry(dtype, [2], [0, w.data.byteLength]) }, w.data);
      assertDecodedAs(decode(create, body, 1), [w], null);
    }
    for (const dtype of ['F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F32 ', 'I4', 'U4']) {
      assertCode(
        feedAll(create, withHeader({ w: entry(dtype, [1], [0, 1]) }, new Uint8Array(1))),
        'malformed_checkpoint',
        /'w' has an invalid dtype/,
      );
    }
    for (const dtype of ['F33', 'f32', '', 4, null]) {
      assertCode(
        feedAll(create, withHeader({ w: entry(dtype, [1], [0, 4]) }, new Uint8Array(4))),
        'malformed_checkpoint',
        /'w'.*dtype/,
      );
    }
    assertCode(
      feedAll(create, withHeader({ w: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4))),
      'malformed_checkpoint',
      /'w' has no dtype/,
    );
  });

  it('rejects bad shapes and entries', () => {
    for (const shape of [[-1], [1.5], ['2'], [null], 3, null, [2 ** 53], [2 ** 30, 2 ** 30]]) {
      assertCode(
        feedAll(create, withHeader({ w: entry('F32', shape, [0, 4]) }, new Uint8Array(4))),
        'malformed_checkpoint',
        /'w'.*shape/,
      );
    }
    for (const value of [null, 'F32', [1], 7]) {
      assertCode(feedAll(create, withHeader({ w: value })), 'malformed_checkpoint', /'w' must be an object/);
    }
  });

  it('rejects bad data_offsets', () => {
    for (const offsets of [undefined, [0], [0, 4, 8], [-4, 0], [0, 4.5], [4, 0], ['0', '4'], { 0: 0, 1: 4 }]) {
      assertCode(
        feedAll(create, withHeader({ w: entry('F32', [1], offsets) }, new Uint8Array(4))),
        'malformed_checkpoint',
        /'w' has invalid data_offsets/,
      );
    }
  });

  it('rejects a span that differs from shape × dtype size (offsets out of range)', () => {
    assertCode(
      feedAll(create, withHeader({ w: entry('F32', [2], [0, 16]) }, new Uint8Array(16))),
      'malformed_checkpoint',
      /'w'.*span 16 bytes.*needs 8/,
    );
    assertCode(
      feedAll(create, withHeader({ w: entry('F64', [2], [0, 8]) }, new Uint8Array(8))),
      'malformed_checkpoint',
      /needs 16/,
    );
  });

  it('rejects overlaps, gaps and a data section not starting at 0', () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        'overlap',
        { a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) },
        /'b' begins at 4, overlapping 'a' which ends at 8/,
      ],
      ['duplicate', { a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [0, 8]) }, /overlapping/],
      [
        'gap',
        { a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [12, 20]) },
        /'b' begins at 12, leaving a gap after 'a'/,
      ],
      ['late start', { a: entry('F32', [2], [4, 12]) }, /first tensor, 'a', begins at 4/],
    ];
    for (const [, header, message] of cases) {
      assertCode(feedAll(create, withHeader(header, new Uint8Array(20))), 'malformed_checkpoint', message);
    }
  });

  it('rejects more tensors than the limit and non-string metadata', () => {
    const three = { a: entry('U8', [1], [0, 1]), b: entry('U8', [1], [1, 2]), c: entry('U8', [1], [2, 3]) };
    assertCode(
      feedAll(create, withHeader(three, new Uint8Array(3)), 1, { ...LIMITS, maxTensors: 2 }),
      'malformed_checkpoint',
      /3 tensors/,
    );
    decode(create, withHeader(three, new Uint8Array(3)), 1, { ...LIMITS, maxTensors: 3 });
    for (const metadata of [{ k: 1 }, { k: null }, { k: ['v'] }, ['v'], 'v']) {
      assertCode(feedAll(create, withHeader({ __metadata__: metadata })), 'malformed_checkpoint', /__metadata__/);
    }
  });

  it('reports truncation at any point as truncated_body with received and expected bytes', () => {
    const rng = prng(11);
    const tensors = [tensor(rng, 'a', 'F32', [3]), tensor(rng, 'b', 'F64', [2])];
    const body = encodeSafetensors(tensors);
    const headerEnd = body.length - 28;
    const cuts = [0, 3, 8, 9, headerEnd - 1, headerEnd, headerEnd + 2, headerEnd + 12, headerEnd + 17, body.length - 1];
    for (const cut of cuts) {
      for (const chunking of [1, 5, body.length]) {
        const decoder = create(new RecordingVisitor(), LIMITS);
        for (const chunk of chunks(body.subarray(0, cut), chunking)) decoder.write(chunk);
        assert.throws(
          () => decoder.end(),
          (err: unknown) => {
            assert.ok(isAppError(err));
            assert.equal(err.code, 'truncated_body', `cut at ${cut}: ${err.message}`);
            assert.equal(err.details?.received, cut);
            const expected = cut < 8 ? 8 : cut < headerEnd ? headerEnd : body.length;
            assert.equal(err.details?.expected, expected, `cut at ${cut}`);
            return true;
          },
        );
      }
    }
  });

  it('rejects bytes past the declared end as length_mismatch, in the same chunk or a later one', () => {
    const body = encodeSafetensors([tensor(prng(12), 'w', 'I16', [5])]);
    const extra = Buffer.concat([body, Buffer.from([0])]);
    for (const chunking of [1, 3, extra.length])
      assertCode(feedAll(create, extra, chunking), 'length_mismatch', /past the \d+ bytes/);
    const decoder = create(new RecordingVisitor(), LIMITS);
    decoder.write(body);
    assertCode(() => decoder.write(new Uint8Array([1, 2, 3])), 'length_mismatch');
    assertCode(feedAll(create, Buffer.concat([withHeader({}), Buffer.from([9])])), 'length_mismatch');
  });
});

describe('safetensors decoder: hostile headers', () => {
  const nested = (depth: number, inner = '0') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;
  const w = (extra = '') => `"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]${extra}}`;

  it('rejects nesting deeper than 64 levels anywhere in the header, before parsing it (was a 500)', () => {
    const bodies = [
      `{"w":${nested(5000)}}`,
      `{${w()},"x":${nested(30_000)}}`,
      `{"__metadata__":{"k":${nested(70)}},${w()}}`,
      `{"w":{"dtype":"F32","shape":${nested(5000, '1')},"data_offsets":[0,4]}}`,
      `{${w(`,"extra":${nested(63)}`)}}`,
      `{${w(`,"extra":${'{"a":'.repeat(63)}0${'}'.repeat(63)}`)}}`,
    ];
    for (const text of bodies) {
      assertCode(
        feedAll(create, withHeader(Buffer.from(text), new Uint8Array(4)), 1000),
        'malformed_checkpoint',
        /safetensors header nests arrays or objects deeper than 64 levels/,
      );
    }
    // 64 levels are fine (unknown entry keys are ignored, as by the reference implementation).
    const body = withHeader(Buffer.from(`{${w(`,"extra":${nested(62)}`)}}`), new Uint8Array([7]));
    assert.deepEqual(decode(create, body, 5).visitor.bytesOf('w'), Buffer.from([7]));
  });

  it('describes bad values briefly whatever their size or depth', () => {
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.equal(describeValue(deep), `${'['.repeat(57)}...`);
    assert.equal(describeValue({ a: [1, 'x', null, true], b: { c: 2.5 } }), '{"a":[1,"x",null,true],"b":{"c":2.5}}');
    assert.equal(describeValue('y'.repeat(10_000)).length, 60);
    assert.equal(describeValue(Array.from({ length: 1_000_000 }, (_, i) => i)).length, 60);
    assert.equal(describeValue(undefined), 'missing');
    assert.equal(describeValue(Number.NaN), 'NaN');
  });

  it('rejects a key repeated within one object, naming it (JSON.parse would keep the last)', () => {
    const cases: [string, RegExp][] = [
      [`{${w()},${w()}}`, /repeats the key "w": keys must be unique/],
      [`{"w":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}}`, /repeats the key "dtype" in "w"/],
      [`{${w()},"\\u0077":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, /repeats the key "w"/],
      [`{"__metadata__":{"k":"1","k":"2"},${w()}}`, /repeats the key "k" in "__metadata__"/],
      [`{"__metadata__":{},"__metadata__":{},${w()}}`, /repeats the key "__metadata__"/],
      [`{"a\\"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a\\"b":1}`, /repeats the key "a\\"b"/],
      [`{${w(',"x":{"y":[{"z":1,"z":2}]}')}}`, /repeats the key "z" in "w" > "x"/],
    ];
    for (const [text, message] of cases) {
      for (const chunking of [1, 1000]) {
        assertCode(
          feedAll(create, withHeader(Buffer.from(text), new Uint8Array(1)), chunking),
          'malformed_checkpoint',
          message,
        );
      }
    }
  });

  it('tells keys apart exactly: escapes, brackets and quotes inside strings are not structure', () => {
    const metadata = {
      a: '{"a": [[[[',
      'a\\': 'x',
      'a"': ']]}}',
      'ü\u0000': 'y',
      A: '\\"',
      '': '"k":1,"k":2',
    };
    const text = JSON.stringify({ __metadata__: metadata, w: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } });
    const result = decode(create, withHeader(Buffer.from(text), new Uint8Array([9])), 3);
    assert.deepEqual(result.layout.metadata, metadata);
    // The same key in two different objects is not a repeat.
    const twice = `{"__metadata__":{"dtype":"x"},${w()}}`;
    decode(create, withHeader(Buffer.from(twice), new Uint8Array(1)));
  });

  it('checks a large header in linear time', () => {
    // 60,000 metadata keys and one backslash at the end: a scanner that looked ahead for the next backslash
    // from every string would read the header 60,000 times.
    const entries = Array.from({ length: 60_000 }, (_, i) => `"key${i}":"value${i}"`);
    const text = `{"__metadata__":{${entries.join(',')},"last":"\\\\"},${w()}}`;
    const limits = { ...LIMITS, maxHeaderBytes: 4 * 1024 * 1024 };
    const started = performance.now();
    const result = decode(create, withHeader(Buffer.from(text), new Uint8Array(1)), 1 << 20, limits);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(Object.keys(result.layout.metadata ?? {}).length, 60_001);
    assert.ok(seconds < 5, `took ${seconds.toFixed(2)} s`);
    const repeated = `{"__metadata__":{${entries.join(',')},"key59999":"again"},${w()}}`;
    assertCode(
      feedAll(create, withHeader(Buffer.from(repeated), new Uint8Array(1)), 1 << 20, limits),
      'malformed_checkpoint',
      /repeats the key "key59999" in "__metadata__"/,
    );
  });
});

describe('safetensors uploads through the HTTP app: hostile headers answer 400, never 500', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('a header nesting arrays 5,000 deep, and one repeating a key', async () => {
    const bodies: [Buffer, RegExp][] = [
      [withHeader(Buffer.from(`{"w":${'['.repeat(5000)}${']'.repeat(5000)}}`)), /deeper than 64 levels/],
      [
        withHeader(
          Buffer.from(
            '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
          ),
          new Uint8Array(1),
        ),
        /repeats the key "w"/,
      ],
    ];
    for (const [body, message] of bodies) {
      const res = await request(gw.app)
        .put('/v1/runs/hostile/checkpoints/1')
        .set('content-type', 'application/vnd.safetensors')
        .send(body);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'malformed_checkpoint');
      assert.match(res.body.error.message, message);
    }
  });
});

describe('safetensors decoder: memory', () => {
  const size = 64 * 1024 * 1024;
  const body = () =>
    encodeSafetensors([{ name: 'big', dtype: 'F32', shape: [size / 4], data: Buffer.alloc(size, 0x3f) }]);
  const MiB = 2 ** 20;

  it('decodes a 64 MiB checkpoint fed in 64 KiB chunks without buffering the body', () => {
    const growth = measureDecodeGrowth(create, body(), 64 * 1024);
    assert.ok(growth < 8 * MiB, `memory grew by ${(growth / MiB).toFixed(1)} MiB while decoding 64 MiB`);
  });

  it('the measurement notices a visitor or a decoder that keeps the body (so the check above means something)', () => {
    const kept: Uint8Array[] = [];
    const hoarder: TensorVisitor = { onHeader() {}, onData: (_i, _o, bytes) => void kept.push(bytes) };
    const byVisitor = measureDecodeGrowth(create, body(), 64 * 1024, hoarder);
    assert.ok(byVisitor > 48 * MiB, `a hoarding visitor: memory grew by only ${(byVisitor / MiB).toFixed(1)} MiB`);
    kept.length = 0;
    const buffering: DecoderFactory = (visitor, limits) => {
      const inner = create(visitor, limits);
      const pieces: Uint8Array[] = [];
      return {
        format: inner.format,
        expectedLength: null,
        write: (chunk) => void pieces.push(chunk),
        end: () => {
          for (const piece of pieces) inner.write(piece);
          return inner.end();
        },
      };
    };
    const byDecoder = measureDecodeGrowth(buffering, body(), 64 * 1024);
    assert.ok(byDecoder > 48 * MiB, `a buffering decoder: memory grew by only ${(byDecoder / MiB).toFixed(1)} MiB`);
  });
});
