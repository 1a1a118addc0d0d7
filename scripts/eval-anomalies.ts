/**
 * The labelled anomaly set (docs/architecture.md §5, "The change score"): one synthetic trajectory per
 * kind of anomaly, each with the checkpoints the change detector must flag (and as what) and those it must
 * not, and where the dynamics segmentation may not start a phase. test/trajectory-anomalies.test.ts
 * asserts every row; this script prints the table.
 *
 *   npx tsx scripts/eval-anomalies.ts
 */
import { pathToFileURL } from 'node:url';
import { type ChangeKind, changeScores, type ChangeScore } from '../src/trajectory/change-detection.js';
import { assignPhases } from '../src/trajectory/phase-segmentation.js';
import { mulberry32 } from './lib/mnist-data.js';

/** What the detector reads, per checkpoint (checkpoint i is at step STEP · i). */
export interface AnomalyRun {
  updateNormPerStep: (number | null)[];
  cosinePrev: (number | null)[];
  trainLoss: (number | null)[];
}

export interface AnomalyCase {
  name: string;
  run: AnomalyRun;
  /** Checkpoints that must be events, with the kinds accepted; `anyOf`: at least one of these indices. */
  mustFlag: { at: number[]; kinds: ChangeKind[] }[];
  /** Checkpoints that must be stalls. */
  stalls: number[];
  /** Checkpoints that must be neither events nor stalls: every index not named above unless listed here. */
  mayFlag: number[];
  /**
   * Isolated outliers: no dynamics phase may start at one of them or right after, unless one starts there
   * with the outliers replaced by ordinary values too.
   */
  outliers: number[];
}

export const STEP = 100;
const N = 80;

