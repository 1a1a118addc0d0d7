import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideRetention, type RetentionCandidate, type RetentionDecision } from '../src/retention/engine.js';
import { DEFAULT_POLICY, Policy, PolicyInput, resolvePolicy } from '../src/model/policy.js';
import { CheckpointAccumulator } from '../src/trajectory/accumulator.js';
import { computeIndicators } from '../src/trajectory/run-indicators.js';
import { gaussian, rng } from './helpers/trajectory-fixtures.js';
import { ANOMALY_CASES, type AnomalyRun, STEP } from '../scripts/eval-anomalies.js';

/**
 * Indicators of a decaying run of n checkpoints (step 10 apart) with an injected jump (a loss spike: an
 * update 8× the trend and a loss burst) at `jumpAt`.
 */
function run(n: number, jumpAt = Math.floor(n * 0.45)): RetentionCandidate[] {
  let path = 0;
  return Array.from({ length: n }, (_, i) => {
    const trend = 1 / Math.sqrt(1 + i);
    const update = i === 0 ? null : trend * (1 + 0.1 * Math.sin(i * 2.3)) * (i === jumpAt ? 8 : 1);
    path += update ?? 0;
    return {
      step: i * 10,
      bytes: 1000 + (i % 7),
      pinned: false,
      trainLoss: (2 / (1 + i / 20)) * (i === jumpAt ? 4 : 1) * (1 + 0.02 * Math.cos(i * 1.3)),
      metric: { valLoss: 1 + (i - n * 0.7) ** 2 / n ** 2 },
      indicators: {
        updateNorm: update,
        updateNormPerStep: update === null ? null : update / 10,
        relativeChange: null,
        distanceFromStart: path,
        pathLength: path,
        cosinePrev: 0.4,
        topTensors: [],
      },
    };
  });
}

/** A run with real sketches: a 3,000-dimensional SGD-like walk with a kick at 40% (summaries carried). */
function sketchedRun(n: number): RetentionCandidate[] {
  const gauss = gaussian(rng(3));
  const dim = 3000;
  const w = Float64Array.from({ length: dim }, () => gauss() * 0.1);
  const target = Float64Array.from({ length: dim }, () => gauss() * 0.1);
  const summaries = [];
  const losses: number[] = [];
  for (let i = 0; i < n; i++) {
    const lr = 0.3 / Math.sqrt(1 + i);
    if (i > 0) for (let j = 0; j < dim; j++) w[j] += lr * 0.5 * (target[j] - w[j]) + lr * 0.02 * gauss();
    if (i === Math.floor(n * 0.4)) for (let j = 0; j < dim; j++) w[j] += 0.05 * gauss();
    const acc = new CheckpointAccumulator();
    acc.begin([{ name: 'w', dtype: 'F64', shape: [dim] }]);
    acc.update(0, 0, new Uint8Array(w.buffer.slice(0)));
    summaries.push(acc.finish(i * 10));
    let d = 0;
    for (let j = 0; j < dim; j++) d += (w[j] - target[j]) ** 2;
    losses.push(0.1 + Math.sqrt(d) * (i === Math.floor(n * 0.4) ? 3 : 1));
  }
  const indicators = computeIndicators(summaries);
  return summaries.map((summary, i) => ({
    step: summary.step,
    bytes: 4 * dim,
    pinned: false,
    summary,
    indicators: indicators[i],
    trainLoss: losses[i],
    metric: { valLoss: losses[i] * 1.1 },
  }));
}

/** A labelled anomaly run (scripts/eval-anomalies.ts) as retention candidates, the first `n` checkpoints. */
function anomalyRun(name: string, n?: number): RetentionCandidate[] {
  const run: AnomalyRun = ANOMALY_CASES.find((c) => c.name === name)!.run;
  let path = 0;
  return run.updateNormPerStep.slice(0, n).map((u, i) => {
    path += u === null ? 0 : u * STEP;
    return {
      step: i * STEP,
      bytes: 1000,
      pinned: false,
      trainLoss: run.trainLoss[i],
      metric: { valLoss: 1 },
      indicators: {
        updateNorm: u === null ? null : u * STEP,
        updateNormPerStep: u,
        relativeChange: null,
        distanceFromStart: path,
        pathLength: path,
        cosinePrev: run.cosinePrev[i],
        topTensors: [],
      },
    };
  });
}

const keptSteps = (d: RetentionDecision) => d.checkpoints.filter((c) => c.keep).map((c) => c.step);
const budget = (maxCheckpoints: number | null, maxBytes: number | null = null): Policy =>
  resolvePolicy({ budget: { maxCheckpoints, maxBytes } });

