/**
 * Crash testing (issue 11): the gateway as a child process (`node --import tsx src/main.ts`) on one data
 * directory, clients uploading checkpoints, logging metric batches and pinning/unpinning while a tight
 * retention policy (graceSeconds 0, the collector every second) deletes bytes, and SIGKILL at random moments.
 * After each kill, with the gateway down:
 *
 *   1. `PRAGMA integrity_check` on `catalog.db` as the kill left it (read-only);
 *   2. reconciliation (`src/retention/reconcile.ts`) with a stale age of 0 — nothing is in flight once the
 *      process is dead, so every unreferenced blob is an orphan and every staged file abandoned — then: no
 *      key under `runs/` without its catalog row, no staged file, every kept row's blob whole on disk;
 *
 * then the gateway is restarted on the same directory and, over HTTP: every listed kept checkpoint
 * downloads whole with its sha256, every acknowledged upload (201/200 received) is listed with its sha256,
 * every acknowledged metric batch is stored (a batch retried after a lost answer may be stored twice: those
 * are counted, not failed), acknowledged pins hold, the run's estimate and trajectory answer.
 *
 * The choices (steps, sizes, pins, kill delays) come from a seeded PRNG; the moment a kill lands in the
 * gateway's work depends on timing, so two runs with one seed are alike, not identical.
 *
 * Used by test/crash.test.ts (20 kills in CI) and scripts/crash-test.ts (`--kills N --seed S`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { MEDIA_TYPES, SHA256_HEADER } from '@trajgate/sdk/wire/formats';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import BetterSqlite3 from 'better-sqlite3';
import { pino } from 'pino';
import { z } from 'zod';
import type { Catalog } from '../../src/catalog/catalog.js';
import { openCatalog } from '../../src/catalog/factory.js';
import { reconcile } from '../../src/retention/reconcile.js';
import { RUNS_PREFIX, manifestKeyFor, parseCheckpointKey } from '../../src/storage/keys.js';
import { LocalBlobStore } from '../../src/storage/local-blob-store.js';
import { watchGatewayOutput } from './gateway-process.js';
import { deriveSeed, mulberry32 } from './mnist-data.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** What is checked, with the wording failures are reported under. */
export const INVARIANTS = {
  integrity: 'PRAGMA integrity_check is ok on catalog.db as the kill left it',
  partial: 'every listed kept checkpoint downloads whole with its sha256, and its blob is whole on disk',
  orphan: 'after reconciliation no key under runs/ lacks its catalog row, and no deleted row keeps bytes',
  staging: 'after reconciliation no staged write is left',
  'lost-upload': 'every acknowledged upload is listed with its sha256 (and nothing never sent is listed)',
  'lost-points': 'every acknowledged metric batch is stored whole (and nothing never sent is stored)',
  pin: 'an acknowledged pin or unpin holds, and an acknowledged ?pin=true upload is pinned',
  response: 'no unexpected HTTP answer (5xx, conflict, malformed acknowledgement)',
  shutdown: 'the last gateway exits 0 on SIGTERM and leaves nothing to reconcile',
} as const;
export type Invariant = keyof typeof INVARIANTS;

export interface Violation {
  /** 0 for the final (clean shutdown) check. */
  round: number;
  invariant: Invariant;
  detail: string;
}

export interface RoundReport {
  round: number;
  /** Milliseconds of workload before the SIGKILL. */
  killedAfterMs: number;
  /** What the clients had in flight when the kill landed. */
  inFlight: { uploadsMidBody: number; uploadsAwaitingAnswer: number; batches: number; pins: number };
  uploadsAcked: number;
  /** Of those, retries of an upload whose answer an earlier kill cut (200 unchanged or 201). */
  retriesAcked: number;
  pointsAcked: number;
  pinOpsAcked: number;
  /** Keys under runs/ no catalog row references, before reconciliation; and what reconciliation removed. */
  orphansFound: number;
  orphansRemoved: number;
  stagingFound: number;
  stagingRemoved: number;
  /** Catalog rows whose indicators are null (a kill between the row and the run-lock work). */
  rowsWithoutIndicators: number;
  /** Discarded rows whose bytes are gone but not yet marked deleted (a kill inside a collector pass). */
  pendingCollection: number;
  /** Metric batches stored twice or more (a retry after a lost answer), over the whole run so far. */
  duplicateBatches: number;
  /** Error-level lines the gateway killed in this round had logged. */
  gatewayErrors: number;
  violations: Violation[];
  /** Wall time of the round, and of its offline check, restart and online check. */
  ms: number;
  timings: { offlineMs: number; startMs: number; verifyMs: number };
}

export interface CrashTotals {
  kills: number;
  uploadsAcked: number;
  retriesAcked: number;
  pointsAcked: number;
  pinOpsAcked: number;
  orphansFound: number;
  orphansRemoved: number;
  stagingFound: number;
  stagingRemoved: number;
  killsMidBody: number;
  rowsWithoutIndicators: number;
  pendingCollection: number;
  duplicateBatches: number;
  /** Checkpoints listed, kept and downloaded whole at the last check. */
  checkpointsListed: number;
  downloadsVerified: number;
  /** Error-level lines all the gateways logged (grouped in CrashResult.gatewayErrorMessages). */
  gatewayErrors: number;
  violations: number;
}

export interface CrashResult {
  seed: number;
  dataDir: string;
  rounds: RoundReport[];
  /** The final round: clean restart, verification, SIGTERM, reconciliation that must find nothing. */
  final: { verified: boolean; exitCode: number | null; orphans: number; staged: number; violations: Violation[] };
  totals: CrashTotals;
  violations: Violation[];
  /** The error-level lines the gateways logged, grouped: "count× message: error (METHOD /path)". */
  gatewayErrorMessages: string[];
  ms: number;
}

