import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ANOMALY_CASES, cosineRestart, evaluateCase, formatTable, noisy, smooth } from '../scripts/eval-anomalies.js';
import { changeScores } from '../src/trajectory/change-detection.js';
import { assignPhases } from '../src/trajectory/phase-segmentation.js';
import { rng } from './helpers/trajectory-fixtures.js';

describe('change detection on the labelled anomalies (scripts/eval-anomalies.ts)', () => {
  it('flags what each case must flag, as the kind it is, and nothing else; no phase starts at an outlier', (t) => {
    const results = ANOMALY_CASES.map(evaluateCase);
    for (const line of formatTable(results).split('\n')) t.diagnostic(line);
    assert.deepEqual(
      results.filter((r) => r.failures.length).map((r) => `${r.name}: ${r.failures.join('; ')}`),
      [],
    );
  });

  it('scores each checkpoint from itself and its past only; kinds settle with the next moving checkpoint', () => {
    for (const c of ANOMALY_CASES) {
      const full = changeScores(c.run);
      for (let m = 1; m <= full.length; m++) {
        const prefix = changeScores({
          updateNormPerStep: c.run.updateNormPerStep.slice(0, m),
          cosinePrev: c.run.cosinePrev.slice(0, m),
          trainLoss: c.run.trainLoss.slice(0, m),
        });
        for (let i = 0; i < m; i++) {
          const where = `${c.name}, checkpoint ${i} of the first ${m}`;
          assert.equal(prefix[i].changeScore, full[i].changeScore, where);
          assert.deepEqual(prefix[i].components, full[i].components, where);
          const unsettled = prefix[i].kind === 'jump' && prefix.slice(i + 1).every((s) => s.kind === 'stall');
          if (!unsettled) assert.equal(prefix[i].kind, full[i].kind, where);
        }
      }
    }
  });

  it('is deterministic', () => {
    for (const c of ANOMALY_CASES) assert.deepEqual(changeScores(c.run), changeScores(structuredClone(c.run)));
  });

  it('raises few false events on noisy but normal runs (100 seeded runs of 200 checkpoints)', (t) => {
    let events = 0;
    let checkpoints = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const scores = changeScores(noisy(seed, 200));
      checkpoints += scores.length;
      events += scores.filter((s) => s.kind !== null).length;
    }
    const rate = events / checkpoints;
    t.diagnostic(`false events: ${events} of ${checkpoints} checkpoints (${(100 * rate).toFixed(2)}%)`);
    // Log-normal noise of σ 0.25 on the update norm: z ≥ 3 with the scale estimated from the run itself.
    assert.ok(rate < 0.005, `${events} false events in ${checkpoints} checkpoints`);
  });

  it('never gives a stall a score, nor a reversal to the checkpoint after it', () => {
    const stall = ANOMALY_CASES.find((c) => c.name.startsWith('stall'))!;
    const scores = changeScores(stall.run);
    assert.equal(scores[50].kind, 'stall');
    assert.equal(scores[50].changeScore, 0);
    assert.equal(stall.run.cosinePrev[51]! < 0, true, 'the fixture turns back after the stall');
    assert.deepEqual(scores[51].components.reversal, 0);
    assert.ok(scores[51].changeScore < 1, `${scores[51].changeScore}`);
    assert.ok(scores[25].changeScore > 15, `the 25× jump keeps its score: ${scores[25].changeScore}`);
  });

  it('treats a long stall (below 1/10⁴ of the trend) as stalls, and training resuming after it as no event', () => {
    const run = smooth();
    for (let i = 40; i < 52; i++) run.updateNormPerStep[i] = 1e-9;
    const scores = changeScores(run);
    assert.deepEqual(
      scores.flatMap((s, i) => (s.kind === null ? [] : [`${s.kind}@${i}`])),
      Array.from({ length: 12 }, (_, i) => `stall@${40 + i}`),
    );
  });

  it('reads a lasting drop of 30× to 1000× as a new level: a stall at most, and a rise back is a restart', () => {
    for (const factor of [30, 100, 300, 1000]) {
      for (const [base, run] of [
        ['smooth', smooth()],
        ['noisy seed 1', noisy(1)],
        ['noisy seed 2', noisy(2)],
      ] as const) {
        for (let i = 40; i < 60; i++) run.updateNormPerStep[i] = run.updateNormPerStep[i]! / factor;
        const scores = changeScores(run);
        const flagged = scores.flatMap((s, i) => (s.kind === null ? [] : [`${s.kind}@${i}`]));
        const where = `${factor}× on ${base}: ${flagged.join(' ')}`;
        assert.deepEqual(
          flagged.filter((f) => f !== 'stall@40' && f !== 'restart@60'),
          [],
          where,
        );
        assert.equal(scores[60].kind, 'restart', where);
      }
    }
  });

  it('flags the restart after a cosine decayed to ~1e-4 and no stall (40 noisy runs × 11 cycle lengths)', () => {
    let others = 0;
    for (let seed = 1; seed <= 40; seed++) {
      for (let cycle = 40; cycle <= 70; cycle += 3) {
        const scores = changeScores(cosineRestart(cycle, noisy(seed)));
        const where = `seed ${seed}, restart at ${cycle + 1}`;
        // The loss bump at the restart may reach 2 above its trend on a noisy run: then it reads as divergence.
        assert.ok(
          ['restart', 'divergence'].includes(scores[cycle + 1].kind ?? ''),
          `${where}: ${scores[cycle + 1].kind}`,
        );
        assert.equal(scores.filter((s) => s.kind === 'stall').length, 0, where);
        others += scores.filter((s, i) => s.kind !== null && i !== cycle + 1).length;
      }
    }
    // The noisy runs' own false events (about 0.4% of 80 checkpoints × 440 runs).
    assert.ok(others <= 0.005 * 80 * 440, `${others} other events`);
  });
});

