import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { coverageBound } from '../scripts/lib/retention-bound.js';
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

describe('the best possible coverage (scripts/lib/retention-bound.ts), the bound eval-retention prints', () => {
  it('equals a plain enumeration of every kept set with the latest and every event caught', () => {
    const run = syntheticRun(3, 24, 200);
    const distances = distanceMatrix(run);
    const phaseOf = run.steps.map(() => 0);
    const n = run.steps.length;
    for (const budget of [3, 4, 5]) {
      const cap = 0.05;
      let mean = Number.POSITIVE_INFINITY;
      let max = Number.POSITIVE_INFINITY;
      let underCap = Number.POSITIVE_INFINITY;
      let sets = 0;
      const pick = (from: number, chosen: number[]) => {
        if (chosen.length === budget - 1) {
          const kept = [...chosen, n - 1];
          const s = score(run, distances, kept, phaseOf);
          if (s.recall < 1) return;
          sets++;
          mean = Math.min(mean, s.meanCoverage);
          max = Math.min(max, s.maxCoverage);
          if (s.maxCoverage <= cap) underCap = Math.min(underCap, s.meanCoverage);
          return;
        }
        for (let k = from; k < n - 1; k++) pick(k + 1, [...chosen, k]);
      };
      pick(0, []);
      const bound = coverageBound(run, distances, budget, cap);
      assert.ok(bound, `budget ${budget}`);
      assert.equal(bound.sets, sets);
      assert.ok(Math.abs(bound.meanCoverage - mean) < 1e-12, `${bound.meanCoverage} vs ${mean}`);
      assert.ok(Math.abs(bound.maxCoverage - max) < 1e-12, `${bound.maxCoverage} vs ${max}`);
      if (Number.isFinite(underCap)) assert.ok(Math.abs(bound.meanCoverageUnderMaxCap! - underCap) < 1e-12);
      else assert.equal(bound.meanCoverageUnderMaxCap, null);
    }
    assert.equal(
      coverageBound(run, distances, 12, Number.POSITIVE_INFINITY, 1000),
      null,
      'too many sets: not searched',
    );
  });
});