/** A sentence: starts with a letter, several words, no placeholder left. */
function assertSentence(text: string, where: string): void {
  assert.ok(
    /^[a-z#]/i.test(text) && text.split(' ').length >= 4 && !/undefined|NaN|null/.test(text),
    `${where}: '${text}'`,
  );
}

describe('retention policy schema', () => {
  it('fills every key left out from the default, merging nested objects', () => {
    assert.deepEqual(resolvePolicy({}), DEFAULT_POLICY);
    const p = resolvePolicy(
      PolicyInput.parse({
        budget: { maxCheckpoints: 12 },
        phase: { by: 'dynamics' },
        change: { zThreshold: 4 },
        best: { mode: 'max' },
      }),
    );
    assert.deepEqual(p.budget, { maxCheckpoints: 12, maxBytes: null });
    assert.deepEqual(p.phase, { ...DEFAULT_POLICY.phase, by: 'dynamics' });
    assert.deepEqual(p.change, { max: DEFAULT_POLICY.change.max, zThreshold: 4 });
    assert.deepEqual(p.best, { ...DEFAULT_POLICY.best!, mode: 'max' });
    assert.equal(p.latest, DEFAULT_POLICY.latest);
    assert.equal(p.graceSeconds, DEFAULT_POLICY.graceSeconds);
    assert.ok(Policy.safeParse(p).success);
  });

  it('keeps explicit nulls: no best class, no every grid, unlimited budget', () => {
    const p = resolvePolicy(PolicyInput.parse({ best: null, every: null, budget: { maxBytes: null } }));
    assert.equal(p.best, null);
    assert.equal(p.every, null);
    assert.equal(p.budget.maxBytes, null);
    assert.equal(resolvePolicy(PolicyInput.parse({ every: 500 })).every, 500);
  });

  it('accepts the documented example whole', () => {
    const example = {
      budget: { maxCheckpoints: 12, maxBytes: null },
      latest: 1,
      phase: { count: 3, perPhase: 2, by: 'dynamics' },
      change: { max: 4, zThreshold: 3 },
      best: { metric: 'valLoss', mode: 'min', count: 1 },
      every: null,
      graceSeconds: 3600,
    };
    assert.deepEqual(resolvePolicy(PolicyInput.parse(example)), example);
  });

  it('rejects unknown keys and bad values with messages that name them', () => {
    const message = (input: unknown) => {
      const r = PolicyInput.safeParse(input);
      assert.equal(r.success, false, JSON.stringify(input));
      return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    };
    assert.match(message({ phase: { cnt: 3 } }), /phase: unknown phase key 'cnt'; allowed: count, perPhase, by/);
    assert.match(message({ budgets: {} }), /unknown policy key 'budgets'/);
    assert.match(message({ latest: -1 }), /latest: must be ≥ 0/);
    assert.match(message({ budget: { maxCheckpoints: 0 } }), /budget.maxCheckpoints: must be ≥ 1/);
    assert.match(message({ every: 2.5 }), /every: must be a whole number/);
    assert.match(message({ phase: { by: 'vibes' } }), /phase.by/);
  });
});

describe('retention decisions', () => {
  it('keep at most 12 of 200, the latest among them, every phase represented, the jump as `change`', () => {
    const checkpoints = run(200, 90);
    const d = decideRetention({ checkpoints, policy: budget(12) });
    const kept = d.checkpoints.filter((c) => c.keep);
    assert.ok(kept.length <= 12, `${kept.length}`);
    assert.equal(d.totals.kept, kept.length);
    assert.ok(keptSteps(d).includes(1990), 'latest kept');
    assert.ok(d.checkpoints.find((c) => c.step === 1990)!.classes.includes('latest'));
    assert.deepEqual([...new Set(kept.map((c) => c.phase))].sort(), ['early', 'late', 'mid']);
    const jump = d.checkpoints.find((c) => c.step === 900)!;
    assert.ok(jump.keep && jump.classes.includes('change'), JSON.stringify(jump));
    assert.match(jump.reasons.join(' '), /high-change score \d+\.\d ≥ 3/);
    assert.ok(
      d.totals.coverage.mean > 0 && d.totals.coverage.mean <= d.totals.coverage.max && d.totals.coverage.max < 1,
    );
  });

  it('never exceed the budget, at any size of run', () => {
    for (const n of [1, 2, 5, 13, 60, 200]) {
      for (const max of [1, 3, 12]) {
        const d = decideRetention({ checkpoints: run(n), policy: budget(max) });
        assert.ok(d.totals.kept <= max, `n=${n} budget=${max}: ${d.totals.kept}`);
        assert.ok(keptSteps(d).includes((n - 1) * 10), `n=${n} budget=${max}: latest`);
      }
    }
  });

  it('never evict pinned or latest checkpoints, and say so when they alone exceed the budget', () => {
    const checkpoints = run(60).map((c, i) => ({ ...c, pinned: i % 10 === 0 }));
    const d = decideRetention({ checkpoints, policy: resolvePolicy({ budget: { maxCheckpoints: 3 }, latest: 2 }) });
    for (const step of [0, 100, 200, 300, 400, 500, 580, 590]) assert.ok(keptSteps(d).includes(step), `step ${step}`);
    assert.equal(d.totals.kept, 8);
    const pinned = d.checkpoints.find((c) => c.step === 300)!;
    assert.deepEqual(pinned.classes, ['pinned']);
    assert.match(pinned.reasons.join(' '), /kept over the budget of 3 checkpoints/);
    const within = decideRetention({
      checkpoints,
      policy: resolvePolicy({ budget: { maxCheckpoints: 10 }, latest: 2 }),
    });
    for (const step of [0, 100, 200, 300, 400, 500, 580, 590])
      assert.ok(keptSteps(within).includes(step), `step ${step}`);
    assert.ok(within.totals.kept <= 10);
  });

  it('respect a byte budget and never keep a checkpoint whose bytes are gone', () => {
    const checkpoints = run(100).map((c, i) => ({ ...c, available: i % 3 !== 0 || i === 99 }));
    const d = decideRetention({ checkpoints, policy: budget(null, 8000) });
    assert.ok(d.totals.bytesKept <= 8000 && d.totals.bytesKept > 8000 - 2 * 1006, `${d.totals.bytesKept}`);
    const sum = d.checkpoints
      .filter((c) => c.keep)
      .reduce((s, c) => s + checkpoints.find((x) => x.step === c.step)!.bytes, 0);
    assert.equal(sum, d.totals.bytesKept);
    for (const c of d.checkpoints)
      if (c.keep) assert.notEqual(checkpoints.find((x) => x.step === c.step)!.available, false, `${c.step}`);
    const gone = d.checkpoints.find((c) => c.step === 30)!;
    assert.match(gone.reasons[0], /bytes are already deleted/);
    const both = decideRetention({ checkpoints, policy: budget(5, 8000) });
    assert.ok(both.totals.kept <= 5 && both.totals.bytesKept <= 8000);
  });

  it('are deterministic: same input twice, and shuffled then sorted input, give identical output', () => {
    const checkpoints = run(200);
    const random = rng(11);
    for (const policy of [budget(12), budget(40), budget(null, 20_000), resolvePolicy({ every: 300 })]) {
      const a = decideRetention({ checkpoints, policy });
      assert.deepEqual(decideRetention({ checkpoints, policy }), a);
      const shuffled = checkpoints
        .map((c) => ({ c, key: random() }))
        .sort((x, y) => x.key - y.key)
        .map(({ c }) => ({ ...c }));
      assert.deepEqual(decideRetention({ checkpoints: shuffled.sort((x, y) => x.step - y.step), policy }), a);
    }
  });

  it('explain every kept checkpoint (one sentence per class) and every eviction', () => {
    for (const policy of [budget(12), budget(null, 12_000), resolvePolicy({ every: 400 }), resolvePolicy({})]) {
      const d = decideRetention({ checkpoints: run(150), policy });
      for (const c of d.checkpoints) {
        assert.ok(c.reasons.length > 0, `step ${c.step}`);
        for (const r of c.reasons) assertSentence(r, `step ${c.step}`);
        if (c.keep) assert.equal(c.reasons.length >= c.classes.length && c.classes.length > 0, true, `step ${c.step}`);
        else assert.deepEqual(c.classes, []);
      }
    }
    const d = decideRetention({ checkpoints: run(150), policy: budget(12) });
    const evicted = d.checkpoints.filter((c) => !c.keep);
    assert.ok(
      evicted.every((c) =>
        /^evicted under the budget of 12 checkpoints: keeping it as well would lower the mean coverage error by only [\d.e+-]+% of the run's path length; the kept checkpoint at step \d+ lies within [\d.e+-]+% of the run's path length$/.test(
          c.reasons[0],
        ),
      ),
      evicted[0].reasons[0],
    );
    const phase = d.checkpoints.find((c) => c.classes.includes('phase'))!;
    assert.match(
      phase.reasons[phase.classes.indexOf('phase')],
      /^represents the (early|mid|late) phase \(steps \d+–\d+\)/,
    );
    assert.match(
      d.checkpoints.find((c) => c.classes.includes('best'))!.reasons.join(' '),
      /lowest valLoss of the run: \d/,
    );
  });

  it('without a budget keep the named classes and perPhase representatives of every phase', () => {
    const d = decideRetention({ checkpoints: run(120), policy: resolvePolicy({}) });
    const perPhase = new Map<string, number>();
    for (const c of d.checkpoints)
      if (c.classes.includes('phase')) perPhase.set(c.phase, (perPhase.get(c.phase) ?? 0) + 1);
    assert.deepEqual([...perPhase.keys()].sort(), ['early', 'late', 'mid']);
    for (const [, count] of perPhase) assert.equal(count, DEFAULT_POLICY.phase.perPhase);
    assert.ok(d.totals.kept <= 1 + 4 + 1 + 3 * 2, `${d.totals.kept}`);
  });

  it('keep the every-N grid and the best checkpoints when asked', () => {
    const d = decideRetention({ checkpoints: run(100), policy: resolvePolicy({ every: 250, best: { count: 2 } }) });
    for (const step of [0, 250, 500, 750])
      assert.ok(d.checkpoints.find((c) => c.step === step)!.classes.includes('every'), `${step}`);
    assert.equal(d.checkpoints.filter((c) => c.classes.includes('best')).length, 2);
  });

  it('decide an empty run and a single checkpoint', () => {
    const empty = decideRetention({ checkpoints: [], policy: budget(3) });
    assert.deepEqual(empty.checkpoints, []);
    assert.equal(empty.totals.kept, 0);
    const one = decideRetention({ checkpoints: run(1), policy: budget(3) });
    assert.deepEqual(keptSteps(one), [0]);
    assert.ok(one.checkpoints[0].classes.includes('latest'));
  });

  it('with sketches, cover the run at least as well as uniform thinning at the same budget and catch the kick', () => {
    const checkpoints = sketchedRun(60);
    const d = decideRetention({ checkpoints, policy: budget(10) });
    assert.equal(d.totals.kept, 10);
    assert.deepEqual([...new Set(d.checkpoints.filter((c) => c.keep).map((c) => c.phase))].sort(), [
      'early',
      'late',
      'mid',
    ]);
    assert.ok(d.checkpoints[24].keep || d.checkpoints[25].keep, 'kick at index 24 kept within one checkpoint');
    // Uniform thinning as a policy: pins on evenly spaced indices, nothing else.
    const uniform = Array.from({ length: 10 }, (_, j) => Math.round((j * 59) / 9));
    const pinnedOnly = resolvePolicy({
      latest: 0,
      change: { max: 0 },
      best: null,
      phase: { perPhase: 0 },
      budget: { maxCheckpoints: 10 },
    });
    const thin = decideRetention({
      checkpoints: checkpoints.map((c, i) => ({ ...c, pinned: uniform.includes(i) })),
      policy: pinnedOnly,
    });
    assert.deepEqual(
      keptSteps(thin),
      uniform.map((i) => i * 10),
    );
    assert.ok(
      d.totals.coverage.mean < thin.totals.coverage.mean,
      `${d.totals.coverage.mean} vs uniform ${thin.totals.coverage.mean}`,
    );
    const withoutSketches = decideRetention({
      checkpoints: checkpoints.map(({ summary: _summary, ...c }) => c),
      policy: budget(10),
    });
    assert.ok(withoutSketches.totals.kept <= 10);
  });

  it('keep no stall and no return from one as `change`, and name the kind of each event they keep', () => {
    const d = decideRetention({ checkpoints: anomalyRun('stall (the issue)'), policy: budget(12) });
    const change = d.checkpoints.filter((c) => c.classes.includes('change'));
    assert.deepEqual(
      change.map((c) => c.step),
      [2500],
    );
    assert.match(
      change[0].reasons[change[0].classes.indexOf('change')],
      /^spike at step 2500: high-change score \d+\.\d ≥ 3 \(the per-step update norm rose to 2\d× its recent trend \(robust z \d+\.\d\) for this checkpoint only\)$/,
    );
    for (const step of [5000, 5100]) assert.equal(d.checkpoints.find((c) => c.step === step)!.changeScore < 1, true);
    // The issue's second run: the checkpoint after the stall is the newest one.
    const newest = decideRetention({ checkpoints: anomalyRun('stall (the issue)', 52), policy: budget(12) });
    assert.deepEqual(newest.checkpoints.find((c) => c.step === 5100)!.classes, ['latest']);

    const restart = decideRetention({ checkpoints: anomalyRun('LR restart'), policy: budget(12) });
    const kept = restart.checkpoints.find((c) => c.step === 4500)!;
    assert.match(
      kept.reasons[kept.classes.indexOf('change')],
      /^learning-rate restart or schedule change at step 4500: high-change score \d+\.\d ≥ 3 \(the per-step update norm rose to \d\.\d× its recent trend \(robust z \d+\.\d\) and stayed up\)$/,
    );
    assert.deepEqual(
      restart.checkpoints.filter((c) => c.classes.includes('change')).map((c) => c.step),
      [4500],
    );
  });
});
