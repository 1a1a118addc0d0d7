import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideRetention, type RetentionCandidate } from '../src/retention/engine.js';
import { DEFAULT_POLICY, PolicyInput, resolvePolicy } from '../src/model/policy.js';

/** A decaying run with an LR restart at 60% and a loss spike at 30%. */
function run(n: number): RetentionCandidate[] {
  let path = 0;
  return Array.from({ length: n }, (_, i) => {
    const restart = Math.floor(n * 0.6);
    const base = i < restart ? 1 / Math.sqrt(1 + i) : 3 / Math.sqrt(1 + i - restart);
    const update = i === 0 ? null : base * (1 + 0.1 * Math.sin(i * 2.3));
    path += update ?? 0;
    const spike = i === Math.floor(n * 0.3);
    return {
      step: i * 10,
      bytes: 1000 + (i % 7),
      pinned: false,
      available: true,
      trainLoss: (spike ? 4 : 1) * (2 / (1 + i / 20)),
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

const kept = (d: ReturnType<typeof decideRetention>) => d.checkpoints.filter((c) => c.keep).map((c) => c.step);

describe('retention policies', () => {
  it('fill unspecified keys from the default and reject unknown ones', () => {
    const p = resolvePolicy(PolicyInput.parse({ budget: { maxCheckpoints: 5 }, phase: { count: 4 } }));
    assert.equal(p.budget.maxCheckpoints, 5);
    assert.equal(p.phase.count, 4);
    assert.equal(p.phase.perPhase, DEFAULT_POLICY.phase.perPhase);
    assert.deepEqual(p.best, DEFAULT_POLICY.best);
    assert.equal(resolvePolicy(PolicyInput.parse({ best: null })).best, null);
    assert.equal(PolicyInput.safeParse({ phase: { cnt: 3 } }).success, false);
    assert.equal(PolicyInput.safeParse({ latest: -1 }).success, false);
  });
});

describe('retention decisions', () => {
  it('are deterministic and never exceed the budget', () => {
    const checkpoints = run(200);
    for (const budget of [3, 12, 40]) {
      const policy = resolvePolicy({ budget: { maxCheckpoints: budget } });
      const a = decideRetention({ checkpoints, policy });
      const b = decideRetention({ checkpoints: [...checkpoints].reverse().reverse(), policy });
      assert.deepEqual(a, b);
      assert.ok(a.totals.kept <= budget);
      assert.ok(kept(a).includes(1990), 'the latest is kept');
    }
  });

  it('catch the restart and the spike as `change`, and explain every checkpoint', () => {
    const d = decideRetention({ checkpoints: run(200), policy: resolvePolicy({ budget: { maxCheckpoints: 12 } }) });
    const change = d.checkpoints.filter((c) => c.classes.includes('change')).map((c) => c.step);
    // Under a tight budget an event may be held by the checkpoint just before the flagged one.
    assert.ok(change.includes(590) || change.includes(600), `spike kept: ${change}`);
    assert.ok(
      [1190, 1200, 1210].some((s) => change.includes(s)),
      `restart kept: ${change}`,
    );
    for (const c of d.checkpoints)
      assert.ok(c.reasons.length > 0 && c.reasons.every((r) => r.length > 15), `step ${c.step}: ${c.reasons}`);
  });

  it('never evict pinned or latest checkpoints, even past the budget', () => {
    const checkpoints = run(50).map((c, i) => ({ ...c, pinned: i % 10 === 0 }));
    const d = decideRetention({ checkpoints, policy: resolvePolicy({ budget: { maxCheckpoints: 3 }, latest: 2 }) });
    for (const step of [0, 100, 200, 300, 400, 480, 490]) assert.ok(kept(d).includes(step), `step ${step}`);
  });

  it('respect a byte budget and skip checkpoints whose bytes are gone', () => {
    const checkpoints = run(100).map((c, i) => ({ ...c, available: i % 3 !== 0 || i === 99 }));
    const d = decideRetention({ checkpoints, policy: resolvePolicy({ budget: { maxBytes: 8000 } }) });
    assert.ok(d.totals.bytesKept <= 8000, `${d.totals.bytesKept}`);
    for (const c of d.checkpoints) if (c.keep) assert.ok(checkpoints.find((x) => x.step === c.step)!.available);
  });

  it('without a budget keeps the named classes and perPhase representatives of every phase', () => {
    const d = decideRetention({ checkpoints: run(120), policy: resolvePolicy({}) });
    const phases = new Set(d.checkpoints.filter((c) => c.classes.includes('phase')).map((c) => c.phase));
    assert.deepEqual([...phases].sort(), ['early', 'late', 'mid']);
    assert.ok(d.totals.kept <= 1 + 4 + 1 + 3 * 2, `${d.totals.kept}`);
  });
});