describe('dynamics phases and isolated outliers', () => {
  it('a stall, a duplicate upload or a spike moves no boundary of three planted levels (30 noisy runs)', () => {
    const outliers: [string, (u: (number | null)[]) => void][] = [
      [
        'stall mid-phase',
        (u) => {
          u[40] = 1e-7;
        },
      ],
      [
        'stall 2 before a boundary',
        (u) => {
          u[53] = 1e-7;
        },
      ],
      [
        'duplicate upload mid-phase',
        (u) => {
          u[40] = 0;
          u[41] = u[41]! * 2;
        },
      ],
      [
        '25× spike just before a boundary',
        (u) => {
          u[24] = u[24]! * 25;
        },
      ],
      [
        '8× spike over two checkpoints',
        (u) => {
          u[30] = u[30]! * 8;
          u[31] = u[31]! * 8;
        },
      ],
      [
        'spike on the newest checkpoint',
        (u) => {
          u[79] = u[79]! * 50;
        },
      ],
    ];
    for (let seed = 1; seed <= 30; seed++) {
      const random = rng(seed);
      const level = (i: number) => (i < 25 ? 1 : i < 55 ? 0.3 : 0.1);
      const u = Array.from({ length: 80 }, (_, i) => (i === 0 ? null : level(i) * Math.exp(0.15 * (random() - 0.5))));
      const loss = u.map((_, i) => (2 / (1 + i / 10)) * Math.exp(0.05 * (random() - 0.5)));
      const steps = u.map((_, i) => i * 10);
      const clean = assignPhases({ steps, updateNormPerStep: u, trainLoss: loss, by: 'dynamics' }).phaseOf;
      assert.deepEqual([clean.indexOf(1), clean.indexOf(2)], [25, 55], `seed ${seed}: the planted levels`);
      for (const [what, add] of outliers) {
        const v = [...u];
        add(v);
        const { phaseOf } = assignPhases({ steps, updateNormPerStep: v, trainLoss: loss, by: 'dynamics' });
        assert.deepEqual(phaseOf, clean, `seed ${seed}: ${what}`);
      }
    }
  });
});
