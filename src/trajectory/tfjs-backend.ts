import { elementHash, nameHash } from './sketch-hash.js';

/**
 * The same per-tensor statistics and CountSketch as the TypeScript kernels, computed with TensorFlow.js
 * ops on @tensorflow/tfjs-node-gpu when that optional package can be loaded (it needs libtensorflow,
 * which `npm ci` cannot download offline, so it is usually absent). The TS kernels stay the default;
 * this backend works on whole tensors, so it suits offline recomputation, not the streaming upload path.
 */
export interface TfjsKernels {
  /** count, norm, mean, maxAbs, nanCount, infCount of `values`, as in TensorStats. */
  stats(values: Float32Array): {
    count: number;
    norm: number;
    mean: number;
    maxAbs: number;
    nanCount: number;
    infCount: number;
  };
  /** Adds tensor `name`'s contribution to a k-bucket whole-vector sketch (k a power of two). */
  sketch(name: string, values: Float32Array, k: number): Float64Array;
}

type Tf = typeof import('@tensorflow/tfjs');

export type TfjsLoad = { available: true; kernels: TfjsKernels } | { available: false; reason: string };

export async function loadTfjsKernels(moduleName = '@tensorflow/tfjs-node-gpu'): Promise<TfjsLoad> {
  let tf: Tf;
  try {
    tf = (await import(moduleName)) as Tf;
  } catch (err) {
    return {
      available: false,
      reason: `${moduleName} cannot be loaded: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
    };
  }
  return { available: true, kernels: tfjsKernels(tf) };
}

/** Exposed so the kernels can be checked on any tfjs backend (tests use the pure-JS one). */
export function tfjsKernels(tf: Tf): TfjsKernels {
  return {
    stats(values) {
      return tf.tidy(() => {
        const x = tf.tensor1d(values, 'float32');
        const nan = tf.isNaN(x);
        const inf = tf.isInf(x);
        const finite = tf.logicalNot(tf.logicalOr(nan, inf));
        const clean = tf.where(finite, x, tf.zerosLike(x));
        const finiteCount = tf.sum(tf.cast(finite, 'float32')).arraySync() as number;
        const sum = tf.sum(tf.cast(clean, 'float32')).arraySync() as number;
        return {
          count: values.length,
          norm: Math.sqrt(tf.sum(tf.square(clean)).arraySync() as number),
          mean: finiteCount > 0 ? sum / finiteCount : 0,
          maxAbs: values.length ? (tf.max(tf.abs(clean)).arraySync() as number) : 0,
          nanCount: tf.sum(tf.cast(nan, 'int32')).arraySync() as number,
          infCount: tf.sum(tf.cast(inf, 'int32')).arraySync() as number,
        };
      });
    },
    sketch(name, values, k) {
      const tensorHash = nameHash(name);
      const buckets = new Int32Array(values.length);
      const signs = new Float32Array(values.length);
      for (let i = 0; i < values.length; i++) {
        const h = elementHash(tensorHash, i);
        buckets[i] = h & (k - 1);
        signs[i] = h < 0 ? -1 : 1;
      }
      const summed = tf.tidy(() =>
        tf.unsortedSegmentSum(
          tf.mul(tf.tensor1d(values, 'float32'), tf.tensor1d(signs, 'float32')),
          tf.tensor1d(buckets, 'int32'),
          k,
        ),
      );
      const out = Float64Array.from(summed.dataSync());
      summed.dispose();
      return out;
    },
  };
}
