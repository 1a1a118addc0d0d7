import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pack } from 'msgpackr';
import { MSGPACK, SHA256_HEADER, SHARD_COUNT_HEADER, SHARD_INDEX_FILE } from './wire/formats.js';
import { downloadToFile, downloadToStream } from './download.js';
import { TrajgateError } from './errors.js';
import { sendResumable } from './resumable.js';
import { isRetryable, type RetryOptions } from './retry.js';
import { RunLogger, type RunLoggerOptions } from './run-logger.js';
import {
  DEFAULT_HASH_FIRST_BYTES,
  prepareSource,
  type ByteStream,
  type CheckpointSource,
  type PreparedSource,
} from './source.js';
import { Transport } from './transport.js';
import type {
  AuditEntry,
  Checkpoint,
  CheckpointListItem,
  CheckpointPage,
  CheckpointStatus,
  CreatedToken,
  Estimate,
  EstimateHistoryEntry,
  MetricPoint,
  MetricPointPage,
  Policy,
  PolicyRecord,
  PolicyRef,
  RetentionDecision,
  Run,
  RunInput,
  RunSummary,
  ShardInfo,
  ShardUploadResult,
  Token,
  TokenInput,
  Trajectory,
  UploadResult,
} from './contract/api.js';
import type { Progress } from './progress.js';

export interface ClientOptions {
  /** The gateway, e.g. `http://localhost:8080`. */
  url: string;
  /**
   * A bearer token for a gateway with access control on (`TRAJGATE_AUTH=tokens`), sent as
   * `Authorization: Bearer <token>` on every request. Default: `$TRAJGATE_TOKEN`; `null` or `''` sends none.
   * Surrounding whitespace is trimmed; the SDK never puts the token in an error message.
   */
  token?: string | null;
  /** Backoff for connection errors, 429 and 5xx (default: 5 retries, 200 ms doubling, at most 10 s). */
  retry?: RetryOptions;
  /** Per-request timeout for JSON calls, in ms; uploads and downloads are not timed. Default 30,000. */
  timeoutMs?: number;
  /** A fetch to use instead of the global one (for a proxy agent, instrumentation, tests). */
  fetch?: typeof fetch;
}

export interface UploadOptions {
  /** Pin the checkpoint once stored, so no retention class evicts it. */
  pin?: boolean;
  /** Called as bytes are handed to the connection; starts again from 0 if the upload is retried. */
  onProgress?: Progress;
  /**
   * Tensors and files up to this many bytes are hashed in a first pass and the SHA-256 is sent in the
   * `x-trajgate-sha256` header, so the server refuses bytes that changed on the way rather than storing
   * them. Larger ones are hashed as they stream and checked against the server's answer afterwards
   * (reading a large file twice, or hashing a large tensor map before the first byte is sent, costs more
   * than it protects). Default 256 MiB; 0 never hashes up front.
   */
  hashFirstBytes?: number;
  /**
   * Files and tensors larger than this many bytes are sent with the resumable (tus) protocol: after a
   * connection error the upload goes on from the bytes the server holds instead of from byte 0, and
   * `onProgress` carries on from there. Its answer has `decision: null` (read the checkpoint's classes
   * and reasons, or the run's decisions, for what retention did). Default 64 MiB; 0: always; Infinity:
   * never. One-shot streams and sources of unknown size are always sent in one request.
   */
  resumableAbove?: number;
}

/** Default UploadOptions.resumableAbove. */
export const DEFAULT_RESUMABLE_ABOVE = 64 * 1024 * 1024;

export interface MetricsQuery {
  fromStep?: number;
  toStep?: number;
  /** At most 100,000; the server's default is 10,000. */
  limit?: number;
}

/** One page of the metric series (`getMetricPage`). */
export interface MetricPageQuery extends MetricsQuery {
  /** Continue after this cursor: the previous page's `next`, passed back unchanged. */
  after?: string;
}

/** The metric series read page by page (`metrics`, `listMetrics`). */
export interface MetricListOptions {
  fromStep?: number;
  toStep?: number;
  /** Start after this cursor (a page's `next`), e.g. to resume a read. */
  after?: string;
  /** Points per request, 1–100,000; default 10,000. */
  pageSize?: number;
}

/** One page of a run's checkpoints (`getCheckpointPage`). */
export interface CheckpointPageQuery {
  status?: CheckpointStatus;
  /** Give each checkpoint its tensor table (most of a record's size). */
  tensors?: boolean;
  /** Only checkpoints with a greater step: the previous page's `next`. */
  after?: number;
  /** 1–1000; the server's default is 100. */
  limit?: number;
}

