/**
 * The fixed hash behind every stored sketch. Changing anything here changes which bucket each weight lands
 * in, so it requires a new SKETCH_VERSION: sketches of different versions are never compared.
 *
 * Twisted tabulation hashing (after Pătraşcu & Thorup, "Twisted tabulation hashing", SODA 2013). The key
 * is (tensor name T, element index i), split into the block b = ⌊i / 4096⌋ and the offset o = i mod 4096:
 *
 *   K(T, b) = nameHash(T) ⊕ MID[b mod 4096] ⊕ HIGH[⌊b / 4096⌋ mod 4096]       (once per block)
 *   τ(T, b) = fmix32(K ⊕ 0x9e3779b9) >>> 20                                   (the 12-bit twist)
 *   h(T, i) = K(T, b) ⊕ LOW[o ⊕ τ(T, b)]                                      (per element)
 *
 * with nameHash = FNV-1a of the UTF-8 name, finished by murmur3's fmix32, and the three 4096-entry tables
 * of 32-bit words drawn from mulberry32 seeded with TABLE_SEED. Indices up to 2^36 are distinct keys.
 * bucket = h & (k − 1) (k a power of two ≤ 2^13), sign = the top bit of h (independent of the bucket
 * bits, since every table word is 32 random bits). Per element: one XOR for the index, one table lookup,
 * one XOR; everything else is done once per 4096 elements.
 *
 * Why this is a sound CountSketch: the estimator ||S(a) − S(b)||² of ||a − b||² is unbiased when buckets
 * and signs are 2-wise independent, and its variance is 2||x||⁴/k when they are 4-wise independent. Plain
 * tabulation (h = K(T, b) ⊕ LOW[o], version 1) is 3-wise independent but fails on "rectangles": for a
 * rank-1 update u vᵀ stored with rows of 4096 elements, h(r, c) separates into a row part and a column
 * part, every rectangle of elements has sign product +1, and the norm error doubled (rms 1.5% instead of
 * 0.8% at k = 8192, 4% worst of 60). The per-block twist makes the offset's table index depend on the
 * block, which leaves only 1 in 4096 of those rectangles; the measured error on such updates is back to
 * the random-hash level (test/trajectory-kernels.test.ts). Relative error of an estimated norm: about
 * sqrt(1/(2k)) ≈ 0.8% rms at k = 8192 (sqrt(2/k) on the squared norm).
 *
 * Versions (SketchSpec.version): 1 was plain tabulation, with the per-tensor sketch's bucket in bits
 * 13.. of h. 2 (current) twists the offset and puts the per-tensor bucket in the low bits, like the
 * whole-vector sketch, so a tensor's contribution is summed once in a k-bucket buffer and folded to the
 * per-tensor size afterwards (bucket h & (tensorK − 1)).
 */
export const SKETCH_VERSION = 2;
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

const UTF8 = new TextEncoder();

export function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of UTF8.encode(name)) h = Math.imul(h ^ byte, 0x01000193);
  return fmix32(h);
}

/** K(T, b): the part of h(T, i) shared by every element of the 4096-element block containing index i. */
export function blockKey(tensorHash: number, index: number): number {
  const block = Math.floor(index / BLOCK_SIZE);
  return tensorHash ^ MID[block & BLOCK_MASK] ^ HIGH[Math.floor(block / BLOCK_SIZE) & BLOCK_MASK];
}

/** τ(T, b): XORed into the offset before the LOW lookup, for every element of the block with key K. */
export function blockTwist(key: number): number {
  return fmix32(key ^ 0x9e3779b9) >>> 20;
}

/** h(T, i) for one element; the kernels compute the same per block. */
export function elementHash(tensorHash: number, index: number): number {
  const key = blockKey(tensorHash, index);
  return key ^ LOW[(index & BLOCK_MASK) ^ blockTwist(key)];
}
