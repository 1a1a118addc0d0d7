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
