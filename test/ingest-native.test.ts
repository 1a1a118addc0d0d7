import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pack, unpack, unpackMultiple } from 'msgpackr';
import request from 'supertest';
import { isAppError } from '../src/errors.js';
import type { TensorVisitor } from '../src/ingest/decoder.js';
import { createNativeDecoder } from '../src/ingest/native-decoder.js';
import {
  NATIVE_MAX_CHUNK_BYTES,
  encodeNative,
  encodeNativeDataRecordPrefix,
  encodeNativeHeader,
  encodeNativeStream,
} from '@trajgate/sdk/wire/native-format';
import type { TensorData } from '@trajgate/sdk/wire/safetensors';
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
  decodeThroughReusedBuffer,
} from './helpers/checkpoints.js';
import { createTestGateway } from './helpers/gateway.js';

const create = createNativeDecoder;
const MiB = 2 ** 20;

const header = (value: Record<string, unknown>): Buffer =>
  pack({ format: 'trajgate-checkpoint', version: 1, ...value });
const spec = (name: string, dtype: string, shape: unknown) => ({ name, dtype, shape });
/** A data record with any chunk length (the encoder refuses the invalid ones these tests need). */
function rawRecord(indexBytes: number[], chunk: Uint8Array): Buffer {
  const len = Buffer.alloc(5);
  len[0] = 0xc6;
  len.writeUInt32BE(chunk.byteLength, 1);
  return Buffer.concat([Buffer.from([0x92, ...indexBytes]), len, chunk]);
}
const record = (index: number, chunk: Uint8Array) =>
  Buffer.concat([encodeNativeDataRecordPrefix(index, chunk.byteLength), chunk]);

describe('native format writer', () => {
  it('writes data record prefixes with the smallest msgpack encodings', () => {
    const cases: [number, number, number[]][] = [
      [0, 1, [0x92, 0x00, 0xc4, 0x01]],
      [127, 255, [0x92, 0x7f, 0xc4, 0xff]],
      [128, 256, [0x92, 0xcc, 0x80, 0xc5, 0x01, 0x00]],
      [255, 65535, [0x92, 0xcc, 0xff, 0xc5, 0xff, 0xff]],
      [256, 65536, [0x92, 0xcd, 0x01, 0x00, 0xc6, 0x00, 0x01, 0x00, 0x00]],
      [65536, NATIVE_MAX_CHUNK_BYTES, [0x92, 0xce, 0x00, 0x01, 0x00, 0x00, 0xc6, 0x01, 0x00, 0x00, 0x00]],
    ];
    for (const [index, length, bytes] of cases) {
      assert.deepEqual([...encodeNativeDataRecordPrefix(index, length)], bytes, `index ${index}, length ${length}`);
    }
    // What msgpack itself makes of a record.
    assert.deepEqual(unpack(record(300, new Uint8Array([1, 2, 3]))), [300, Buffer.from([1, 2, 3])]);
    for (const [index, length] of [
      [-1, 1],
      [0.5, 1],
      [2 ** 32, 1],
      [0, 0],
      [0, NATIVE_MAX_CHUNK_BYTES + 1],
    ]) {
      assert.throws(() => encodeNativeDataRecordPrefix(index, length), RangeError);
    }
  });

  it('writes a header map and records that a generic msgpack reader understands', () => {
    const rng = prng(1);
    const tensors = [tensor(rng, 'a', 'F32', [2, 3]), tensor(rng, 'b', 'U8', [0]), tensor(rng, 'c', 'BF16', [])];
    const body = encodeNative(tensors, { chunkBytes: 10, metadata: { k: 'v' } });
    const values = unpackMultiple(body) as unknown[];
    assert.deepEqual(values[0], {
      format: 'trajgate-checkpoint',
      version: 1,
      tensors: tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
      metadata: { k: 'v' },
    });
    assert.deepEqual(
      values.slice(1).map((v) => {
        const [i, chunk] = v as [number, Buffer];
        return [i, chunk.length];
      }),
      [
        [0, 10],
        [0, 10],
        [0, 4],
        [2, 2],
      ],
      'no records for the zero-byte tensor; chunks split at chunkBytes',
    );
    assert.deepEqual(
      encodeNativeHeader(tensors, { k: 'v' }),
      body.subarray(0, encodeNativeHeader(tensors, { k: 'v' }).length),
    );
  });

  it('streams pieces without copying tensor data, concatenating to encodeNative', () => {
    const rng = prng(2);
    const tensors = randomCheckpoint(rng);
    const pieces = [...encodeNativeStream(tensors, { chunkBytes: 16 })];
    assert.deepEqual(Buffer.concat(pieces), encodeNative(tensors, { chunkBytes: 16 }));
    const buffers = new Set(tensors.map((t) => t.data.buffer));
    assert.ok(
      pieces.filter((p) => buffers.has(p.buffer as ArrayBuffer)).length >=
        tensors.filter((t) => t.data.length > 0).length,
    );
  });

  it('refuses inconsistent tensors and chunk sizes', () => {
    const t = tensor(prng(3), 'a', 'F32', [2]);
    assert.throws(() => encodeNative([{ ...t, shape: [3] }]), RangeError);
    assert.throws(() => encodeNative([t, t]), RangeError);
    assert.throws(() => encodeNative([t], { chunkBytes: 0 }), RangeError);
    assert.throws(() => encodeNative([t], { chunkBytes: NATIVE_MAX_CHUNK_BYTES + 1 }), RangeError);
  });
});

