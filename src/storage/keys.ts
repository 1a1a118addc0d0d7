/**
 * Key layout, the same for every backend (docs/architecture.md §4):
 *   runs/{run}/checkpoints/{step:010d}-{uploadId}.{ext}   checkpoint bytes
 *   runs/{run}/checkpoints/{step:010d}-{uploadId}.json    manifest, written after the data (commit marker)
 * Run ids are validated (`http/ids.ts`) before they reach here, so no key can leave its prefix.
 */
import { FILE_EXTENSIONS, type CheckpointFormat } from '@trajgate/sdk/wire/formats';

export const RUNS_PREFIX = 'runs/';

export function checkpointPrefix(run: string): string {
  return `${RUNS_PREFIX}${run}/checkpoints/`;
}

export function checkpointDataKey(run: string, step: number, uploadId: string, format: CheckpointFormat): string {
  return `${checkpointPrefix(run)}${String(step).padStart(10, '0')}-${uploadId}.${FILE_EXTENSIONS[format]}`;
}

export function manifestKeyFor(dataKey: string): string {
  return dataKey.replace(/\.[^./]+$/, '.json');
}

export function isManifestKey(key: string): boolean {
  return key.endsWith('.json');
}

const CHECKPOINT_KEY = /^runs\/([A-Za-z0-9._-]{1,128})\/checkpoints\/(\d{10})-[^/]+\.([^./]+)$/;
const CHECKPOINT_PARTS = /^runs\/([A-Za-z0-9._-]{1,128})\/checkpoints\/(\d{10})-([^/.]+)\.([^./]+)$/;

/** The run, step and upload of a checkpoint's data or manifest key, or null for any other key. */
export function parseCheckpointKey(
  key: string,
): { run: string; step: number; uploadId: string; manifest: boolean } | null {
  const m = CHECKPOINT_PARTS.exec(key);
  return m ? { run: m[1], step: Number(m[2]), uploadId: m[3], manifest: m[4] === 'json' } : null;
}
const RUN_KEY = /^runs\/([A-Za-z0-9._-]{1,128})\//;

/**
 * What a key holds, in the API's terms, for error messages that reach clients: "step 100 of run 'a'" or
 * "the manifest of step 100 of run 'a'". Keys outside the layout are not echoed ("a stored object"): only
 * run ids and steps, which the client sent, are named.
 */
export function describeKey(key: string): string {
  const checkpoint = CHECKPOINT_KEY.exec(key);
  if (checkpoint) {
    const [, run, step, ext] = checkpoint;
    const what = `step ${Number(step)} of run '${run}'`;
    return ext === 'json' ? `the manifest of ${what}` : what;
  }
  const run = RUN_KEY.exec(key)?.[1];
  return run === undefined ? 'a stored object' : `a stored object of run '${run}'`;
}

/** The same for a `list` prefix: "the checkpoints of run 'a'", "the stored checkpoints". */
export function describePrefix(prefix: string): string {
  const run = RUN_KEY.exec(prefix)?.[1];
  if (run !== undefined) {
    return prefix === checkpointPrefix(run) ? `the checkpoints of run '${run}'` : `the stored objects of run '${run}'`;
  }
  return prefix === '' || prefix === RUNS_PREFIX ? 'the stored checkpoints' : 'the stored objects';
}