export interface CrashOptions {
  kills: number;
  seed: number;
  /** Where the gateway keeps its data; default a fresh temporary directory, removed at the end. */
  dataDir?: string;
  /** Keep the data directory at the end (default: keep only when violations were found). */
  keepDataDir?: boolean;
  /**
   * Workload time before each kill, drawn uniformly in [min, max] ms — in one round of five in [max, 3·max],
   * so that uploads slower than `max` (a loaded machine, a grown run) also get acknowledged now and then.
   */
  killDelayMs?: readonly [number, number];
  /** Append every line the gateways log (JSON, one per line) to this file, for reading a failure. */
  gatewayLog?: string;
  /** Gateways spawned ahead to load while earlier rounds run (default 2; 0: each start loads in turn). */
  preload?: number;
  onRound?: (report: RoundReport) => void;
  /** Progress lines (gateway starts, phases); default none. */
  log?: (line: string) => void;
}

/** A run the clients write to: its tensors (shapes are fixed per run), its uploaders and how they send. */
interface RunSpec {
  id: string;
  tensors: readonly { name: string; shape: readonly number[] }[];
  uploaders: number;
  /** Bytes per write and the pause between writes: large bodies are sent in paced chunks. */
  chunkBytes: number;
  pauseMs: number;
  /** Share of uploads sent with ?pin=true. */
  pinShare: number;
}

const RUN_SPECS: readonly RunSpec[] = [
  {
    id: 'crash-small',
    tensors: [
      { name: 'layer.w', shape: [64, 64] },
      { name: 'layer.b', shape: [64] },
    ],
    uploaders: 3,
    chunkBytes: 1 << 20,
    pauseMs: 0,
    pinShare: 0.15,
  },
  // 1 MiB sent in 64 KiB writes 8 ms apart: over a tenth of a second per body, so kills land mid-body.
  {
    id: 'crash-large',
    tensors: [{ name: 'w', shape: [512, 512] }],
    uploaders: 2,
    chunkBytes: 64 << 10,
    pauseMs: 8,
    pinShare: 0.1,
  },
];

/** Tight on purpose: few kept, bytes deleted as soon as the collector passes. */
const POLICY = {
  budget: { maxCheckpoints: 3 },
  latest: 1,
  phase: { count: 1, perPhase: 1 },
  change: { max: 0 },
  best: { metric: 'valLoss', mode: 'min', count: 1 },
  every: null,
  graceSeconds: 0,
};

const POINTS_PER_BATCH = 10;
const BATCH_PAUSE_MS = 20;
const PIN_PAUSE_MS = 100;
const STEP_GAP = 10;
const METRIC_WINDOW = 20_000;
const METRIC_LIMIT = 100_000;
const START_TIMEOUT_MS = 60_000;
/** The share of rounds whose kill comes after [max, 3·max] ms of workload (see CrashOptions.killDelayMs). */
const LONG_ROUNDS = 0.2;
/** Gateways loading ahead (see spawnGateway): loading takes seconds, a round about one. */
const PRELOADED = 2;
const REQUEST_TIMEOUT_MS = 30_000;

interface UploadJob {
  step: number;
  pin: boolean;
  attempts: number;
}

interface MetricBatch {
  steps: number[];
  body: Buffer;
  attempts: number;
  acked: number;
}

interface PinState {
  value: boolean;
  /** False while an operation whose answer was lost may have changed it. */
  certain: boolean;
}

interface RunState {
  spec: RunSpec;
  index: number;
  nextStep: number;
  retries: UploadJob[];
  /** Every step ever sent, with its body's sha256 (a step always gets the same bytes). */
  sent: Map<number, string>;
  acked: Map<number, string>;
  pins: Map<number, PinState>;
  nextMetricStep: number;
  metricRetries: MetricBatch[];
  batchOfStep: Map<number, MetricBatch>;
  batches: MetricBatch[];
}

interface Counters {
  uploadsAcked: number;
  retriesAcked: number;
  pointsAcked: number;
  pinOpsAcked: number;
  midBody: number;
  awaiting: number;
  batchesInFlight: number;
  pinsInFlight: number;
}

const newCounters = (): Counters => ({
  uploadsAcked: 0,
  retriesAcked: 0,
  pointsAcked: 0,
  pinOpsAcked: 0,
  midBody: 0,
  awaiting: 0,
  batchesInFlight: 0,
  pinsInFlight: 0,
});

// ---------------------------------------------------------------------------------------------------------
// HTTP

interface Answer {
  status: number;
  body: Buffer;
}

interface SendOptions {
  method: string;
  headers?: Record<string, string | number>;
  body?: Buffer;
  chunkBytes?: number;
  pauseMs?: number;
  /** Called once the whole body is handed to the socket. */
  onSent?: () => void;
}

/** One exchange on a fresh connection; rejects on any network failure or a cut answer (not acknowledged). */
function exchange(url: string, options: SendOptions): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const req = http.request(url, { method: options.method, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        if (res.complete) resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
        else reject(new Error('the answer was cut'));
      });
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error('the answer was cut'));
      });
    });
    req.on('error', reject);
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)));
    sendBody(req, options).catch((err: unknown) => req.destroy(err instanceof Error ? err : new Error(String(err))));
  });
}

async function sendBody(req: http.ClientRequest, options: SendOptions): Promise<void> {
  const body = options.body ?? Buffer.alloc(0);
  const step = options.chunkBytes ?? Math.max(1, body.length);
  for (let at = 0; at < body.length; at += step) {
    if (req.destroyed) return;
    if (!req.write(body.subarray(at, at + step))) await drained(req);
    if (options.pauseMs && at + step < body.length) await sleep(options.pauseMs);
  }
  if (req.destroyed) return;
  req.end();
  options.onSent?.();
}

