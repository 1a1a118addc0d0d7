import { AccumulatorState, STATE_VERSION } from './state.js';

/** Brings a stored state of version `from` to version `from + 1` (the caller sets the new version). */
export interface StateMigration {
  from: number;
  migrate(state: Record<string, unknown>): Record<string, unknown>;
}

/**
 * The registered migrations, in order of `from`; a change that bumps STATE_VERSION to k adds
 * `{ from: k − 1, migrate }` here. None leads from version 1 to 2: version 2 adds running sums
 * (effectiveIncrement, noiseCorrectedIndicator) that version 1's totals cannot give, and keeps evaluation
 * points apart from the snapshots, so a version-1 state is rebuilt from the catalog (rebuild.ts), which is
 * exact, instead of being migrated with those sums missing for its past steps. None leads from 2 to 3
 * either: version 3 reads extra.preconditionedVariance into effectiveIncrement, which a version-2 state
 * ignored for its past steps; the rebuild reads them.
 */
export const STATE_MIGRATIONS: readonly StateMigration[] = [];

/**
 * A stored state at STATE_VERSION: as stored when it is already there, else migrated one version at a
 * time through `migrations`. Null when that is impossible — not an object, no integer version, a version
 * newer than this code or without a migration path, a migration that throws, or a result the schema
 * rejects — and the caller rebuilds the state from the run's data instead.
 */
export function migrateState(
  json: unknown,
  migrations: readonly StateMigration[] = STATE_MIGRATIONS,
): AccumulatorState | null {
  if (!isRecord(json) || typeof json.version !== 'number' || !Number.isInteger(json.version)) return null;
  if (json.version > STATE_VERSION) return null;
  let state = json;
  for (let version = json.version; version < STATE_VERSION; version++) {
    const step = migrations.find((m) => m.from === version);
    if (!step) return null;
    try {
      state = { ...step.migrate(state), version: version + 1 };
    } catch {
      return null;
    }
  }
  const parsed = AccumulatorState.safeParse(state);
  return parsed.success ? parsed.data : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
