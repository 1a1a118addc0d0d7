import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SNIFF_BYTES, createDecoder, formatFromContentType, sniffFormat } from '../src/ingest/sniff.js';
import { encodeNative, encodeNativeHeader } from '@trajgate/sdk/wire/native-format';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { LIMITS, assertDecodedAs, decode, prng, randomCheckpoint } from './helpers/checkpoints.js';

describe('format sniffing', () => {
  it('recognises both formats from their first bytes', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const tensors = randomCheckpoint(prng(seed));
      const safetensors = encodeSafetensors(tensors, seed % 2 ? { a: 'b' } : undefined);
      const native = encodeNative(tensors);
      assert.equal(sniffFormat(safetensors.subarray(0, SNIFF_BYTES)), 'safetensors');
      assert.equal(sniffFormat(safetensors), 'safetensors');
      assert.equal(sniffFormat(native.subarray(0, SNIFF_BYTES)), 'native');
      assert.equal(sniffFormat(native.subarray(0, 1)), 'native', 'one byte is enough for native');
    }
  });

  it('checks safetensors first: a header length whose low byte looks like a fixmap is still safetensors', () => {
    let found = 0;
    for (let n = 1; n < 600; n++) {
      const body = encodeSafetensors([{ name: 'x'.repeat(n), dtype: 'U8', shape: [1], data: new Uint8Array(1) }]);
      if (body[0] < 0x80 || body[0] > 0x8f) continue;
      found++;
      assert.equal(sniffFormat(body.subarray(0, SNIFF_BYTES)), 'safetensors');
    }
    assert.ok(found > 0);
  });

  it('recognises map16/map32 native headers and a safetensors header over any cap', () => {
    assert.equal(sniffFormat(Buffer.from([0xde, 0, 3])), 'native');
    assert.equal(sniffFormat(Buffer.from([0xdf, 0, 0, 0, 3])), 'native');
    const huge = Buffer.alloc(9);
    huge.writeBigUInt64LE(2n ** 40n);
    huge[8] = 0x7b;
    assert.equal(sniffFormat(huge), 'safetensors', 'so the decoder can answer header_too_large');
  });

  it('returns null for anything else', () => {
    for (const bytes of [
      Buffer.alloc(0),
      Buffer.from('hello world, not a checkpoint'),
      Buffer.from('{"a": 1}'),
      Buffer.from([0x92, 0x00]),
      Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), // a safetensors prefix without its '{'
      Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 0x20]),
      Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xff, 0x7b]), // length beyond 2^53
    ]) {
      assert.equal(sniffFormat(bytes), null, bytes.toString('hex'));
    }
  });

  it('never mistakes a native header for safetensors', () => {
    const header = encodeNativeHeader([{ name: 'w', dtype: 'F32', shape: [1] }], { k: 'v' });
    assert.notEqual(header[8], 0x7b);
    assert.equal(sniffFormat(header), 'native');
  });
});

describe('content types', () => {
  it('maps media types, ignoring case and parameters', () => {
    const cases: [string | undefined, string | null][] = [
      ['application/vnd.safetensors', 'safetensors'],
      ['Application/VND.Safetensors; charset=binary', 'safetensors'],
      ['application/vnd.trajgate.checkpoint+msgpack', 'native'],
      [' application/vnd.trajgate.checkpoint+msgpack ;v=1', 'native'],
      ['application/octet-stream', 'sniff'],
      ['APPLICATION/OCTET-STREAM; foo=bar', 'sniff'],
      [undefined, 'sniff'],
      ['', 'sniff'],
      ['text/plain', null],
      ['application/json', null],
      ['application/msgpack', null],
      ['application/vnd.safetensorsx', null],
    ];
    for (const [type, expected] of cases) assert.equal(formatFromContentType(type), expected, String(type));
  });
});

describe('createDecoder', () => {
  it('dispatches to the decoder for each format', () => {
    const tensors = randomCheckpoint(prng(3));
    const safetensors = decode((v, l) => createDecoder('safetensors', v, l), encodeSafetensors(tensors), 7, LIMITS);
    assert.equal(safetensors.decoder.format, 'safetensors');
    assertDecodedAs(safetensors, tensors, null);
    const native = decode((v, l) => createDecoder('native', v, l), encodeNative(tensors, { chunkBytes: 9 }), 7, LIMITS);
    assert.equal(native.decoder.format, 'native');
    assertDecodedAs(native, tensors, null);
  });
});
