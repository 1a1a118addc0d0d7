/**
 * Crash test (issue 11): the gateway as a child process, killed with SIGKILL at random moments while
 * clients upload checkpoints, log metric batches and pin/unpin under a tight retention policy; after each
 * kill the catalog's integrity, reconciliation and storage are checked offline, then the gateway restarts
 * and what was acknowledged is checked over HTTP (scripts/lib/crash-harness.ts says what exactly).
 *
 *   npx tsx scripts/crash-test.ts [--kills 200] [--seed 1] [--min-delay 200] [--max-delay 1500]
 *     [--preload 2] [--keep] [--log FILE]
 *
 * --min-delay/--max-delay: workload time before each kill (ms; one round in five runs up to 3 × max);
 * --preload: gateways loading ahead (0: none);
 * --keep: keep the data directory; --log: append every gateway log line to FILE.
 *
 * Prints one line per round and the totals; exits 1 when an invariant was violated (the data directory is
 * then kept and named).
 */
import { parseArgs } from 'node:util';
import { INVARIANTS, type Invariant, describeRound, describeTotals, runCrashTest } from './lib/crash-harness.js';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
    'min-delay': { type: 'string', default: '200' },
    'max-delay': { type: 'string', default: '1500' },
    preload: { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
    log: { type: 'string' },
  },
});

function whole(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`--${name} must be a whole number, got '${value}'`);
    process.exit(2);
  }
  return n;
}

const kills = whole('kills', values.kills);
const seed = whole('seed', values.seed);
const minDelay = whole('min-delay', values['min-delay']);
const maxDelay = Math.max(minDelay, whole('max-delay', values['max-delay']));

console.log(
  `crash test: ${kills} kills, seed ${seed}, kill after ${minDelay}-${maxDelay} ms of workload ` +
    `(one round in five up to ${3 * maxDelay} ms)`,
);
const result = await runCrashTest({
  kills,
  seed,
  killDelayMs: [minDelay, maxDelay],
  preload: whole('preload', values.preload),
  gatewayLog: values.log,
  keepDataDir: values.keep || undefined,
  onRound: (report) => {
    console.log(describeRound(report));
    for (const v of report.violations) console.log(`  VIOLATION [${v.invariant}] ${v.detail}`);
  },
}).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(2);
});

const { final } = result;
console.log(
  `final: restart verified ${final.verified}, SIGTERM exit ${final.exitCode}, ` +
    `left after a clean stop: ${final.orphans} orphans, ${final.staged} staged`,
);
for (const v of final.violations) console.log(`  VIOLATION [${v.invariant}] ${v.detail}`);
console.log(`\ntotals (seed ${result.seed}, ${(result.ms / 1000).toFixed(1)} s):`);
for (const line of describeTotals(result.totals)) console.log(`  ${line}`);
if (result.gatewayErrorMessages.length > 0) {
  console.log('gateway error-level log lines:');
  for (const m of result.gatewayErrorMessages) console.log(`  ${m}`);
}
const byInvariant = new Map<Invariant, number>();
for (const v of result.violations) byInvariant.set(v.invariant, (byInvariant.get(v.invariant) ?? 0) + 1);
console.log('invariants:');
for (const [name, wording] of Object.entries(INVARIANTS) as [Invariant, string][]) {
  const n = byInvariant.get(name) ?? 0;
  console.log(`  ${n === 0 ? 'ok  ' : 'FAIL'} ${name}: ${wording}${n > 0 ? ` (${n} violations)` : ''}`);
}
if (result.violations.length > 0 || values.keep) console.log(`data directory kept: ${result.dataDir}`);
if (result.violations.length > 0) process.exit(1);
