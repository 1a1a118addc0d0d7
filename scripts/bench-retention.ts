/**
 * Retention decision time for one run of many checkpoints: the engine alone (what every upload pays
 * under the run's lock), on a synthetic decaying trajectory with an injected jump, for a few budgets.
 *
 *   npx tsx scripts/bench-retention.ts [--checkpoints 10000] [--repeat 50]
 */
import { parseArgs } from 'node:util';
import { decideRetention, type RetentionCandidate } from '../src/retention/engine.js';
import { resolvePolicy } from '../src/retention/policy.js';

const { values } = parseArgs({ options: { checkpoints: { type: 'string', default: '10000' }, repeat: { type: 'string', default: '50' } } });
const n = Number(values.checkpoints);
const repeat = Number(values.repeat);

let path = 0;
const checkpoints: RetentionCandidate[] = Array.from({ length: n }, (_, i) => {
  const update = i === 0 ? null : (1 / Math.sqrt(i)) * (1 + 0.2 * Math.sin(i * 1.7)) * (i === Math.floor(n * 0.6) ? 8 : 1);
  path += update ?? 0;
  return {
    step: i * 10,
    bytes: 50_000_000,
    pinned: i % 997 === 0,
    available: true,
    trainLoss: 2 / (1 + i / 100) * (1 + 0.05 * Math.cos(i)),
    metric: { valLoss: 1 + Math.cos(i / 50) / 3 },
    indicators: { updateNorm: update, updateNormPerStep: update === null ? null : update / 10, relativeChange: null, distanceFromStart: path, pathLength: path, cosinePrev: Math.sin(i) * 0.5, topTensors: [] },
  };
});

console.log(`bench-retention: ${n} checkpoints, ${repeat} decisions per policy`);
for (const budget of [{ maxCheckpoints: 12 }, { maxCheckpoints: 100 }, { maxCheckpoints: null, maxBytes: 50_000_000 * 40 }, {}]) {
  const policy = resolvePolicy({ budget });
  for (let i = 0; i < 5; i++) decideRetention({ checkpoints, policy });
  const times: number[] = [];
  let kept = 0;
  for (let r = 0; r < repeat; r++) {
    const started = performance.now();
    kept = decideRetention({ checkpoints, policy }).totals.kept;
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
  console.log(`budget ${JSON.stringify(policy.budget)}: kept ${kept}, decision median ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${times[times.length - 1].toFixed(1)} ms`);
}