function gaussian(random: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** A smooth run: per-step update norm decaying ≈2.5 → 1.4 (× 1/STEP), loss 2.3 → 0.5, cosines ≈ 0.3. */
export function smooth(n = N): AnomalyRun {
  return {
    updateNormPerStep: Array.from({ length: n }, (_, i) =>
      i === 0 ? null : ((2.5 / (1 + i / 60) ** 0.8) * (1 + 0.03 * Math.sin(1.7 * i))) / STEP,
    ),
    cosinePrev: Array.from({ length: n }, (_, i) => (i < 2 ? null : 0.3 + 0.1 * Math.sin(i))),
    trainLoss: Array.from({ length: n }, (_, i) => (0.3 + 2 / (1 + i / 10)) * (1 + 0.01 * Math.cos(2.3 * i))),
  };
}

const u = (run: AnomalyRun, i: number) => run.updateNormPerStep[i]!;

function warmup(): AnomalyRun {
  const run = smooth();
  for (let i = 1; i < N; i++) run.updateNormPerStep[i] = u(run, i) * Math.min(1, i / 12);
  for (let i = 0; i < 12; i++) run.trainLoss[i] = 2.3 * (1 + 0.01 * Math.cos(2.3 * i));
  return run;
}

/** The issue's run: a genuine 25× jump at 25, undone by nothing, and a checkpoint that barely moved at 50. */
function stall(): AnomalyRun {
  const run = smooth();
  run.updateNormPerStep[25] = u(run, 25) * 25;
  run.updateNormPerStep[50] = 3e-5 / STEP;
  run.cosinePrev[50] = -0.4;
  run.cosinePrev[51] = -0.7;
  return run;
}

/** The weights of 49 uploaded again as 50: update exactly 0 (no cosine), and 51 carries two intervals. */
function duplicate(): AnomalyRun {
  const run = smooth();
  run.updateNormPerStep[50] = 0;
  run.cosinePrev[50] = null;
  run.cosinePrev[51] = null;
  run.updateNormPerStep[51] = u(run, 51) * 2;
  return run;
}

function spike(): AnomalyRun {
  const run = smooth();
  run.updateNormPerStep[40] = u(run, 40) * 8;
  run.trainLoss[40] = run.trainLoss[40]! * 3;
  return run;
}

/** A spike undone by the next update: as large, and straight back (cosine −0.95). */
function undoneSpike(): AnomalyRun {
  const run = spike();
  run.updateNormPerStep[41] = u(run, 41) * 8;
  run.cosinePrev[41] = -0.95;
  return run;
}

function lossSpike(): AnomalyRun {
  const run = smooth();
  run.trainLoss[30] = run.trainLoss[30]! * 3;
  return run;
}

/** The learning rate restarts at 45 (5× the update, then 1/√ decay) with a loss bump of 1.3× that fades. */
function restart(): AnomalyRun {
  const run = smooth();
  const at = u(run, 44);
  for (let i = 45; i < N; i++) {
    run.updateNormPerStep[i] = ((5 * at) / Math.sqrt(1 + i - 45)) * (1 + 0.03 * Math.sin(1.7 * i));
    run.trainLoss[i] = run.trainLoss[i]! * (1 + 0.3 * Math.exp(-(i - 45) / 3));
  }
  return run;
}

/** From 55 the loss grows 1.35× and the update 1.25× per checkpoint. */
function divergence(): AnomalyRun {
  const run = smooth();
  for (let i = 55; i < N; i++) {
    run.trainLoss[i] = run.trainLoss[54]! * 1.35 ** (i - 54);
    run.updateNormPerStep[i] = u(run, 54) * 1.25 ** (i - 54);
  }
  return run;
}

/** The loss flattens at 0.8 from 20 on (±1%), the update norm barely decays. */
function plateau(): AnomalyRun {
  const run = smooth();
  for (let i = 20; i < N; i++) {
    run.trainLoss[i] = 0.8 * (1 + 0.01 * Math.sin(3.1 * i));
    run.updateNormPerStep[i] = (u(run, 20) * (1 + 0.02 * Math.sin(1.3 * i))) / (1 + (i - 20) / 400);
  }
  return run;
}

/** The learning rate drops 10× at 30 and again at 60; the loss steps down 15% with each. */
function stepDecay(): AnomalyRun {
  const run = smooth();
  for (let i = 30; i < N; i++) {
    const drops = i >= 60 ? 2 : 1;
    run.updateNormPerStep[i] = u(run, i) * 0.1 ** drops;
    run.trainLoss[i] = run.trainLoss[i]! * 0.85 ** drops;
  }
  return run;
}

/**
 * A cosine schedule over checkpoints 1–cycle (each checkpoint the mean learning rate of its interval: the
 * last is ≈1.4e-4 of the peak for a cycle of 60, 7–11× below the one before), restarting to the peak at
 * cycle + 1 with a loss bump of 1.1× that fades. On a noisy run the last drops may start a lower level just
 * before the restart (the MNIST runs of scripts/eval-retention.ts).
 */
export function cosineRestart(cycle = 60, run = smooth()): AnomalyRun {
  // The mean of ½(1 + cos(πs/C)) over s ∈ [j − 1, j] in closed form.
  const mean = (j: number, c: number) =>
    0.5 + (c / (2 * Math.PI)) * (Math.sin((Math.PI * j) / c) - Math.sin((Math.PI * (j - 1)) / c));
  for (let i = 1; i < N; i++) {
    run.updateNormPerStep[i] = u(run, i) * (i <= cycle ? mean(i, cycle) : mean(i - cycle, 2 * cycle));
    if (i > cycle) run.trainLoss[i] = run.trainLoss[i]! * (1 + 0.1 * Math.exp(-(i - cycle - 1) / 3));
  }
  return run;
}

/** The learning rate drops 100× at 40 and stays there; the loss steps down 15%. */
function hundredfoldDrop(): AnomalyRun {
  const run = smooth();
  for (let i = 40; i < N; i++) {
    run.updateNormPerStep[i] = u(run, i) / 100;
    run.trainLoss[i] = run.trainLoss[i]! * 0.85;
  }
  return run;
}

/** Log-normal noise on the update norm (σ 0.25) and the loss (σ 0.1), cosines uniform in [−0.2, 0.6]. */
export function noisy(seed: number, n = N): AnomalyRun {
  const random = mulberry32(seed);
  const gauss = gaussian(random);
  const run = smooth(n);
  for (let i = 1; i < n; i++) run.updateNormPerStep[i] = u(run, i) * Math.exp(0.25 * gauss());
  for (let i = 0; i < n; i++) run.trainLoss[i] = run.trainLoss[i]! * Math.exp(0.1 * gauss());
  for (let i = 2; i < n; i++) run.cosinePrev[i] = -0.2 + 0.8 * random();
  return run;
}

/** An oscillation: the update turns straight back (cosine −0.9) and is 1.4× its trend. */
function reversal(): AnomalyRun {
  const run = smooth();
  run.cosinePrev[40] = -0.9;
  run.updateNormPerStep[40] = u(run, 40) * 1.4;
  return run;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

export const ANOMALY_CASES: AnomalyCase[] = [
  { name: 'warm-up ramp', run: warmup(), mustFlag: [], stalls: [], mayFlag: [], outliers: [] },
  {
    name: 'stall (the issue)',
    run: stall(),
    mustFlag: [{ at: [25], kinds: ['spike'] }],
    stalls: [50],
    mayFlag: [],
    outliers: [25, 50],
  },
  { name: 'duplicate upload', run: duplicate(), mustFlag: [], stalls: [50], mayFlag: [], outliers: [50] },
  {
    name: 'isolated spike',
    run: spike(),
    mustFlag: [{ at: [40], kinds: ['spike'] }],
    stalls: [],
    mayFlag: [],
    outliers: [40],
  },
  {
    name: 'spike undone',
    run: undoneSpike(),
    mustFlag: [{ at: [40], kinds: ['spike'] }],
    stalls: [],
    mayFlag: [],
    outliers: [40, 41],
  },
  {
    name: 'loss spike',
    run: lossSpike(),
    mustFlag: [{ at: [30], kinds: ['spike'] }],
    stalls: [],
    mayFlag: [],
    outliers: [30],
  },
  {
    name: 'LR restart',
    run: restart(),
    mustFlag: [{ at: [45], kinds: ['restart'] }],
    stalls: [],
    mayFlag: [],
    outliers: [],
  },
  {
    name: 'divergence',
    run: divergence(),
    mustFlag: [{ at: [55, 56, 57], kinds: ['divergence'] }],
    stalls: [],
    mayFlag: range(55, N),
    outliers: [],
  },
  { name: 'plateau', run: plateau(), mustFlag: [], stalls: [], mayFlag: [], outliers: [] },
  { name: 'step LR decay', run: stepDecay(), mustFlag: [], stalls: [], mayFlag: [], outliers: [] },
  {
    name: 'cosine to 1e-4, restart',
    run: cosineRestart(),
    mustFlag: [{ at: [61], kinds: ['restart'] }],
    stalls: [],
    mayFlag: [],
    outliers: [],
  },
  {
    name: 'cosine to 1e-4, restart (noisy)',
    run: cosineRestart(58, noisy(1)),
    mustFlag: [{ at: [59], kinds: ['restart'] }],
    stalls: [],
    mayFlag: [],
    outliers: [],
  },
  { name: '100× LR drop', run: hundredfoldDrop(), mustFlag: [], stalls: [], mayFlag: [40], outliers: [] },
  { name: 'noisy but normal', run: noisy(1), mustFlag: [], stalls: [], mayFlag: [], outliers: [] },
  {
    name: 'reversal',
    run: reversal(),
    mustFlag: [{ at: [40], kinds: ['reversal'] }],
    stalls: [],
    mayFlag: [],
    outliers: [],
  },
];

export interface CaseResult {
  name: string;
  expected: string;
  got: string;
  phaseStarts: number[];
  failures: string[];
}

/** Events (kind other than stall) and stalls of a scored run, as "kind@step". */
const label = (scores: readonly ChangeScore[], i: number) =>
  `${scores[i].kind}@${i * STEP}${scores[i].kind === 'stall' ? '' : ` (${scores[i].changeScore.toFixed(1)})`}`;

export function evaluateCase(c: AnomalyCase): CaseResult {
  const scores = changeScores(c.run);
  const failures: string[] = [];
  const named = new Set<number>([...c.stalls, ...c.mayFlag]);
  for (const want of c.mustFlag) {
    for (const i of want.at) named.add(i);
    const hit = want.at.filter((i) => scores[i].kind !== null && want.kinds.includes(scores[i].kind!));
    if (!hit.length)
      failures.push(`step ${want.at.map((i) => i * STEP).join('|')} not flagged as ${want.kinds.join('|')}`);
  }
  for (const i of c.stalls) if (scores[i].kind !== 'stall') failures.push(`step ${i * STEP} not a stall`);
  scores.forEach((s, i) => {
    if (s.kind !== null && !named.has(i)) failures.push(`step ${i * STEP} flagged: ${label(scores, i)}`);
  });
  const phaseStarts = dynamicsPhaseStarts(c.run);
  const cleanStarts = dynamicsPhaseStarts(withoutOutliers(c.run, c.outliers));
  for (const start of phaseStarts)
    if ((c.outliers.includes(start) || c.outliers.includes(start - 1)) && !cleanStarts.includes(start))
      failures.push(`a phase starts at step ${start * STEP}, at an isolated outlier`);
  const expected = [
    ...c.mustFlag.map((w) => `${w.kinds.join('|')}@${w.at.map((i) => i * STEP).join('|')}`),
    ...c.stalls.map((i) => `stall@${i * STEP}`),
  ];
  const got = scores.flatMap((s, i) => (s.kind === null ? [] : [label(scores, i)]));
  return {
    name: c.name,
    expected: expected.join(', ') || '—',
    got: got.join(', ') || '—',
    phaseStarts: phaseStarts.map((i) => i * STEP),
    failures,
  };
}

/** Indices where a phase of the dynamics segmentation begins. */
function dynamicsPhaseStarts(run: AnomalyRun): number[] {
  const { phaseOf } = assignPhases({
    steps: run.updateNormPerStep.map((_, i) => i * STEP),
    updateNormPerStep: run.updateNormPerStep,
    trainLoss: run.trainLoss,
    by: 'dynamics',
  });
  return phaseOf.flatMap((p, i) => (i > 0 && p !== phaseOf[i - 1] ? [i] : []));
}

/** The run with each outlier replaced by the geometric mean of the nearest ordinary checkpoints around it. */
function withoutOutliers(run: AnomalyRun, outliers: readonly number[]): AnomalyRun {
  const clean = structuredClone(run);
  const ordinary = (i: number, step: number) => {
    while (outliers.includes(i)) i += step;
    return i;
  };
  for (const o of outliers) {
    const [a, b] = [ordinary(o, -1), ordinary(o, 1)];
    for (const series of [clean.updateNormPerStep, clean.trainLoss])
      series[o] = Math.sqrt(series[a]! * series[Math.min(b, series.length - 1)]!);
  }
  return clean;
}

export function formatTable(results: readonly CaseResult[]): string {
  const rows = [
    ['kind', 'must flag (kind@step)', 'flagged (kind@step (score))', 'dynamics phases start', 'ok'],
    ...results.map((r) => [
      r.name,
      r.expected,
      r.got,
      r.phaseStarts.join(', '),
      r.failures.length ? `NO: ${r.failures.join('; ')}` : 'yes',
    ]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c])).join(' | ')} |`;
  return [line(rows[0]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const results = ANOMALY_CASES.map(evaluateCase);
  console.log(
    `Labelled anomalies: ${N} checkpoints each, ${STEP} steps apart; every checkpoint not named must be neither an event nor a stall.\n`,
  );
  console.log(formatTable(results));
  process.exitCode = results.some((r) => r.failures.length) ? 1 : 0;
}
