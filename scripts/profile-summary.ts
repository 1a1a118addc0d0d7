/**
 * Where a process's time went, from a V8 CPU profile (`node --cpu-prof`, or bench-ingest --cpu-prof-dir):
 * the share of samples that were idle (the main thread waiting for I/O), garbage collection, and the
 * functions with the most self time, each as a percentage of the samples and in seconds. A timeline of busy
 * percent per second comes first, so a window (one upload) can be picked with --from/--to (seconds since the
 * profile started).
 *
 *   npx tsx scripts/profile-summary.ts <file.cpuprofile> [--top 15] [--from S] [--to S]
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '15' },
    from: { type: 'string', default: '0' },
    to: { type: 'string', default: 'Infinity' },
  },
});
if (positionals.length !== 1) throw new Error('usage: profile-summary.ts <file.cpuprofile> [--top N]');
const profile = JSON.parse(await readFile(positionals[0], 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const from = Number(values.from) * 1e6;
const to = Number(values.to) * 1e6;
/** Microseconds of self time per function (name + file + line), from the time deltas between samples. */
const self = new Map<string, number>();
/** Busy microseconds per whole second since the start, for the timeline. */
const busyPerSecond: number[] = [];
let total = 0;
let at = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const node = byId.get(profile.samples[i]);
  const dt = profile.timeDeltas[i + 1] ?? 0;
  at += profile.timeDeltas[i] ?? 0;
  if (!node) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const second = Math.floor(at / 1e6);
  busyPerSecond[second] = (busyPerSecond[second] ?? 0) + (functionName === '(idle)' ? 0 : dt);
  if (at < from || at >= to) continue;
  const file = url.replace(/^.*\/(node_modules\/|src\/|scripts\/)/, '$1');
  const label =
    url === '' ? functionName || '(anonymous)' : `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`;
  self.set(label, (self.get(label) ?? 0) + dt);
  total += dt;
}
console.log(`busy % per second: ${Array.from(busyPerSecond, (us) => Math.round((us ?? 0) / 1e4)).join(' ')}`);
const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}% ${(us / 1e6).toFixed(2).padStart(6)} s`;
const idle = self.get('(idle)') ?? 0;
const gc = self.get('(garbage collector)') ?? 0;
const program = self.get('(program)') ?? 0;
const window = values.from !== '0' || values.to !== 'Infinity' ? ` (from ${values.from} s to ${values.to} s)` : '';
console.log(`${positionals[0]}: ${(total / 1e6).toFixed(1)} s sampled${window}`);
console.log(`  idle ${pct(idle)}, busy ${pct(total - idle)} (of which GC ${pct(gc)}, (program) ${pct(program)})`);
console.log(`  top self time:`);
const rows = [...self.entries()]
  .filter(([label]) => !['(idle)', '(garbage collector)', '(program)'].includes(label))
  .sort((a, b) => b[1] - a[1])
  .slice(0, Number(values.top));
for (const [label, us] of rows) console.log(`  ${pct(us)}  ${label}`);
