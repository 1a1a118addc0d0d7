import { CHECKPOINT_FORMATS, MEDIA_TYPES, OCTET_STREAM, type CheckpointFormat } from '@trajgate/sdk/wire/formats';
import type { CheckpointDecoder, DecoderLimits, TensorVisitor } from './decoder.js';
import { createNativeDecoder } from './native-decoder.js';
import { createSafetensorsDecoder } from './safetensors-decoder.js';

/** Bytes `sniffFormat` needs to recognise safetensors (a native checkpoint is recognised from its first). */
export const SNIFF_BYTES = 9;

/**
 * Guesses a body's format from its first bytes; null if it is neither. safetensors: a u64 little-endian
 * header length (below 2^53) followed by '{'. Native: a msgpack map marker (fixmap 0x80-0x8f, map16 0xde,
 * map32 0xdf). safetensors is tried first: its first byte (the header length's low byte) can look like a
 * fixmap, while a native header's byte 8 is inside the "format" key or value, never '{'.
 */
export function sniffFormat(firstBytes: Uint8Array): CheckpointFormat | null {
  if (firstBytes.byteLength >= SNIFF_BYTES && firstBytes[8] === 0x7b) {
    const high = firstBytes[4] | (firstBytes[5] << 8) | (firstBytes[6] << 16) | (firstBytes[7] << 24);
    if (high >>> 0 < 2 ** 21) return 'safetensors';
  }
  const first = firstBytes[0];
  if (first === undefined) return null;
  if ((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf) return 'native';
  return null;
}

/**
 * Maps a Content-Type to a format, ignoring parameters and case: a checkpoint media type → its format;
 * application/octet-stream, missing or empty → 'sniff' (decide from the bytes); anything else → null.
 */
export function formatFromContentType(contentType: string | undefined): CheckpointFormat | 'sniff' | null {
  const essence = (contentType ?? '').split(';', 1)[0].trim().toLowerCase();
  if (essence === '' || essence === OCTET_STREAM) return 'sniff';
  return CHECKPOINT_FORMATS.find((f) => MEDIA_TYPES[f] === essence) ?? null;
}

export function createDecoder(
  format: CheckpointFormat,
  visitor: TensorVisitor,
  limits: DecoderLimits,
): CheckpointDecoder {
  switch (format) {
    case 'safetensors':
      return createSafetensorsDecoder(visitor, limits);
    case 'native':
      return createNativeDecoder(visitor, limits);
  }
}