/** A run's checkpoints read page by page (`checkpoints`, `listCheckpoints`). */
export interface CheckpointListOptions {
  status?: CheckpointStatus;
  /** Give each checkpoint its tensor table (most of a record's size). */
  tensors?: boolean;
  /** Start after this step, e.g. to resume a read. */
  after?: number;
  /** Checkpoints per request, 1–1000; default 1000, or 100 with `tensors`. */
  pageSize?: number;
}

export interface AuditQuery {
  /** Entries about this run only. */
  run?: string;
  /** Entries at or after this time (ISO-8601). */
  since?: string;
  /** Entries after this id: the previous page's `next`. */
  after?: number;
  /** At most 1000; the server's default is 100. */
  limit?: number;
}

/** The most points the server takes in one batch. */
const MAX_POINTS_PER_REQUEST = 100_000;

/**
 * A typed client for trajgate's REST API. Safe to share; every call is independent. Server errors become
 * `TrajgateError` (with the server's catalogue `code`), failures to connect `TrajgateConnectionError`;
 * connection errors, 429 and 5xx are retried with backoff, other 4xx never (so 401 `unauthenticated` and
 * 403 `forbidden` fail at once).
 */
export class TrajgateClient {
  /** The gateway's base URL, without a trailing slash. */
  readonly url: string;
  private readonly transport: Transport;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.transport = new Transport(
      this.url,
      options.fetch ?? fetch,
      options.timeoutMs ?? 30_000,
      options.retry ?? {},
      bearerToken(options.token === undefined ? process.env.TRAJGATE_TOKEN : options.token),
    );
  }

  /**
   * A handle for a training loop: `log()` batches metric points and `checkpoint()` queues uploads, both
   * through bounded background queues, so training waits on the network only when a queue is full.
   * `{ plannedSteps, trainSize, ... }` create or update the run before its first batch or upload.
   */
  run(id: string, options: RunLoggerOptions = {}): RunLogger {
    return new RunLogger(this, id, options);
  }

  /** Creates the run, or updates the fields given (absent fields keep their values). Same as putRun. */
  createRun(id: string, input: RunInput = {}): Promise<Run> {
    return this.putRun(id, input);
  }

  /** Creates or updates a run (PUT /v1/runs/{run}). */
  putRun(id: string, input: RunInput = {}): Promise<Run> {
    return this.transport.json('PUT', `/v1/runs/${enc(id)}`, { json: input });
  }

  /** A run with a summary of its checkpoints. */
  getRun(id: string): Promise<RunSummary> {
    return this.transport.json('GET', `/v1/runs/${enc(id)}`);
  }

  /** Every run, following the server's pages. */
  async listRuns(): Promise<Run[]> {
    const items: Run[] = [];
    for (let after: string | null = ''; after !== null; ) {
      const page: { items: Run[]; next: string | null } = await this.transport.json(
        'GET',
        `/v1/runs${query({ limit: 1000, after: after || undefined })}`,
      );
      items.push(...page.items);
      after = page.next;
    }
    return items;
  }

  /**
   * Uploads the checkpoint for `step` from a file, tensors or a stream (see CheckpointSource) and returns
   * the stored record with the retention decision it triggered. Retried on connection errors, 429 and
   * 5xx (the server answers 200 to the same bytes for the same step, so a retry after a lost answer is
   * harmless); a one-shot stream is attempted once. Different bytes for a committed step are refused
   * with `checkpoint_conflict`.
   */
  async uploadCheckpoint(
    run: string,
    step: number,
    source: CheckpointSource,
    options: UploadOptions = {},
  ): Promise<UploadResult> {
    const prepared = await prepareSource(source, options.hashFirstBytes ?? DEFAULT_HASH_FIRST_BYTES);
    const threshold = options.resumableAbove ?? DEFAULT_RESUMABLE_ABOVE;
    if (prepared.size !== null && prepared.replayable && prepared.size > threshold) {
      await sendResumable(this.transport, prepared, {
        collection: `/v1/runs/${enc(run)}/checkpoints/${step}/uploads`,
        pin: options.pin,
        onProgress: options.onProgress,
        retry: this.transport.retry,
      });
      return { ...(await this.getCheckpoint(run, step)), decision: null };
    }
    const path = `/v1/runs/${enc(run)}/checkpoints/${step}${options.pin ? '?pin=true' : ''}`;
    return this.sendCheckpoint<UploadResult>(path, prepared, options, {}, { run, step });
  }

  /**
   * Uploads one file of a sharded step (`shardCount` files in all, each sent on its own, in any order and
   * in parallel). The step commits when its last file is stored: that answer has status `committed` and
   * the step's checkpoint; earlier ones `staged`. Retried as `uploadCheckpoint` is.
   */
  async uploadShard(
    run: string,
    step: number,
    file: string,
    shardCount: number,
    source: CheckpointSource,
    options: Omit<UploadOptions, 'pin'> = {},
  ): Promise<ShardUploadResult> {
    const path = `/v1/runs/${enc(run)}/checkpoints/${step}/shards/${enc(file)}`;
    const headers = { [SHARD_COUNT_HEADER]: String(shardCount) };
    const prepared = await prepareSource(source, options.hashFirstBytes ?? DEFAULT_HASH_FIRST_BYTES);
    return this.sendCheckpoint<ShardUploadResult>(path, prepared, options, headers, { run, step, file });
  }

  /**
   * Uploads a directory of shards as one step: the files its `model.safetensors.index.json` names, or
   * else every `*.safetensors` file in it, at most `concurrency` (default 4) at once. Returns the step's
   * checkpoint once committed (also when every file had been stored before). `onProgress` gets the bytes
   * sent across all files and their total.
   */
  async uploadCheckpointDir(
    run: string,
    step: number,
    dir: string,
    options: Omit<UploadOptions, 'pin' | 'onProgress'> & { concurrency?: number; onProgress?: Progress } = {},
  ): Promise<UploadResult> {
    const files = await shardFilesOf(dir);
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(dir, f))).size));
    const total = sizes.reduce((a, b) => a + b, 0);
    const sent = new Map<string, number>();
    const report = (file: string, bytes: number) => {
      sent.set(file, bytes);
      let sum = 0;
      for (const n of sent.values()) sum += n;
      options.onProgress?.(sum, total);
    };
    let committed: UploadResult | null = null;
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const file = files[next++];
        const answer = await this.uploadShard(
          run,
          step,
          file,
          files.length,
          { file: join(dir, file) },
          {
            hashFirstBytes: options.hashFirstBytes,
            onProgress: (bytes) => report(file, bytes),
          },
        );
        if (answer.checkpoint) committed = answer.checkpoint;
      }
    };
    const concurrency = Math.max(1, Math.min(options.concurrency ?? 4, files.length));
    await Promise.all(Array.from({ length: concurrency }, worker));
    if (committed) return committed;
    throw new TrajgateError(0, 'internal', `every file of ${dir} was stored but step ${step} did not commit`, {
      run,
      step,
      files,
    });
  }

  private async sendCheckpoint<T extends { sha256: string }>(
    path: string,
    prepared: PreparedSource,
    options: Omit<UploadOptions, 'pin'>,
    extraHeaders: Record<string, string>,
    context: Record<string, unknown>,
  ): Promise<T> {
    const headers: Record<string, string> = { 'content-type': prepared.contentType, ...extraHeaders };
    if (prepared.sha256) headers[SHA256_HEADER] = prepared.sha256;
    if (prepared.size !== null) headers['content-length'] = String(prepared.size);
    const attempts: Tap[] = [];
    const result = await this.transport.json<T>('PUT', path, {
      headers,
      body: () => {
        const tap = hashing(prepared.open(), prepared.size, options.onProgress);
        attempts.push(tap);
        return tap.stream;
      },
      timed: false,
      retry: prepared.replayable ? isRetryable : false,
    });
    const last = attempts.at(-1);
    if (!prepared.sha256 && last?.complete && last.digest() !== result.sha256) {
      throw new TrajgateError(
        0,
        'checksum_mismatch',
        `the server stored bytes hashing to ${result.sha256}; the SDK sent ${last.digest()}`,
        context,
      );
    }
    return result;
  }

  /**
   * Every checkpoint of the run by step, with indicators, retention classes and reasons, following the
   * server's pages; tensor tables only with `{ tensors: true }`. A status alone (`listCheckpoints(run,
   * 'kept')`) filters by it. For a large run, `checkpoints()` reads one page at a time instead.
   */
  listCheckpoints(run: string, options: CheckpointListOptions & { tensors: true }): Promise<Checkpoint[]>;
  listCheckpoints(run: string, options?: CheckpointListOptions | CheckpointStatus): Promise<CheckpointListItem[]>;
  async listCheckpoints(
    run: string,
    options: CheckpointListOptions | CheckpointStatus = {},
  ): Promise<CheckpointListItem[]> {
    const items: CheckpointListItem[] = [];
    for await (const checkpoint of this.checkpoints(run, typeof options === 'string' ? { status: options } : options)) {
      items.push(checkpoint);
    }
    return items;
  }

  /**
   * The run's checkpoints by step, one at a time, fetching a page when the previous one is used up (so a run
   * of any size is read in bounded memory). Options as for `listCheckpoints`.
   */
  checkpoints(run: string, options: CheckpointListOptions & { tensors: true }): AsyncGenerator<Checkpoint>;
  checkpoints(run: string, options?: CheckpointListOptions): AsyncGenerator<CheckpointListItem>;
  async *checkpoints(run: string, options: CheckpointListOptions = {}): AsyncGenerator<CheckpointListItem> {
    const limit = options.pageSize ?? (options.tensors ? 100 : 1000);
    let after = options.after;
    for (;;) {
      const page = await this.getCheckpointPage(run, {
        status: options.status,
        tensors: options.tensors,
        after,
        limit,
      });
      yield* page.items;
      if (page.next === null) return;
      after = page.next;
    }
  }

  /** One page of the run's checkpoints; pass its `next` as `after` for the next one (null on the last). */
  getCheckpointPage(run: string, q: CheckpointPageQuery = {}): Promise<CheckpointPage> {
    const params = { status: q.status, after: q.after, limit: q.limit, include: q.tensors ? 'tensors' : undefined };
    return this.transport.json('GET', `/v1/runs/${enc(run)}/checkpoints${query(params)}`);
  }

  getCheckpoint(run: string, step: number): Promise<Checkpoint> {
    return this.transport.json('GET', `/v1/runs/${enc(run)}/checkpoints/${step}`);
  }

  /**
   * Downloads a checkpoint's bytes, verified against its SHA-256, and returns its record.
   *
   * To a file path: by way of `path + '.partial'`, resuming whatever an earlier attempt left there with a
   * Range request (guarded by If-Range, so changed bytes restart from zero), renamed into place once
   * verified. To a writable stream: a cut connection resumes from the bytes already written; the stream
   * is ended at the end, or destroyed if the bytes do not verify. A discarded checkpoint fails with
   * `checkpoint_discarded` (410).
   */
  async downloadCheckpoint(
    run: string,
    step: number,
    target: string | Writable,
    options: { onProgress?: Progress } = {},
  ): Promise<Checkpoint> {
    const record = await this.getCheckpoint(run, step);
    if (record.shards) {
      if (typeof target !== 'string') {
        throw new TypeError(`step ${step} of run '${run}' is sharded: download it to a directory path, not a stream`);
      }
      await this.downloadShards(run, step, record.shards, target, options.onProgress);
      return record;
    }
    const ref = {
      path: `/v1/runs/${enc(run)}/checkpoints/${step}/content`,
      bytes: record.bytes,
      sha256: record.sha256,
    };
    if (typeof target === 'string') await downloadToFile(this.transport, ref, target, options.onProgress);
    else await downloadToStream(this.transport, ref, target, options.onProgress);
    return record;
  }

  /**
   * A sharded step into directory `dir` (created if needed): each file, resumed and verified as a single
   * checkpoint is, then the step's `model.safetensors.index.json`.
   */
  private async downloadShards(
    run: string,
    step: number,
    shards: readonly ShardInfo[],
    dir: string,
    onProgress?: Progress,
  ): Promise<void> {
    await mkdir(dir, { recursive: true });
    const total = shards.reduce((n, s) => n + s.bytes, 0);
    let done = 0;
    for (const shard of shards) {
      const ref = {
        path: `/v1/runs/${enc(run)}/checkpoints/${step}/shards/${enc(shard.file)}`,
        bytes: shard.bytes,
        sha256: shard.sha256,
      };
      const before = done;
      await downloadToFile(
        this.transport,
        ref,
        join(dir, shard.file),
        onProgress && ((n) => onProgress(before + n, total)),
      );
      done += shard.bytes;
    }
    const index = await this.transport.json<unknown>(
      'GET',
      `/v1/runs/${enc(run)}/checkpoints/${step}/shards/${SHARD_INDEX_FILE}`,
    );
    await writeFile(join(dir, SHARD_INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`);
  }

  /** Pins a checkpoint (no retention class evicts it); returns it after the new decision. */
  pin(run: string, step: number): Promise<Checkpoint> {
    return this.transport.json('POST', `/v1/runs/${enc(run)}/checkpoints/${step}/pin`);
  }

  unpin(run: string, step: number): Promise<Checkpoint> {
    return this.transport.json('POST', `/v1/runs/${enc(run)}/checkpoints/${step}/unpin`);
  }

  /** Brings back a discarded checkpoint within its grace period (it comes back pinned). */
  restore(run: string, step: number): Promise<Checkpoint> {
    return this.transport.json('POST', `/v1/runs/${enc(run)}/checkpoints/${step}/restore`);
  }

  /**
   * Appends metric points (msgpack by default, or JSON), in requests of at most 100,000 points; returns
   * how many the server accepted. Most training code uses `run(id).log(point)` instead, which batches in
   * the background. A retried batch whose first answer was lost may be stored twice.
   */
  async logMetrics(
    run: string,
    points: readonly MetricPoint[],
    options: { format?: 'msgpack' | 'json' } = {},
  ): Promise<number> {
    let accepted = 0;
    for (let i = 0; i < points.length; i += MAX_POINTS_PER_REQUEST) {
      accepted += (
        await this.postMetrics(run, points.slice(i, i + MAX_POINTS_PER_REQUEST), options.format ?? 'msgpack')
      ).accepted;
    }
    return accepted;
  }

  /**
   * The first `limit` points of the run's metric series (default 10,000), ordered by step then arrival: one
   * request. `listMetrics` reads the whole series.
   */
  async getMetrics(run: string, q: MetricsQuery = {}): Promise<MetricPoint[]> {
    return (await this.getMetricPage(run, q)).items;
  }

  /** One page of the metric series; pass its `next` as `after` for the next one (null on the last). */
  getMetricPage(run: string, q: MetricPageQuery = {}): Promise<MetricPointPage> {
    return this.transport.json('GET', `/v1/runs/${enc(run)}/metrics${query({ ...q })}`);
  }

  /** The run's whole metric series (or the steps asked for), ordered by step then arrival, following pages. */
  async listMetrics(run: string, options: MetricListOptions = {}): Promise<MetricPoint[]> {
    const points: MetricPoint[] = [];
    for await (const point of this.metrics(run, options)) points.push(point);
    return points;
  }

  /** The metric series one point at a time, fetching a page when the previous one is used up. */
  async *metrics(run: string, options: MetricListOptions = {}): AsyncGenerator<MetricPoint> {
    const { pageSize, ...range } = options;
    let after = options.after;
    for (;;) {
      const page = await this.getMetricPage(run, { ...range, after, limit: pageSize ?? 10_000 });
      yield* page.items;
      if (page.next === null) return;
      after = page.next;
    }
  }

  /** Per-checkpoint indicators, phases and change scores. */
  getTrajectory(
    run: string,
    q: { phases?: number; by?: 'auto' | 'fraction' | 'dynamics'; window?: number } = {},
  ): Promise<Trajectory> {
    return this.transport.json('GET', `/v1/runs/${enc(run)}/trajectory${query({ ...q })}`);
  }

  /** Retention policies, the built-in `default` first. */
  async listPolicies(): Promise<PolicyRecord[]> {
    return (await this.transport.json<{ items: PolicyRecord[] }>('GET', '/v1/policies')).items;
  }

  getPolicy(name: string): Promise<PolicyRecord> {
    return this.transport.json('GET', `/v1/policies/${enc(name)}`);
  }

  /** Creates or replaces a named policy; runs using it get it on their next decision. */
  putPolicy(name: string, policy: Policy): Promise<PolicyRecord> {
    return this.transport.json('PUT', `/v1/policies/${enc(name)}`, { json: policy });
  }

  /** Attaches a policy to a run, by name or inline, and applies it now. */
  setRunPolicy(run: string, ref: PolicyRef): Promise<{ run: Run; decision: RetentionDecision }> {
    return this.transport.json('PUT', `/v1/runs/${enc(run)}/policy`, { json: ref });
  }

  /** What a policy (by default the run's own) would keep for this run now, without touching storage. */
  simulateRetention(run: string, ref?: PolicyRef): Promise<RetentionDecision> {
    return this.transport.json('POST', `/v1/runs/${enc(run)}/retention/simulate`, { json: ref ?? {} });
  }

  /** The generalization estimate; `calibrateUntilStep` calibrates on evaluation points up to that step. */
  getEstimate(run: string, q: { calibrateUntilStep?: number } = {}): Promise<Estimate> {
    return this.transport.json('GET', `/v1/runs/${enc(run)}/estimate${query({ ...q })}`);
  }

  /** The estimate over steps, as it stood at each, for plots. */
  async getEstimateHistory(run: string): Promise<EstimateHistoryEntry[]> {
    return (
      await this.transport.json<{ items: EstimateHistoryEntry[] }>('GET', `/v1/runs/${enc(run)}/estimate/history`)
    ).items;
  }

  /** Creates an access token (admin only). The answer's `token` is the secret, shown this once. */
  createToken(input: TokenInput): Promise<CreatedToken> {
    return this.transport.json('POST', '/v1/tokens', { json: input });
  }

  /** Every access token, revoked and expired ones included, never their secrets (admin only). */
  async listTokens(): Promise<Token[]> {
    return (await this.transport.json<{ items: Token[] }>('GET', '/v1/tokens')).items;
  }

  /** Revokes a token (admin only): its next request fails with `unauthenticated`. Returns it as revoked. */
  revokeToken(id: string): Promise<Token> {
    return this.transport.json('DELETE', `/v1/tokens/${enc(id)}`);
  }

  /**
   * One page of the audit trail, oldest first: admins read every entry, operators those about runs in their
   * scope. `since`: ISO-8601; `after`: continue after this entry id (the previous page's `next`); `limit`:
   * 1–1000, default 100. `next` is null on the last page.
   */
  listAudit(q: AuditQuery = {}): Promise<{ items: AuditEntry[]; next: number | null }> {
    return this.transport.json('GET', `/v1/audit${query({ ...q })}`);
  }

  private async postMetrics(
    run: string,
    points: readonly MetricPoint[],
    format: 'msgpack' | 'json',
  ): Promise<{ accepted: number }> {
    const path = `/v1/runs/${enc(run)}/metrics`;
    // One key per batch, the same on every retry: a batch whose answer was lost is stored once.
    const idempotency = { 'idempotency-key': randomUUID() };
    if (format === 'json') return this.transport.json('POST', path, { json: { points }, headers: idempotency });
    const bytes = pack({ points });
    return this.transport.json('POST', path, {
      headers: { 'content-type': MSGPACK, ...idempotency },
      body: () => once(bytes),
    });
  }
}

const enc = encodeURIComponent;

/**
 * The token to send, or null. Checked here because fetch rejects a header value with control characters
 * with an error that quotes the value, which would put the secret in a message.
 */
function bearerToken(token: string | null | undefined): string | null {
  const t = token?.trim();
  if (!t) return null;
  if (!/^[\x21-\x7e]+$/.test(t)) {
    throw new TypeError('the trajgate token (option `token` or $TRAJGATE_TOKEN) has spaces or non-ASCII characters');
  }
  return t;
}

function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) search.set(k, String(v));
  const s = search.toString();
  return s ? `?${s}` : '';
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/**
 * The files of a shard directory: those its index names (each must be there), else every `*.safetensors`
 * file, by name.
 */
async function shardFilesOf(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  if (names.includes(SHARD_INDEX_FILE)) {
    const index = JSON.parse(await readFile(join(dir, SHARD_INDEX_FILE), 'utf8')) as {
      weight_map?: Record<string, string>;
    };
    const files = [...new Set(Object.values(index.weight_map ?? {}))].sort();
    const missing = files.filter((f) => !names.includes(f));
    if (files.length === 0 || missing.length > 0) {
      throw new TypeError(
        `${join(dir, SHARD_INDEX_FILE)} ${files.length === 0 ? 'names no files' : `names files that are not in ${dir}: ${missing.join(', ')}`}`,
      );
    }
    return files;
  }
  const files = names.filter((n) => n.endsWith('.safetensors')).sort();
  if (files.length === 0) throw new TypeError(`${dir} holds no .safetensors files`);
  return files;
}

/** Passes a body through, reporting progress and hashing what was handed to the connection. */
interface Tap {
  stream: ByteStream;
  /** Whether the source was read to its end. */
  readonly complete: boolean;
  digest(): string;
}

function hashing(source: ByteStream, total: number | null, report?: Progress): Tap {
  const hash = createHash('sha256');
  const state = { complete: false };
  async function* pass(): AsyncGenerator<Uint8Array> {
    let sent = 0;
    for await (const chunk of source) {
      hash.update(chunk);
      sent += chunk.byteLength;
      report?.(sent, total);
      yield chunk;
    }
    state.complete = true;
  }
  return {
    stream: pass(),
    get complete() {
      return state.complete;
    },
    digest: () => hash.copy().digest('hex'),
  };
}