describe('native decoder: well-formed checkpoints', () => {
  it('round-trips random checkpoints of every dtype, whatever the record and write sizes', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rng = prng(seed);
      const tensors = randomCheckpoint(rng);
      const metadata = seed % 3 === 0 ? undefined : { seed: String(seed), ключ: 'значение' };
      for (const chunkBytes of [1, 3, 40, 1000, undefined]) {
        const body = encodeNative(tensors, { chunkBytes, metadata });
        for (const chunking of [
          body.length,
          1,
          5,
          { random: prng(seed * 7), max: 64 },
          { random: prng(seed * 11), max: 4096 },
        ]) {
          const result = decode(create, body, chunking);
          assertDecodedAs(result, tensors, metadata ?? null);
          assert.equal(result.decoder.expectedLength, null);
          assert.equal(result.layout.format, 'native');
        }
      }
    }
  });

  it('decodes the pieces of encodeNativeStream written one by one', () => {
    const tensors = randomCheckpoint(prng(4));
    const visitor = new RecordingVisitor();
    const decoder = create(visitor, LIMITS);
    for (const piece of encodeNativeStream(tensors, { chunkBytes: 24 })) decoder.write(piece);
    assertDecodedAs({ visitor, layout: decoder.end() }, tensors, null);
  });

  it("does not keep the caller's chunks: one write buffer reused for every chunk is fine", () => {
    const tensors = randomCheckpoint(prng(13));
    const body = encodeNative(tensors, { chunkBytes: 7, metadata: { a: 'b' } });
    for (const size of [1, 6, 64]) assertDecodedAs(decodeThroughReusedBuffer(create, body, size), tensors, { a: 'b' });
  });

  it('accepts an empty checkpoint, zero-byte tensors only, and fixmap, map16 and map32 headers', () => {
    assertDecodedAs(decode(create, encodeNative([])), [], null);
    const empties: TensorData[] = [tensor(prng(5), 'e', 'F32', [0]), tensor(prng(5), 'f', 'I64', [2, 0])];
    assertDecodedAs(decode(create, encodeNative(empties), 1), empties, null);
    const t = tensor(prng(5), 'w', 'I32', [3]);
    const fixmap = encodeNativeHeader([t]);
    assert.equal(fixmap[0], 0x83, 'format, version, tensors');
    // The same map, re-encoded as map16 and map32.
    const asMap16 = Buffer.concat([Buffer.from([0xde, 0x00, 0x03]), fixmap.subarray(1)]);
    const asMap32 = Buffer.concat([Buffer.from([0xdf, 0x00, 0x00, 0x00, 0x03]), fixmap.subarray(1)]);
    for (const h of [fixmap, asMap16, asMap32])
      assertDecodedAs(decode(create, Buffer.concat([h, record(0, t.data)]), 2), [t], null);
  });

  it('accepts index and length encodings wider than needed', () => {
    const t = tensor(prng(6), 'w', 'F64', [2]);
    const body = Buffer.concat([
      encodeNativeHeader([t]),
      rawRecord([0xcd, 0x00, 0x00], t.data.subarray(0, 5)),
      rawRecord([0xce, 0, 0, 0, 0], t.data.subarray(5)),
    ]);
    assertDecodedAs(decode(create, body, 1), [t], null);
  });
});

