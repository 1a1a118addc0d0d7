/**
 * Keys of sharded steps (docs/architecture.md §4), beside the single-file layout of keys.ts:
 *   runs/{run}/checkpoints/{step:010d}-{shardUploadId}/{file}   one shard's bytes, as uploaded
 *   runs/{run}/checkpoints/{step:010d}-{uploadId}.index         the step's model.safetensors.index.json
 *   runs/{run}/checkpoints/{step:010d}-{uploadId}.json          the step's manifest
 * The index and manifest keys have the single-file shape, so the step's checkpoint row references them like
 * any checkpoint's data and manifest. File names are validated (`http/ids.ts`) before they reach here.
 */
import { checkpointPrefix } from './keys.js';

export const INDEX_EXTENSION = 'index';

export function shardDataKey(run: string, step: number, uploadId: string, file: string): string {
  return `${checkpointPrefix(run)}${String(step).padStart(10, '0')}-${uploadId}/${file}`;
}

export function shardIndexKey(run: string, step: number, uploadId: string): string {
  return `${checkpointPrefix(run)}${String(step).padStart(10, '0')}-${uploadId}.${INDEX_EXTENSION}`;
}

/** True for the blob key of a sharded step's checkpoint row. */
export function isShardIndexKey(key: string): boolean {
  return key.endsWith(`.${INDEX_EXTENSION}`);
}

const SHARD_KEY = /^runs\/([A-Za-z0-9._-]{1,128})\/checkpoints\/(\d{10})-([^/.]+)\/([^/]+)$/;

/** The run, step and shard upload id of a shard's data key, or null for any other key. */
export function parseShardKey(key: string): { run: string; step: number; uploadId: string; file: string } | null {
  const m = SHARD_KEY.exec(key);
  return m ? { run: m[1], step: Number(m[2]), uploadId: m[3], file: m[4] } : null;
}
