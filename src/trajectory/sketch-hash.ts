/**
 * The fixed hash behind every stored sketch (SKETCH_VERSION 1). Changing anything here changes which bucket
 * each weight lands in, so it requires a new version number: sketches of different versions are never
 * compared.
 *
 * Simple tabulation hashing (Pătraşcu & Thorup 2012), which is 3-wise independent given random tables:
 * the key is (tensor name, element index i) and
 *
 *   h(T, i) = nameHash(T) ⊕ LOW[i mod 4096] ⊕ MID[⌊i / 4096⌋ mod 4096] ⊕ HIGH[⌊i / 2^24⌋ mod 4096]
 *
 * with nameHash = FNV-1a of the UTF-8 name, finished by murmur3's fmix32, and the three 4096-entry tables
 * of 32-bit words drawn from mulberry32 seeded with TABLE_SEED. Indices up to 2^36 are distinct keys.
 * The whole-vector sketch uses bucket = h & (k − 1) (k a power of two ≤ 2^13) and sign = the top bit; the
 * per-tensor sketch uses bucket = (h >>> 13) & (kTensor − 1) and the same sign bit, so its buckets are
 * independent of the big sketch's. Everything but LOW is constant over runs of 4096 consecutive elements,
 * so the hot loop does one table lookup and one XOR per element.
 */
export const SKETCH_VERSION = 1;
const TABLE_SEED = 0x7a17_6a7e;
export const BLOCK_BITS = 12;
export const BLOCK_SIZE = 1 << BLOCK_BITS;
const BLOCK_MASK = BLOCK_SIZE - 1;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) | 0;
  };
}

function table(next: () => number): Int32Array {
  const t = new Int32Array(BLOCK_SIZE);
  for (let i = 0; i < t.length; i++) t[i] = next();
  return t;
}

const next = mulberry32(TABLE_SEED);
/** Indexed by i mod 4096; read directly by the kernels. */
export const LOW: Int32Array = table(next);
const MID: Int32Array = table(next);
const HIGH: Int32Array = table(next);

export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

export function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, 'utf8')) h = Math.imul(h ^ byte, 0x01000193);
  return fmix32(h);
}

/** The part of h(T, i) shared by every element of the 4096-element block containing index i. */
export function blockKey(tensorHash: number, index: number): number {
  const block = Math.floor(index / BLOCK_SIZE);
  return tensorHash ^ MID[block & BLOCK_MASK] ^ HIGH[Math.floor(block / BLOCK_SIZE) & BLOCK_MASK];
}

/** h(T, i) for one element; the kernels inline the same computation per block. */
export function elementHash(tensorHash: number, index: number): number {
  return blockKey(tensorHash, index) ^ LOW[index & BLOCK_MASK];
}