function drained(req: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}

function parseJson<T>(schema: z.ZodType<T>, answer: Answer): T | null {
  let value: unknown;
  try {
    value = JSON.parse(answer.body.toString('utf8'));
  } catch {
    return null;
  }
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

const CheckpointAck = z.object({ step: z.number(), sha256: z.string(), pinned: z.boolean() });
const CheckpointItem = z.object({
  step: z.number(),
  sha256: z.string(),
  bytes: z.number(),
  status: z.enum(['kept', 'discarded']),
  pinned: z.boolean(),
  contentAvailable: z.boolean(),
  indicators: z.unknown(),
});
const CheckpointList = z.object({ items: z.array(CheckpointItem), next: z.number().nullable() });
const MetricList = z.object({ items: z.array(z.object({ step: z.number() })) });

function snippet(answer: Answer): string {
  return `${answer.status} ${answer.body.toString('utf8').slice(0, 300)}`;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

// ---------------------------------------------------------------------------------------------------------
// The gateway process

interface Gateway {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  errors: string[];
  tail(): string;
}

function gatewayEnv(dataDir: string): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAJGATE_')));
  return {
    ...inherited,
    NODE_TEST_CONTEXT: '',
    TRAJGATE_DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    TRAJGATE_AUTH: 'none',
    TRAJGATE_LOG_LEVEL: 'info',
    TRAJGATE_COLLECT_INTERVAL_S: '1',
    TRAJGATE_UPLOAD_IDLE_S: '5',
    TRAJGATE_SHUTDOWN_GRACE_S: '1',
    TRAJGATE_RATE_LIMIT_RPS: '0',
  };
}

/**
 * Gateways are spawned ahead (rounds before they are needed) and held at a gate: a preloaded
 * module imports `src/server.ts` — the module graph, most of a start's seconds, none of it touching the data
 * directory — then waits for a line on stdin. `start()` sends that line once the offline checks are done;
 * `src/main.ts` then runs as it always does (config, catalog, blobs, collector, listen) within a fraction of
 * a second. Only loading overlaps the checks; everything the gateway does with its data happens after.
 *
 * A gateway spawned ahead loads at the lowest CPU priority (nice 19), so it takes idle time rather than the
 * running gateway's, and gets its normal priority back when it starts. Where that is not permitted (lowering
 * a niceness needs CAP_SYS_NICE), `start()` reports it and the harness stops loading ahead.
 */
const GATE = [
  `await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/server.ts')).href)});`,
  "await new Promise((resolve) => process.stdin.once('data', resolve));",
  'process.stdin.destroy();',
].join('\n');

interface PendingGateway {
  /** Lets `src/main.ts` run; resolves once it logs the URL it listens on. */
  start(): Promise<Gateway>;
  /** False once a start could not restore the normal CPU priority of a gateway loaded at nice 19. */
  readonly reniced: boolean;
  /** Whether the process ended while held at the gate (killed from outside: nothing of it ran). */
  readonly gone: boolean;
  /** SIGKILL if still running, and wait for the exit. */
  discard(): Promise<void>;
}

/** Spawns `node --import tsx src/main.ts`, held at the gate until `start()`. */
function spawnGateway(dataDir: string, options: { logFile?: string; background?: boolean } = {}): PendingGateway {
  const { logFile, background = false } = options;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', `data:text/javascript,${encodeURIComponent(GATE)}`, path.join(ROOT, 'src/main.ts')],
    { cwd: ROOT, env: gatewayEnv(dataDir), stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let niced = false;
  if (background && child.pid !== undefined) {
    try {
      os.setPriority(child.pid, 19);
      niced = true;
    } catch {
      // Not permitted here: it loads at normal priority.
    }
  }
  let reniced = true;
  let released = false;
  const { listening, errors, tail } = watchGatewayOutput(child, { logFile });
  child.stdin!.on('error', () => undefined); // a child that died before the go line
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const discard = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  return {
    discard,
    get reniced() {
      return reniced;
    },
    get gone() {
      return !released && (child.exitCode !== null || child.signalCode !== null);
    },
    async start() {
      if (niced && child.pid !== undefined) {
        try {
          os.setPriority(child.pid, os.getPriority());
        } catch {
          reniced = false;
        }
      }
      released = true;
      child.stdin!.write('go\n');
      const failed = exited.then((code) => {
        throw new Error(`the gateway exited (${code ?? child.signalCode}) before listening\n${tail()}`);
      });
      const timer = sleep(START_TIMEOUT_MS, undefined, { ref: false }).then(() => {
        throw new Error(`the gateway did not listen within ${START_TIMEOUT_MS} ms\n${tail()}`);
      });
      failed.catch(() => undefined);
      timer.catch(() => undefined);
      try {
        const url = await Promise.race([listening, failed, timer]);
        return { child, url, exited, errors, tail };
      } catch (err) {
        await discard();
        throw err;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Bodies: a step of a run always gets the same bytes, so a retry after a lost answer is the same upload.

class BodyMaker {
  private readonly bases = new Map<number, Float32Array[]>();

  constructor(private readonly seed: number) {}

  body(run: RunState, step: number): Buffer {
    const rand = mulberry32(deriveSeed(deriveSeed(this.seed, 100 + run.index), step));
    const drift = 1 + step * 1e-4;
    const tensors = run.spec.tensors.map((t, k) => {
      const base = this.base(run)[k];
      const values = new Float32Array(base.length);
      for (let i = 0; i < values.length; i++) values[i] = base[i] * drift + 0.01 * (rand() - 0.5);
      return { name: t.name, dtype: 'F32' as const, shape: [...t.shape], data: new Uint8Array(values.buffer) };
    });
    return encodeSafetensors(tensors);
  }

  private base(run: RunState): Float32Array[] {
    let base = this.bases.get(run.index);
    if (!base) {
      const rand = mulberry32(deriveSeed(this.seed, 200 + run.index));
      base = run.spec.tensors.map((t) => {
        const values = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
        for (let i = 0; i < values.length; i++) values[i] = rand() - 0.5;
        return values;
      });
      this.bases.set(run.index, base);
    }
    return base;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Clients: each loops until the round's kill; what the kill cuts is retried in a later round.

interface Live {
  active: boolean;
}

type Flag = (invariant: Invariant, detail: string) => void;

/** Retries of an answer that keeps failing (a 5xx) are given up after this many attempts. */
const MAX_ATTEMPTS = 5;

async function uploader(
  url: string,
  run: RunState,
  bodies: BodyMaker,
  rand: () => number,
  live: Live,
  counters: Counters,
  flag: Flag,
): Promise<void> {
  const { id, chunkBytes, pauseMs, pinShare } = { ...run.spec };
  while (live.active) {
    let job = run.retries.shift();
    if (!job) {
      job = { step: run.nextStep, pin: rand() < pinShare, attempts: 0 };
      run.nextStep += STEP_GAP;
    }
    job.attempts++;
    const body = bodies.body(run, job.step);
    const sha = sha256(body);
    run.sent.set(job.step, sha);
    const where = `PUT ${id}/checkpoints/${job.step}${job.pin ? '?pin=true' : ''} (attempt ${job.attempts})`;
    const progress = { sent: false };
    counters.midBody++;
    let answer: Answer;
    try {
      answer = await exchange(`${url}/v1/runs/${id}/checkpoints/${job.step}${job.pin ? '?pin=true' : ''}`, {
        method: 'PUT',
        headers: {
          'content-type': MEDIA_TYPES.safetensors,
          'content-length': body.length,
          [SHA256_HEADER]: sha,
        },
        body,
        chunkBytes,
        pauseMs,
        onSent: () => {
          progress.sent = true;
          counters.midBody--;
          counters.awaiting++;
        },
      });
    } catch {
      run.retries.push(job); // no answer: not acknowledged; the same bytes go again next round
      continue;
    } finally {
      if (progress.sent) counters.awaiting--;
      else counters.midBody--;
    }
    if (answer.status === 201 || answer.status === 200) {
      const ack = parseJson(CheckpointAck, answer);
      if (!ack || ack.step !== job.step || ack.sha256 !== sha) {
        flag('response', `${where}: a malformed acknowledgement ${snippet(answer)}`);
        continue;
      }
      run.acked.set(job.step, sha);
      counters.uploadsAcked++;
      if (job.attempts > 1) counters.retriesAcked++;
      if (ack.pinned !== job.pin) {
        flag(
          'pin',
          `${where} answered ${answer.status} with pinned=${ack.pinned}` +
            (job.attempts > 1 ? ' (a retry: a kill cut the answer to an earlier attempt)' : ''),
        );
      }
      run.pins.set(job.step, { value: ack.pinned, certain: true });
    } else if (answer.status === 408) {
      run.retries.push(job); // the gateway's upload idle timeout on a starved machine: not acknowledged
    } else {
      flag('response', `${where}: ${snippet(answer)}`);
      if (job.attempts < MAX_ATTEMPTS) run.retries.push(job);
    }
  }
}

async function metricWriter(url: string, run: RunState, live: Live, counters: Counters, flag: Flag): Promise<void> {
  const id = run.spec.id;
  while (live.active) {
    let batch = run.metricRetries.shift();
    if (!batch) {
      const steps = Array.from({ length: POINTS_PER_BATCH }, (_, i) => run.nextMetricStep + i);
      run.nextMetricStep += POINTS_PER_BATCH;
      const points = steps.map((step) => ({
        step,
        trainLoss: 2 / (1 + step * 0.01),
        valLoss: 2.1 / (1 + step * 0.009),
      }));
      batch = { steps, body: Buffer.from(JSON.stringify({ points })), attempts: 0, acked: 0 };
      run.batches.push(batch);
      for (const step of steps) run.batchOfStep.set(step, batch);
    }
    batch.attempts++;
    const where = `POST ${id}/metrics steps ${batch.steps[0]}-${batch.steps[batch.steps.length - 1]}`;
    counters.batchesInFlight++;
    let answer: Answer;
    try {
      answer = await exchange(`${url}/v1/runs/${id}/metrics`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': batch.body.length },
        body: batch.body,
      });
    } catch {
      run.metricRetries.push(batch);
      continue;
    } finally {
      counters.batchesInFlight--;
    }
    if (answer.status !== 200) {
      flag('response', `${where}: ${snippet(answer)}`);
      if (batch.attempts < MAX_ATTEMPTS) run.metricRetries.push(batch);
      continue;
    }
    batch.acked++;
    counters.pointsAcked += batch.steps.length;
    await sleep(BATCH_PAUSE_MS);
  }
}

/** Pins acknowledged checkpoints, and unpins once a run has two pinned, so pins stay few. */
async function pinner(
  url: string,
  runs: readonly RunState[],
  rand: () => number,
  live: Live,
  counters: Counters,
  flag: Flag,
): Promise<void> {
  while (live.active) {
    await sleep(PIN_PAUSE_MS);
    if (!live.active) return;
    const run = runs[Math.floor(rand() * runs.length)];
    const pinned = [...run.pins].filter(([, s]) => s.value && s.certain).map(([step]) => step);
    const acked = [...run.acked.keys()];
    if (acked.length === 0) continue;
    const pin = pinned.length < 2;
    const choices = pin ? acked : pinned;
    const step = choices[Math.floor(rand() * choices.length)];
    const where = `POST ${run.spec.id}/checkpoints/${step}/${pin ? 'pin' : 'unpin'}`;
    run.pins.set(step, { value: run.pins.get(step)?.value ?? false, certain: false });
    counters.pinsInFlight++;
    let answer: Answer;
    try {
      answer = await exchange(`${url}/v1/runs/${run.spec.id}/checkpoints/${step}/${pin ? 'pin' : 'unpin'}`, {
        method: 'POST',
      });
    } catch {
      continue; // the pin state stays uncertain until an acknowledged operation sets it
    } finally {
      counters.pinsInFlight--;
    }
    const record = answer.status === 200 ? parseJson(CheckpointAck, answer) : null;
    if (!record) {
      flag('response', `${where}: ${snippet(answer)}`);
      continue;
    }
    if (record.pinned !== pin) flag('pin', `${where} answered 200 with pinned=${record.pinned}`);
    run.pins.set(step, { value: record.pinned, certain: true });
    counters.pinOpsAcked++;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Checks

interface OnlineCheck {
  listed: number;
  downloads: number;
  /** Metric batches stored more than once (retries after a lost answer). */
  duplicateBatches: number;
}

/** Every checkpoint of the run, page by page; null (flagged unless the run was never created) on a bad answer. */
async function listEveryPage(
  url: string,
  id: string,
  run: RunState,
  flag: Flag,
): Promise<{ items: z.infer<typeof CheckpointItem>[] } | null> {
  const items: z.infer<typeof CheckpointItem>[] = [];
  let after: number | null = null;
  for (;;) {
    const query = after === null ? '?limit=1000' : `?limit=1000&after=${after}`;
    const listing = await exchange(`${url}/v1/runs/${id}/checkpoints${query}`, { method: 'GET' });
    if (listing.status === 404 && run.sent.size === 0 && run.batches.length === 0) return null;
    const page = listing.status === 200 ? parseJson(CheckpointList, listing) : null;
    if (!page) {
      flag('response', `GET ${id}/checkpoints${query}: ${snippet(listing)}`);
      return null;
    }
    items.push(...page.items);
    if (page.next === null) return { items };
    after = page.next;
  }
}

/** Over HTTP, on the restarted gateway: listings, downloads, acknowledged uploads, points and pins. */
async function verifyOnline(url: string, runs: readonly RunState[], flag: Flag): Promise<OnlineCheck> {
  const check: OnlineCheck = { listed: 0, downloads: 0, duplicateBatches: 0 };
  for (const run of runs) {
    const id = run.spec.id;
    const list = await listEveryPage(url, id, run, flag);
    if (!list) continue;
    const byStep = new Map(list.items.map((item) => [item.step, item]));
    check.listed += list.items.length;
    for (const item of list.items) {
      const where = `step ${item.step} of ${id}`;
      const sent = run.sent.get(item.step);
      if (sent === undefined) flag('lost-upload', `${where} is listed but was never sent`);
      else if (item.sha256 !== sent) flag('lost-upload', `${where} is listed with sha256 ${item.sha256}, sent ${sent}`);
      if (item.status !== 'kept') continue;
      if (!item.contentAvailable) {
        flag('partial', `${where} is listed kept but its bytes are deleted (contentAvailable false)`);
        continue;
      }
      const content = await exchange(`${url}/v1/runs/${id}/checkpoints/${item.step}/content`, { method: 'GET' });
      if (content.status !== 200) {
        flag('partial', `${where} is listed kept but its download answers ${snippet(content)}`);
      } else if (content.body.length !== item.bytes || sha256(content.body) !== item.sha256) {
        flag(
          'partial',
          `${where} downloads ${content.body.length} bytes with sha256 ${sha256(content.body)}, ` +
            `listed ${item.bytes} bytes with ${item.sha256}`,
        );
      } else {
        check.downloads++;
      }
    }
    for (const [step, sha] of run.acked) {
      const item = byStep.get(step);
      if (!item) flag('lost-upload', `step ${step} of ${id} was acknowledged but is not listed`);
      else if (item.sha256 !== sha) flag('lost-upload', `step ${step} of ${id} was acknowledged with sha256 ${sha}`);
    }
    for (const [step, state] of run.pins) {
      const item = byStep.get(step);
      if (state.certain && item && item.pinned !== state.value) {
        flag('pin', `step ${step} of ${id}: pinned=${state.value} was acknowledged, listed pinned=${item.pinned}`);
      }
    }
    check.duplicateBatches += await verifyPoints(url, run, flag);
    for (const view of ['estimate', 'trajectory']) {
      const answer = await exchange(`${url}/v1/runs/${id}/${view}`, { method: 'GET' });
      if (answer.status >= 500) flag('response', `GET ${id}/${view} after the restart: ${snippet(answer)}`);
    }
  }
  return check;
}

/** Counts the stored points by step against the batches sent; returns the batches stored twice or more. */
async function verifyPoints(url: string, run: RunState, flag: Flag): Promise<number> {
  const id = run.spec.id;
  const stored = new Map<number, number>();
  for (let from = 0; from < run.nextMetricStep; from += METRIC_WINDOW) {
    const query = `fromStep=${from}&toStep=${from + METRIC_WINDOW - 1}&limit=${METRIC_LIMIT}`;
    const answer = await exchange(`${url}/v1/runs/${id}/metrics?${query}`, { method: 'GET' });
    const page = answer.status === 200 ? parseJson(MetricList, answer) : null;
    if (!page) {
      if (answer.status === 404 && run.batches.every((b) => b.acked === 0)) return 0;
      flag('response', `GET ${id}/metrics?${query}: ${snippet(answer)}`);
      return 0;
    }
    if (page.items.length >= METRIC_LIMIT) throw new Error(`more than ${METRIC_LIMIT} points in one window`);
    for (const point of page.items) stored.set(point.step, (stored.get(point.step) ?? 0) + 1);
  }
  let duplicates = 0;
  for (const batch of run.batches) {
    const counts = batch.steps.map((step) => stored.get(step) ?? 0);
    const low = Math.min(...counts);
    const high = Math.max(...counts);
    const what = `metric batch ${batch.steps[0]}-${batch.steps[batch.steps.length - 1]} of ${id}`;
    if (low !== high) flag('lost-points', `${what} is stored partially: ${counts.join(',')} point(s) per step`);
    if (low < batch.acked) flag('lost-points', `${what} was acknowledged ${batch.acked}x but is stored ${low}x`);
    if (high > batch.attempts) flag('lost-points', `${what} was sent ${batch.attempts}x but is stored ${high}x`);
    if (high > 1) duplicates++;
  }
  for (const step of stored.keys()) {
    if (!run.batchOfStep.has(step))
      flag('lost-points', `a point of step ${step} of ${id} is stored but was never sent`);
  }
  return duplicates;
}

interface OfflineCheck {
  orphansFound: number;
  orphansRemoved: number;
  stagingFound: number;
  stagingRemoved: number;
  rowsWithoutIndicators: number;
  pendingCollection: number;
}

const quiet = pino({ level: 'silent' });

/** With the gateway down: the catalog's integrity, reconciliation, and storage against the catalog. */
async function checkOffline(dataDir: string, runs: readonly RunState[], flag: Flag): Promise<OfflineCheck> {
  const dbFile = path.join(dataDir, 'catalog.db');
  const blobDir = path.join(dataDir, 'blobs');
  const stagingDir = path.join(blobDir, '.staging');
  try {
    const db = new BetterSqlite3(dbFile, { readonly: true, fileMustExist: true });
    try {
      const result: unknown = db.pragma('integrity_check', { simple: true });
      if (result !== 'ok') flag('integrity', `PRAGMA integrity_check: ${String(result)}`);
    } finally {
      db.close();
    }
  } catch (err) {
    flag('integrity', `catalog.db could not be opened read-only: ${err instanceof Error ? err.message : String(err)}`);
  }

  const check: OfflineCheck = {
    orphansFound: 0,
    orphansRemoved: 0,
    stagingFound: (await names(stagingDir)).length,
    stagingRemoved: 0,
    rowsWithoutIndicators: 0,
    pendingCollection: 0,
  };
  const catalog = await openCatalog(`sqlite://${dbFile}`);
  const blobs = new LocalBlobStore(blobDir);
  try {
    check.orphansFound = (await unreferenced(catalog, blobs, flag)).length;
    // Stale age 0: the gateway is dead, so nothing is between its blob commit and its row any more. (Moving
    // `now` into the future instead would not do: it ages the blobs, but collectStaging reads Date.now().)
    const result = await reconcile(catalog, blobs, quiet, 0);
    check.orphansRemoved = result.orphans;
    check.stagingRemoved = result.staged;
    for (const key of await unreferenced(catalog, blobs)) flag('orphan', `${key} survived reconciliation`);
    for (const name of await names(stagingDir)) flag('staging', `.staging/${name} survived reconciliation`);

    for (const run of runs) {
      for (const row of await catalog.listCheckpoints(run.spec.id)) {
        const where = `step ${row.step} of ${run.spec.id} (${row.status})`;
        if (row.indicators === null) check.rowsWithoutIndicators++;
        const blob = await statOrNull(path.join(blobDir, row.blobKey));
        const manifest = await statOrNull(path.join(blobDir, manifestKeyFor(row.blobKey)));
        if (!row.contentAvailable) {
          if (blob || manifest) {
            flag(
              'orphan',
              `${where} is marked deleted but its ${blob ? 'blob' : 'manifest'} is still stored ` +
                '(reconciliation keeps it: the row references its upload id)',
            );
          }
          continue;
        }
        if (row.status === 'discarded' && !blob) {
          check.pendingCollection++; // the collector deleted the bytes; the kill came before it marked the row
          continue;
        }
        if (!blob || blob.size !== row.bytes) {
          flag(
            'partial',
            `${where}: its blob is ${blob ? `${blob.size} bytes, the row says ${row.bytes}` : 'missing'}`,
          );
        } else if (row.status === 'kept' && sha256(await readFile(path.join(blobDir, row.blobKey))) !== row.sha256) {
          flag('partial', `${where}: its blob's sha256 differs from the row's`);
        }
        if (row.status === 'kept' && !manifest) flag('partial', `${where}: its manifest is missing`);
      }
    }
  } finally {
    await catalog.close();
    await blobs.close();
  }
  return check;
}

/** Keys under runs/ whose (run, step, upload id) is not a catalog row's; a key outside the layout is flagged. */
async function unreferenced(catalog: Catalog, blobs: LocalBlobStore, flag?: Flag): Promise<string[]> {
  const found: string[] = [];
  const uploadIds = new Map<string, Map<number, string>>();
  for await (const blob of blobs.list(RUNS_PREFIX)) {
    const parsed = parseCheckpointKey(blob.key);
    if (!parsed) {
      flag?.('orphan', `${blob.key} is not a checkpoint key`);
      found.push(blob.key);
      continue;
    }
    let committed = uploadIds.get(parsed.run);
    if (!committed) {
      committed = await catalog.uploadIds(parsed.run);
      uploadIds.set(parsed.run, committed);
    }
    if (committed.get(parsed.step) !== parsed.uploadId) found.push(blob.key);
  }
  return found;
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

async function statOrNull(file: string): Promise<{ size: number } | null> {
  try {
    return await stat(file);
  } catch {
    return null;
  }
}

function jsonRequest(method: string, value: unknown): SendOptions {
  const body = Buffer.from(JSON.stringify(value));
  return { method, headers: { 'content-type': 'application/json', 'content-length': body.length }, body };
}

// ---------------------------------------------------------------------------------------------------------
// The harness

/**
 * Starts the gateway, then per round: the workload, SIGKILL after a random delay, the offline checks, a
 * restart and the online checks. After the last round the gateway is stopped with SIGTERM and checked once
 * more: a clean stop must leave nothing for reconciliation.
 */
export async function runCrashTest(options: CrashOptions): Promise<CrashResult> {
  const started = performance.now();
  const log = options.log ?? (() => undefined);
  const [minDelay, maxDelay] = options.killDelayMs ?? [200, 1500];
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'trajgate-crash-')));
  const rand = mulberry32(deriveSeed(options.seed, 1));
  const runs: RunState[] = RUN_SPECS.map((spec, index) => ({
    spec,
    index,
    nextStep: STEP_GAP,
    retries: [],
    sent: new Map(),
    acked: new Map(),
    pins: new Map(),
    nextMetricStep: 1,
    metricRetries: [],
    batchOfStep: new Map(),
    batches: [],
  }));
  const bodies = new BodyMaker(options.seed);
  const violations: Violation[] = [];
  const rounds: RoundReport[] = [];
  const errorMessages = new Map<string, number>();
  const noteErrors = (lines: readonly string[]) => {
    for (const line of lines) errorMessages.set(errorKind(line), (errorMessages.get(errorKind(line)) ?? 0) + 1);
  };
  const final: CrashResult['final'] = { verified: false, exitCode: null, orphans: 0, staged: 0, violations: [] };
  let online: OnlineCheck = { listed: 0, downloads: 0, duplicateBatches: 0 };
  let gateway: Gateway | null = null;
  // Gateways spawned ahead, loading or held at the gate; one start per round plus the first.
  const pool: PendingGateway[] = [];
  let spawned = 0;
  let preload = options.preload ?? PRELOADED;
  const spawnOne = (background: boolean): PendingGateway => {
    spawned++;
    return spawnGateway(dataDir, { logFile: options.gatewayLog, background });
  };
  const startNext = async (): Promise<Gateway> => {
    let pending = pool.shift() ?? spawnOne(false);
    while (pool.length < preload && spawned < options.kills + 1) pool.push(spawnOne(true));
    if (pending.gone) {
      // Something outside the harness ended it while it waited at the gate; it never touched the data.
      log('a gateway loaded ahead was gone before its start: starting another');
      pending = spawnOne(false);
    }
    const started = await pending.start();
    if (!pending.reniced && preload > 0) {
      log('cannot restore the priority of a gateway loaded at nice 19: no more loading ahead');
      preload = 0;
      await Promise.all(pool.splice(0).map((p) => p.discard()));
    }
    return started;
  };
  try {
    log('starting the gateway');
    gateway = await startNext();
    for (const run of runs) {
      const answer = await exchange(
        `${gateway.url}/v1/runs/${run.spec.id}/policy`,
        jsonRequest('PUT', { policy: POLICY }),
      );
      if (answer.status !== 200) throw new Error(`setting the policy of ${run.spec.id}: ${snippet(answer)}`);
    }

    for (let round = 1; round <= options.kills; round++) {
      const roundStart = performance.now();
      const found: Violation[] = [];
      const flag: Flag = (invariant, detail) => found.push({ round, invariant, detail });
      const counters = newCounters();
      const live: Live = { active: true };
      const url = gateway.url;
      const loops: Promise<void>[] = [];
      for (const run of runs) {
        for (let u = 0; u < run.spec.uploaders; u++) {
          loops.push(uploader(url, run, bodies, rand, live, counters, flag));
        }
        loops.push(metricWriter(url, run, live, counters, flag));
      }
      loops.push(pinner(url, runs, rand, live, counters, flag));
      const long = rand() < LONG_ROUNDS;
      const delay = Math.round(long ? maxDelay * (1 + 2 * rand()) : minDelay + rand() * (maxDelay - minDelay));
      await sleep(delay);
      const inFlight = {
        uploadsMidBody: counters.midBody,
        uploadsAwaitingAnswer: counters.awaiting,
        batches: counters.batchesInFlight,
        pins: counters.pinsInFlight,
      };
      gateway.child.kill('SIGKILL');
      live.active = false;
      await gateway.exited;
      await Promise.all(loops);
      const gatewayErrors = gateway.errors.length;
      noteErrors(gateway.errors);
      gateway = null;

      log(`round ${round}: killed after ${delay} ms; checking offline`);
      const t0 = performance.now();
      const offline = await checkOffline(dataDir, runs, flag);
      const t1 = performance.now();
      log(`round ${round}: restarting`);
      gateway = await startNext();
      const t2 = performance.now();
      online = await verifyOnline(gateway.url, runs, flag);
      const t3 = performance.now();
      const report: RoundReport = {
        round,
        killedAfterMs: delay,
        inFlight,
        uploadsAcked: counters.uploadsAcked,
        retriesAcked: counters.retriesAcked,
        pointsAcked: counters.pointsAcked,
        pinOpsAcked: counters.pinOpsAcked,
        ...offline,
        duplicateBatches: online.duplicateBatches,
        gatewayErrors,
        violations: found,
        ms: Math.round(performance.now() - roundStart),
        timings: { offlineMs: Math.round(t1 - t0), startMs: Math.round(t2 - t1), verifyMs: Math.round(t3 - t2) },
      };
      violations.push(...found);
      rounds.push(report);
      options.onRound?.(report);
    }

    // The last gateway is verified (above) and stopped cleanly: nothing may be left to reconcile.
    const flag: Flag = (invariant, detail) => final.violations.push({ round: 0, invariant, detail });
    final.verified = true;
    gateway.child.kill('SIGTERM');
    const exit = await Promise.race([gateway.exited, sleep(20_000, 'timeout' as const, { ref: false })]);
    noteErrors(gateway.errors);
    if (exit === 'timeout') {
      flag('shutdown', `the gateway did not exit within 20 s of SIGTERM\n${gateway.tail()}`);
      gateway.child.kill('SIGKILL');
      await gateway.exited;
    } else {
      final.exitCode = exit;
      if (exit !== 0) flag('shutdown', `the gateway exited ${exit} on SIGTERM\n${gateway.tail()}`);
    }
    gateway = null;
    const offline = await checkOffline(dataDir, runs, flag);
    final.orphans = offline.orphansFound;
    final.staged = offline.stagingFound;
    if (offline.orphansFound + offline.stagingFound > 0) {
      flag(
        'shutdown',
        `after a clean stop, reconciliation found ${offline.orphansFound} orphan(s) and ` +
          `${offline.stagingFound} staged file(s)`,
      );
    }
    violations.push(...final.violations);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`the crash test stopped in round ${rounds.length + 1} (data kept in ${dataDir}): ${reason}`, {
      cause: err,
    });
  } finally {
    if (gateway) {
      gateway.child.kill('SIGKILL');
      await gateway.exited;
    }
    await Promise.all(pool.map((p) => p.discard()));
  }

  const sum = (pick: (r: RoundReport) => number) => rounds.reduce((n, r) => n + pick(r), 0);
  const totals: CrashTotals = {
    kills: rounds.length,
    uploadsAcked: sum((r) => r.uploadsAcked),
    retriesAcked: sum((r) => r.retriesAcked),
    pointsAcked: sum((r) => r.pointsAcked),
    pinOpsAcked: sum((r) => r.pinOpsAcked),
    orphansFound: sum((r) => r.orphansFound),
    orphansRemoved: sum((r) => r.orphansRemoved),
    stagingFound: sum((r) => r.stagingFound),
    stagingRemoved: sum((r) => r.stagingRemoved),
    killsMidBody: rounds.filter((r) => r.inFlight.uploadsMidBody > 0).length,
    rowsWithoutIndicators: sum((r) => r.rowsWithoutIndicators),
    pendingCollection: sum((r) => r.pendingCollection),
    duplicateBatches: online.duplicateBatches,
    checkpointsListed: online.listed,
    downloadsVerified: online.downloads,
    gatewayErrors: [...errorMessages.values()].reduce((n, c) => n + c, 0),
    violations: violations.length,
  };
  if (!options.dataDir && !(options.keepDataDir ?? violations.length > 0)) {
    await rm(dataDir, { recursive: true, force: true });
  }
  return {
    seed: options.seed,
    dataDir,
    rounds,
    final,
    totals,
    violations,
    gatewayErrorMessages: [...errorMessages].sort((a, b) => b[1] - a[1]).map(([kind, n]) => `${n}× ${kind}`),
    ms: Math.round(performance.now() - started),
  };
}

const LogLine = z.object({
  msg: z.string().optional(),
  err: z.object({ message: z.string().optional() }).optional(),
  method: z.string().optional(),
  url: z.string().optional(),
});

/** An error-level log line as "message: error (METHOD /path with numbers as N)", for grouping. */
function errorKind(line: string): string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return line.slice(0, 200);
  }
  const parsed = LogLine.safeParse(value);
  if (!parsed.success) return line.slice(0, 200);
  const { msg, err, method, url } = parsed.data;
  const where = method && url ? ` (${method} ${url.replace(/\?.*/, '').replace(/\d+/g, 'N')})` : '';
  return `${msg ?? 'error'}${err?.message ? `: ${err.message}` : ''}${where}`;
}

/** One line per round, for the script and the test's diagnostics. */
export function describeRound(r: RoundReport): string {
  const f = r.inFlight;
  return (
    `round ${String(r.round).padStart(3)}: kill after ${String(r.killedAfterMs).padStart(4)} ms ` +
    `(in flight: ${f.uploadsMidBody} mid-body, ${f.uploadsAwaitingAnswer} awaiting answer, ${f.batches} batches, ` +
    `${f.pins} pins) | acked: ${r.uploadsAcked} uploads (${r.retriesAcked} retries), ${r.pointsAcked} points, ` +
    `${r.pinOpsAcked} pin ops | orphans ${r.orphansFound} found ${r.orphansRemoved} removed | staging ` +
    `${r.stagingFound} found ${r.stagingRemoved} removed | rows without indicators ${r.rowsWithoutIndicators} | ` +
    `pending collection ${r.pendingCollection} | duplicate batches ${r.duplicateBatches} | gateway errors ` +
    `${r.gatewayErrors} | violations ${r.violations.length} | ${r.ms} ms (offline check ${r.timings.offlineMs}, ` +
    `restart ${r.timings.startMs}, online check ${r.timings.verifyMs})`
  );
}

/** The totals as `name value` lines. */
export function describeTotals(t: CrashTotals): string[] {
  return [
    `kills ${t.kills} (${t.killsMidBody} with an upload mid-body)`,
    `uploads acknowledged ${t.uploadsAcked} (of which retries after a cut answer ${t.retriesAcked})`,
    `metric points acknowledged ${t.pointsAcked}; batches stored twice or more ${t.duplicateBatches}`,
    `pin/unpin operations acknowledged ${t.pinOpsAcked}`,
    `orphans found ${t.orphansFound}, removed by reconciliation ${t.orphansRemoved}`,
    `staging files found ${t.stagingFound}, removed by reconciliation ${t.stagingRemoved}`,
    `rows found without indicators ${t.rowsWithoutIndicators}; deletions found pending ${t.pendingCollection}`,
    `last check: ${t.checkpointsListed} checkpoints listed, ${t.downloadsVerified} kept downloaded whole`,
    `gateway error lines ${t.gatewayErrors}`,
    `violations ${t.violations}`,
  ];
}