describe('native decoder: malformed checkpoints', () => {
  const t = tensor(prng(9), 'w', 'F32', [4]);
  const u = tensor(prng(9), 'u', 'I16', [3]);
  const h2 = encodeNativeHeader([t, u]);

  it('rejects a first byte that is not a msgpack map at once', () => {
    for (const first of [0x00, 0x92, 0x68, 0xc4, 0xdc]) {
      const decoder = create(new RecordingVisitor(), LIMITS);
      assertCode(() => decoder.write(new Uint8Array([first])), 'malformed_checkpoint', /must start with a msgpack map/);
    }
    assertCode(feedAll(create, Buffer.from('hello world')), 'malformed_checkpoint');
  });

  it('rejects a header over the cap once more than the cap is buffered', () => {
    const big = header({ tensors: [], metadata: { pad: 'x'.repeat(LIMITS.maxHeaderBytes) } });
    for (const chunking of [1, 1000, big.length])
      assertCode(feedAll(create, big, chunking), 'header_too_large', /exceeds the limit/);
    // A header that never ends: a map16 promising 65535 entries, the first an array32 promising 2^32 − 1 nils.
    const endless = Buffer.concat([
      Buffer.from([0xde, 0xff, 0xff, 0xa1, 0x61, 0xdd, 0xff, 0xff, 0xff, 0xff]),
      Buffer.alloc(4 * LIMITS.maxHeaderBytes, 0xc0),
    ]);
    const decoder = create(new RecordingVisitor(), LIMITS);
    let written = 0;
    assertCode(() => {
      for (const chunk of chunks(endless, 7)) {
        decoder.write(chunk);
        written += chunk.length;
      }
    }, 'header_too_large');
    assert.ok(written <= LIMITS.maxHeaderBytes + 7, `threw after ${written} bytes`);
    // Just under the cap is fine.
    const fits = header({ tensors: [], metadata: { pad: 'x'.repeat(LIMITS.maxHeaderBytes - 100) } });
    assert.ok(fits.length <= LIMITS.maxHeaderBytes);
    decode(create, fits, 3);
  });

  it('rejects headers with the wrong format, version or shape', () => {
    const cases: [Buffer, RegExp][] = [
      [pack({ format: 'safetensors', version: 1, tensors: [] }), /not a trajgate checkpoint/],
      [pack({ version: 1, tensors: [] }), /not a trajgate checkpoint/],
      [header({ version: 2, tensors: [] }), /version 2 is not supported/],
      [header({ version: '1', tensors: [] }), /version "1" is not supported/],
      [pack({ format: 'trajgate-checkpoint', version: 1 }), /tensors/],
      [header({ tensors: {} }), /tensors/],
      [header({ tensors: [], extra: 1 }), /extra|key/i],
      [header({ tensors: [{ name: 'a', dtype: 'F32', shape: [1], extra: true }] }), /tensors\.0/],
      [header({ tensors: [{ dtype: 'F32', shape: [1] }] }), /tensors\.0\.name/],
      [header({ tensors: [spec('', 'F32', [1])] }), /tensors\.0\.name/],
      [header({ tensors: [spec('a', 'F32', [1]), spec('a', 'F32', [1])] }), /'a' twice/],
      [header({ tensors: [spec('a', 'F32', [-1])] }), /'a'.*shape/],
      [header({ tensors: [spec('a', 'F32', [1.5])] }), /'a'.*shape/],
      [header({ tensors: [spec('a', 'F32', 'big')] }), /'a'.*shape/],
      [header({ tensors: [spec('a', 'F32', [2 ** 60])] }), /'a'.*shape/],
      [header({ tensors: [spec('a', 'float', [1])] }), /'a'.*dtype/],
      [header({ tensors: [spec('a', 'F32', [1])], metadata: { k: 1 } }), /metadata/],
      [header({ tensors: [spec('a', 'F32', [1])], metadata: ['v'] }), /metadata/],
      [Buffer.from([0x81, 0xa1, 0x61, 0xc1]), /msgpack|format/],
    ];
    for (const [body, message] of cases) assertCode(feedAll(create, body, 3), 'malformed_checkpoint', message);
    for (const dtype of ['F4', 'F6_E2M3', 'F6_E3M2', 'C64']) {
      assertCode(
        feedAll(create, header({ tensors: [spec('a', dtype, [1])] })),
        'unsupported_dtype',
        new RegExp(`'a' has dtype ${dtype}, which trajgate does not store`),
      );
    }
    const three = header({ tensors: [spec('a', 'U8', [0]), spec('b', 'U8', [0]), spec('c', 'U8', [0])] });
    assertCode(feedAll(create, three, 1, { ...LIMITS, maxTensors: 2 }), 'malformed_checkpoint', /3 tensors/);
  });

  it('rejects data records that break the framing or the order', () => {
    const w = t.data;
    const cases: [string, Buffer, RegExp][] = [
      ['wrong marker', Buffer.from([0x93, 0x00, 0xc4, 0x01, 0x00]), /expected a data record.*0x93/],
      ['a map instead of a record', pack({ a: 1 }), /expected a data record/],
      ['int8 index', Buffer.from([0x92, 0xd0, 0x00, 0xc4, 0x01, 0x00]), /index must be a msgpack uint/],
      [
        'uint64 index',
        Buffer.from([0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0, 0xc4, 0x01, 0x00]),
        /index must be a msgpack uint/,
      ],
      ['str chunk', Buffer.from([0x92, 0x00, 0xa4, 1, 2, 3, 4]), /must be msgpack bin/],
      ['index out of range', record(2, w), /index 2, but the header lists 2 tensors/],
      ['data for a later tensor first', record(1, u.data), /'u'.*before tensor 'w' is complete/],
      [
        'next tensor before the previous finished',
        Buffer.concat([record(0, w.subarray(0, 8)), record(1, u.data)]),
        /'u'.*before tensor 'w' is complete \(8 bytes missing\)/,
      ],
      [
        'going backwards',
        Buffer.concat([record(0, w), record(1, u.data.subarray(0, 2)), record(0, w.subarray(0, 4))]),
        /'w'.*after tensor 'u'/,
      ],
      [
        'chunk longer than the tensor',
        record(0, Buffer.concat([w, Buffer.alloc(4)])),
        /20 bytes but only 16 of the tensor remain/,
      ],
      [
        'chunk longer than what remains',
        Buffer.concat([record(0, w.subarray(0, 12)), record(0, w.subarray(0, 8))]),
        /8 bytes but only 4/,
      ],
      ['empty chunk', rawRecord([0x00], new Uint8Array(0)), /empty data record/],
      ['trailing byte', Buffer.concat([record(0, w), record(1, u.data), Buffer.from([0x92])]), /after the last tensor/],
      ['trailing record', Buffer.concat([record(0, w), record(1, u.data), record(1, u.data)]), /after the last tensor/],
    ];
    for (const [name, data, message] of cases) {
      for (const chunking of [1, 4, 10_000]) {
        assert.doesNotThrow(() => message.test(name));
        assertCode(feedAll(create, Buffer.concat([h2, data]), chunking), 'malformed_checkpoint', message);
      }
    }
  });

  it('rejects a chunk over the 16 MiB cap from its prefix, before its payload', () => {
    const big = tensor(prng(10), 'big', 'U8', [NATIVE_MAX_CHUNK_BYTES + 10]);
    const decoder = create(new RecordingVisitor(), LIMITS);
    decoder.write(encodeNativeHeader([big]));
    const prefix = Buffer.from([0x92, 0x00, 0xc6, 0, 0, 0, 0]);
    prefix.writeUInt32BE(NATIVE_MAX_CHUNK_BYTES + 1, 3);
    assertCode(() => decoder.write(prefix), 'malformed_checkpoint', /over the 16777216-byte chunk limit/);
  });

  it('rejects data for a zero-byte tensor', () => {
    const body = Buffer.concat([
      encodeNativeHeader([{ name: 'e', dtype: 'F32', shape: [0] }, t]),
      record(0, new Uint8Array(4)),
    ]);
    assertCode(feedAll(create, body), 'malformed_checkpoint', /'e'.*only 0/);
  });

  it('reports an early end as truncated_body, wherever it falls', () => {
    const body = encodeNative([t, u], { chunkBytes: 6 });
    const headerEnd = h2.length;
    for (let cut = 0; cut < body.length; cut++) {
      for (const chunking of [1, body.length]) {
        const decoder = create(new RecordingVisitor(), LIMITS);
        for (const chunk of chunks(body.subarray(0, cut), chunking)) decoder.write(chunk);
        assert.throws(
          () => decoder.end(),
          (err: unknown) => {
            assert.ok(isAppError(err));
            assert.equal(err.code, 'truncated_body', `cut at ${cut}: ${err.message}`);
            assert.equal(err.details?.received, cut);
            if (cut >= headerEnd) assert.ok((err.details?.missingTensorBytes as number) > 0);
            return true;
          },
        );
      }
    }
    decode(create, body, 1);
  });
});

