/**
 * Property-based fuzzing of every input parser at scale: the generators and invariant checks of
 * test/fuzz.test.ts (scripts/lib/fuzz-targets.ts), over --cases cases split across the targets by weight.
 * Prints, per target, the cases run, counts by HTTP status (`ok` for a direct decode) and by error code, the
 * shrunk counterexample of any broken invariant, and the total of 5xx answers. Exits 1 if an invariant broke.
 *
 *   npx tsx scripts/fuzz.ts [--cases 100000] [--seed 1100003] [--target checkpoint-decoders,...]
 */
import { parseArgs } from 'node:util';
import { FUZZ_SEED, TARGETS, describeResult, planCases, runTarget } from './lib/fuzz-targets.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string', default: String(FUZZ_SEED) },
    target: { type: 'string' },
  },
});
const total = Number(values.cases);
const seed = Number(values.seed);
if (!Number.isSafeInteger(total) || total < 1 || !Number.isSafeInteger(seed)) {
  console.error('--cases and --seed must be integers (cases at least 1)');
  process.exit(2);
}
const only = values.target?.split(',').map((s) => s.trim());
const unknown = only?.filter((name) => !TARGETS.some((t) => t.name === name)) ?? [];
if (unknown.length > 0) {
  console.error(`unknown target ${unknown.join(', ')}; targets: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(2);
}
const targets = TARGETS.filter((t) => !only || only.includes(t.name));
const plan = planCases(total, targets);

console.log(`fuzzing ${total} cases, seed ${seed}: ${targets.map((t) => `${t.name} ${plan.get(t.name)}`).join(', ')}`);
const started = performance.now();
let serverErrors = 0;
let failed = 0;
let cases = 0;
for (const target of targets) {
  const result = await runTarget(target, plan.get(target.name) ?? 0, seed);
  for (const line of describeResult(result)) console.log(line);
  serverErrors += result.serverErrors;
  cases += result.cases;
  if (result.failure) failed++;
}
console.log(
  `total: ${cases} cases in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
    `targets with a broken invariant: ${failed}`,
);
console.log(`5xx: ${serverErrors}`);
process.exit(failed > 0 || serverErrors > 0 ? 1 : 0);
