import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { replayOnline } from '../scripts/lib/retention-replay.js';
import { distanceMatrix, score, summarize, syntheticRun } from '../scripts/lib/retention-runs.js';
import { resolvePolicy } from '../src/model/policy.js';

describe('retention decided after every upload (the online replay of scripts/eval-retention.ts)', () => {
  // 40 checkpoints of a 300-dimensional SGD-like walk with a loss spike at 35% and a restart at 60%.
  const run = syntheticRun(7, 40, 300);
  const summaries = summarize(run);
  const distances = distanceMatrix(run);
  const phaseOf = run.steps.map(() => 0);

  it('keeps the budget and the events with grace 0, holds at most hold.share of the budget, and covers better for it', () => {
    for (const budget of [6, 10]) {
      const replay = (hold: { share: number }) =>
        replayOnline(run, summaries, {
          policy: resolvePolicy({ budget: { maxCheckpoints: budget }, graceSeconds: 0, hold }),
          sketches: true,
          uploadIntervalSeconds: 60,
        });
      const held = replay({ share: 0.5 });
      const none = replay({ share: 0 });
      assert.equal(held.kept.length, budget);
      assert.ok(held.kept.includes(run.steps.length - 1), 'the latest is kept');
      // Kept, held, and the upload being decided on.
      assert.ok(held.peakStored <= budget + Math.floor(budget / 2) + 1, `peak ${held.peakStored}`);
      assert.equal(none.peakStored, budget + 1);
      const withHolds = score(run, distances, held.kept, phaseOf);
      const withoutHolds = score(run, distances, none.kept, phaseOf);
      assert.equal(withHolds.recall, 1, `budget ${budget}: kept ${held.kept}`);
      assert.ok(
        withHolds.meanCoverage < withoutHolds.meanCoverage,
        `budget ${budget}: ${withHolds.meanCoverage} with holds, ${withoutHolds.meanCoverage} without`,
      );
    }
  });
});