describe('native decoder: hostile headers', () => {
  /** A msgpack str (fixstr or str8). */
  const str = (text: string): Buffer => {
    const bytes = Buffer.from(text);
    const head = bytes.length < 32 ? [0xa0 | bytes.length] : [0xd9, bytes.length];
    return Buffer.concat([Buffer.from(head), bytes]);
  };
  /** A header map written key by key, values given as raw msgpack. */
  const rawHeader = (entries: [Buffer | string, Buffer][]): Buffer =>
    Buffer.concat([
      Buffer.from([0x80 | entries.length]),
      ...entries.flatMap(([key, value]) => [typeof key === 'string' ? str(key) : key, value]),
    ]);
  const FORMAT: [string, Buffer] = ['format', pack('trajgate-checkpoint')];
  const NO_TENSORS: [string, Buffer] = ['tensors', pack([])];
  const u8 = spec('u', 'U8', [1]);

  it('requires the version to be a msgpack integer: 1.0 as a float32 or float64 is refused', () => {
    const floats = [Buffer.from([0xca, 0x3f, 0x80, 0, 0]), Buffer.from([0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0])];
    for (const version of floats) {
      assert.equal(unpack(version), 1, 'msgpackr reads the float as the number 1');
      for (const chunking of [1, 1000]) {
        assertCode(
          feedAll(create, rawHeader([FORMAT, ['version', version], NO_TENSORS]), chunking),
          'malformed_checkpoint',
          new RegExp(
            `version must be a msgpack integer, got 1 encoded as a float \\(type byte 0x${version[0].toString(16)}\\)`,
          ),
        );
      }
    }
    assertCode(
      feedAll(create, rawHeader([FORMAT, ['version', Buffer.from([0xcb, 0x40, 0, 0, 0, 0, 0, 0, 0])], NO_TENSORS])),
      'malformed_checkpoint',
      /version must be a msgpack integer, got 2 encoded as a float/,
    );
    // Every integer encoding of 1 is the version 1.
    const integers = [[0x01], [0xcc, 1], [0xcd, 0, 1], [0xce, 0, 0, 0, 1], [0xd0, 1], [0xd3, 0, 0, 0, 0, 0, 0, 0, 1]];
    for (const version of integers) {
      const body = Buffer.concat([
        rawHeader([FORMAT, ['version', Buffer.from(version)], ['tensors', pack([u8])]]),
        record(0, new Uint8Array([5])),
      ]);
      assert.deepEqual(decode(create, body, 2).visitor.bytesOf('u'), Buffer.from([5]));
    }
  });

  it('rejects nesting deeper than 64 levels as soon as it arrives, without unpacking (msgpackr recurses)', () => {
    const deep = (levels: number) => Buffer.concat([Buffer.alloc(levels, 0x91), Buffer.from([0xc0])]);
    for (const [key, value] of [
      ['metadata', Buffer.concat([Buffer.from([0x81]), str('k'), deep(5000)])],
      [
        'tensors',
        Buffer.concat([
          Buffer.from([0x91, 0x83]),
          str('name'),
          str('a'),
          str('dtype'),
          str('F32'),
          str('shape'),
          deep(100_000),
        ]),
      ],
    ] as [string, Buffer][]) {
      const body = rawHeader([FORMAT, ['version', pack(1)], [key, value]]);
      const decoder = create(new RecordingVisitor(), { ...LIMITS, maxHeaderBytes: 1 << 20 });
      let written = 0;
      assertCode(
        () => {
          for (const chunk of chunks(body, 64)) {
            decoder.write(chunk);
            written += chunk.length;
          }
        },
        'malformed_checkpoint',
        /native header nests arrays or maps deeper than 64 levels/,
      );
      assert.ok(written < 1000, `rejected after ${written} bytes`);
    }
    // 64 levels pass the walk (and then meet the schema: metadata values must be strings).
    const fits = rawHeader([
      FORMAT,
      ['version', pack(1)],
      NO_TENSORS,
      ['metadata', Buffer.concat([Buffer.from([0x81]), str('k'), deep(62)])],
    ]);
    assertCode(feedAll(create, fits, 5), 'malformed_checkpoint', /metadata value for key 'k' must be a string/);
  });

  it('rejects a key repeated in any map, naming it (msgpackr would keep the last)', () => {
    const cases: [Buffer, RegExp][] = [
      [rawHeader([FORMAT, ['version', pack(2)], ['version', pack(1)], NO_TENSORS]), /repeats the key 'version'/],
      [rawHeader([FORMAT, FORMAT, ['version', pack(1)], NO_TENSORS]), /repeats the key 'format'/],
      [
        rawHeader([
          FORMAT,
          ['version', pack(1)],
          [
            'tensors',
            Buffer.concat([
              Buffer.from([0x91, 0x84]),
              str('name'),
              str('a'),
              str('dtype'),
              str('U8'),
              str('shape'),
              pack([1]),
              str('name'),
              str('b'),
            ]),
          ],
        ]),
        /repeats the key 'name'/,
      ],
      [
        rawHeader([
          FORMAT,
          ['version', pack(1)],
          NO_TENSORS,
          ['metadata', Buffer.concat([Buffer.from([0x82]), str('k'), str('1'), str('k'), str('2')])],
        ]),
        /repeats the key 'k'/,
      ],
      // The same key as fixstr and as str8 is the same key.
      [
        rawHeader([
          FORMAT,
          ['version', pack(1)],
          [Buffer.from([0xd9, 7, ...Buffer.from('version')]), pack(1)],
          NO_TENSORS,
        ]),
        /repeats the key 'version'/,
      ],
    ];
    for (const [body, message] of cases) {
      for (const chunking of [1, 1000]) assertCode(feedAll(create, body, chunking), 'malformed_checkpoint', message);
    }
  });

  it('rejects map keys that are not UTF-8 strings, extension types and the byte 0xc1', () => {
    const cases: [Buffer, RegExp][] = [
      [rawHeader([FORMAT, [pack(7), pack(1)], NO_TENSORS]), /map key at offset \d+ is not a string \(type byte 0x07\)/],
      [rawHeader([FORMAT, [pack(null), pack(1)], NO_TENSORS]), /not a string \(type byte 0xc0\)/],
      [
        rawHeader([FORMAT, [Buffer.from([0xa2, 0xff, 0xfe]), pack(1)], NO_TENSORS]),
        /map key at offset \d+ is not valid UTF-8/,
      ],
      [rawHeader([FORMAT, ['version', Buffer.from([0xd4, 0x01, 0x00])], NO_TENSORS]), /extension type \(0xd4\)/],
      [
        rawHeader([
          FORMAT,
          ['version', pack(1)],
          ['metadata', Buffer.concat([Buffer.from([0x81]), str('t'), Buffer.from([0xd6, 0xff, 0, 0, 0, 1])])],
        ]),
        /extension type \(0xd6\)/,
      ],
      [
        rawHeader([FORMAT, ['version', Buffer.from([0xc1])], NO_TENSORS]),
        /not valid msgpack: the never-used type byte 0xc1/,
      ],
    ];
    for (const [body, message] of cases) assertCode(feedAll(create, body, 3), 'malformed_checkpoint', message);
  });

  it('answers 400 through the HTTP app, never 500', async () => {
    const gw = await createTestGateway();
    try {
      const bodies: [Buffer, RegExp][] = [
        [
          rawHeader([FORMAT, ['version', Buffer.from([0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0])], NO_TENSORS]),
          /version must be a msgpack integer/,
        ],
        [
          rawHeader([
            FORMAT,
            ['version', pack(1)],
            ['metadata', Buffer.concat([Buffer.alloc(5000, 0x91), Buffer.from([0xc0])])],
          ]),
          /deeper than 64 levels/,
        ],
      ];
      for (const [body, message] of bodies) {
        const res = await request(gw.app)
          .put('/v1/runs/hostile-native/checkpoints/1')
          .set('content-type', 'application/vnd.trajgate.checkpoint+msgpack')
          .send(body);
        assert.equal(res.status, 400, JSON.stringify(res.body));
        assert.equal(res.body.error.code, 'malformed_checkpoint');
        assert.match(res.body.error.message, message);
      }
    } finally {
      await gw.close();
    }
  });
});

describe('native decoder: memory', () => {
  it('decodes a 64 MiB checkpoint fed in 64 KiB chunks without buffering the body', () => {
    const size = 64 * MiB;
    const body = encodeNative([{ name: 'big', dtype: 'BF16', shape: [size / 2], data: Buffer.alloc(size, 0x3f) }], {
      chunkBytes: 1_000_003,
    });
    let seen = 0;
    const visitor: TensorVisitor = {
      onHeader() {},
      onData: (_i, _o, bytes) => {
        seen += bytes.byteLength;
      },
    };
    const growth = measureDecodeGrowth(create, body, 64 * 1024, visitor);
    assert.equal(seen, size);
    assert.ok(growth < 8 * MiB, `memory grew by ${(growth / MiB).toFixed(1)} MiB while decoding 64 MiB`);
  });
});
