import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { MEDIA_TYPES, MSGPACK, OCTET_STREAM, SHA256_HEADER } from '../wire/formats.js';
import { encodeNativeStream } from '../wire/native-format.js';
import type { TensorData } from '../wire/safetensors.js';
import { TrajgateConnectionError, TrajgateError, errorFromResponse } from './errors.js';
import { withRetry, type RetryOptions } from './retry.js';
import { RunLogger, type RunLoggerOptions } from './run-logger.js';
import type {
  Checkpoint,
  Estimate,
  EstimateHistoryEntry,
  MetricPoint,
  PolicyRecord,
  Progress,
  RetentionDecision,
  Run,
  RunInput,
  RunSummary,
  Trajectory,
  UploadResult,
} from './types.js';

export interface ClientOptions {
  /** The gateway, e.g. `http://localhost:8080`. */
  url: string;
  retry?: RetryOptions;
  /** Per-request timeout for JSON calls, in ms (uploads and downloads are not timed). Default 30,000. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Where checkpoint bytes come from. Tensors are encoded to trajgate's native format as they stream;
 * a file or a stream factory is sent as is. Streams are given as factories so that a failed upload can
 * be retried from the start (the server treats the same bytes for the same step as the same upload).
 */
export type CheckpointSource =
  | { tensors: readonly TensorData[]; metadata?: Record<string, string> }
  | { file: string }
  | { stream: () => AsyncIterable<Uint8Array>; contentType?: string; sha256?: string };

export interface UploadOptions {
  pin?: boolean;
  onProgress?: Progress;
}

interface RequestSpec {
  json?: unknown;
  body?: () => AsyncIterable<Uint8Array>;
  headers?: Record<string, string>;
  retry?: boolean;
  timed?: boolean;
}

/** A typed client for trajgate's REST API. Safe to share; every call is independent. */
export class TrajgateClient {
  readonly url: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** A run handle for training loops: metrics and uploads go through a bounded background queue. */
  run(id: string, options: RunLoggerOptions = {}): RunLogger {
    return new RunLogger(this, id, options);
  }

  putRun(id: string, input: RunInput = {}): Promise<Run> {
    return this.json('PUT', `/v1/runs/${enc(id)}`, { json: input });
  }

  getRun(id: string): Promise<RunSummary> {
    return this.json('GET', `/v1/runs/${enc(id)}`);
  }

  async listRuns(): Promise<Run[]> {
    const items: Run[] = [];
    for (let after: string | null = ''; after !== null; ) {
      const page: { items: Run[]; next: string | null } = await this.json('GET', `/v1/runs?limit=1000${after ? `&after=${enc(after)}` : ''}`);
      items.push(...page.items);
      after = page.next;
    }
    return items;
  }

  async uploadCheckpoint(run: string, step: number, source: CheckpointSource, options: UploadOptions = {}): Promise<UploadResult> {
    const { body, contentType, sha256, size } = await describeSource(source);
    const headers: Record<string, string> = { 'content-type': contentType };
    if (sha256) headers[SHA256_HEADER] = sha256;
    if (size !== null) headers['content-length'] = String(size);
    const query = options.pin ? '?pin=true' : '';
    const progress = options.onProgress;
    return this.json('PUT', `/v1/runs/${enc(run)}/checkpoints/${step}${query}`, {
      headers,
      body: () => (progress ? counting(body(), size, progress) : body()),
      timed: false,
    });
  }

  async listCheckpoints(run: string, status?: 'kept' | 'discarded'): Promise<Checkpoint[]> {
    return (await this.json<{ items: Checkpoint[] }>('GET', `/v1/runs/${enc(run)}/checkpoints${status ? `?status=${status}` : ''}`)).items;
  }

  getCheckpoint(run: string, step: number): Promise<Checkpoint> {
    return this.json('GET', `/v1/runs/${enc(run)}/checkpoints/${step}`);
  }

  /**
   * Downloads a checkpoint to `path`, resuming from `path + '.partial'` if an earlier download was cut
   * short (a Range request guarded by If-Range, so changed bytes restart from zero), and verifies its
   * SHA-256 before moving it into place.
   */
  async downloadCheckpoint(run: string, step: number, path: string, options: { onProgress?: Progress } = {}): Promise<Checkpoint> {
    const record = await this.getCheckpoint(run, step);
    const partial = `${path}.partial`;
    await withRetry(async () => {
      const have = await stat(partial).then((s) => s.size, () => 0);
      if (have === record.bytes) return;
      const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-`, 'if-range': `"${record.sha256}"` } : {};
      const res = await this.send('GET', `/v1/runs/${enc(run)}/checkpoints/${step}/content`, { headers, timed: false });
      const resumed = res.status === 206;
      const offset = resumed ? have : 0;
      const body = res.body;
      if (!body) throw new TrajgateError(res.status, 'http_empty', 'the download had no body');
      let received = offset;
      const report = options.onProgress;
      await pipeline(
        body,
        async function* (source: AsyncIterable<Uint8Array>) {
          for await (const chunk of source) {
            received += chunk.byteLength;
            report?.(received, record.bytes);
            yield chunk;
          }
        },
        createWriteStream(partial, { flags: resumed ? 'a' : 'w' }),
      ).catch((err: unknown) => {
        throw err instanceof TrajgateError ? err : new TrajgateConnectionError(this.url, err);
      });
    }, this.options.retry);
    const digest = await sha256OfFile(partial);
    if (digest !== record.sha256) {
      await rm(partial, { force: true });
      throw new TrajgateError(0, 'checksum_mismatch', `downloaded bytes hash to ${digest}, the checkpoint's SHA-256 is ${record.sha256}`);
    }
    await rename(partial, path);
    return record;
  }

  pin(run: string, step: number): Promise<Checkpoint> {
    return this.json('POST', `/v1/runs/${enc(run)}/checkpoints/${step}/pin`);
  }

  unpin(run: string, step: number): Promise<Checkpoint> {
    return this.json('POST', `/v1/runs/${enc(run)}/checkpoints/${step}/unpin`);
  }

  restore(run: string, step: number): Promise<Checkpoint> {
    return this.json('POST', `/v1/runs/${enc(run)}/checkpoints/${step}/restore`);
  }

  /** Appends metric points, as msgpack. */
  async logMetrics(run: string, points: readonly MetricPoint[]): Promise<number> {
    const { pack } = await import('msgpackr');
    const bytes = pack({ points });
    const res = await this.json<{ accepted: number }>('POST', `/v1/runs/${enc(run)}/metrics`, {
      headers: { 'content-type': MSGPACK },
      body: () => single(bytes),
    });
    return res.accepted;
  }

  async getMetrics(run: string, query: { fromStep?: number; toStep?: number; limit?: number } = {}): Promise<MetricPoint[]> {
    const params = queryString(query);
    return (await this.json<{ items: MetricPoint[] }>('GET', `/v1/runs/${enc(run)}/metrics${params.size ? `?${params}` : ''}`)).items;
  }

  getTrajectory(run: string, query: { phases?: number; by?: 'auto' | 'fraction' | 'dynamics' } = {}): Promise<Trajectory> {
    const params = queryString(query);
    return this.json('GET', `/v1/runs/${enc(run)}/trajectory${params.size ? `?${params}` : ''}`);
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    return (await this.json<{ items: PolicyRecord[] }>('GET', '/v1/policies')).items;
  }

  getPolicy(name: string): Promise<PolicyRecord> {
    return this.json('GET', `/v1/policies/${enc(name)}`);
  }

  putPolicy(name: string, policy: Record<string, unknown>): Promise<PolicyRecord> {
    return this.json('PUT', `/v1/policies/${enc(name)}`, { json: policy });
  }

  setRunPolicy(run: string, ref: { name: string } | { policy: Record<string, unknown> }): Promise<{ run: Run; decision: RetentionDecision }> {
    return this.json('PUT', `/v1/runs/${enc(run)}/policy`, { json: ref });
  }

  simulateRetention(run: string, ref?: { name: string } | { policy: Record<string, unknown> }): Promise<RetentionDecision> {
    return this.json('POST', `/v1/runs/${enc(run)}/retention/simulate`, { json: ref ?? {} });
  }

  /** `calibrateUntilStep`: calibrate on evaluation points up to that step only (a forecast from the past). */
  getEstimate(run: string, query: { calibrateUntilStep?: number } = {}): Promise<Estimate> {
    const params = queryString(query);
    return this.json('GET', `/v1/runs/${enc(run)}/estimate${params.size ? `?${params}` : ''}`);
  }

  async getEstimateHistory(run: string): Promise<EstimateHistoryEntry[]> {
    return (await this.json<{ items: EstimateHistoryEntry[] }>('GET', `/v1/runs/${enc(run)}/estimate/history`)).items;
  }

  private async json<T>(method: string, path: string, spec: RequestSpec = {}): Promise<T> {
    const attempt = async () => (await this.send(method, path, spec)).json() as Promise<T>;
    return spec.retry === false ? attempt() : withRetry(attempt, this.options.retry);
  }

  /** One HTTP exchange; non-2xx answers become TrajgateError, failures to connect TrajgateConnectionError. */
  private async send(method: string, path: string, spec: RequestSpec): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...spec.headers };
    let body: ReadableStream<Uint8Array> | string | undefined;
    if (spec.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(spec.json);
    } else if (spec.body) {
      body = ReadableStream.from(spec.body());
    }
    const timeout = spec.timed === false ? undefined : AbortSignal.timeout(this.options.timeoutMs ?? 30_000);
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.url}${path}`, { method, headers, body, signal: timeout, duplex: 'half' } as RequestInit);
    } catch (err) {
      throw new TrajgateConnectionError(this.url, err);
    }
    if (!res.ok) throw await errorFromResponse(res);
    return res;
  }
}

const enc = encodeURIComponent;

function queryString(query: Record<string, string | number | undefined>): URLSearchParams {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  return params;
}

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function* counting(source: AsyncIterable<Uint8Array>, total: number | null, report: Progress): AsyncGenerator<Uint8Array> {
  let sent = 0;
  for await (const chunk of source) {
    sent += chunk.byteLength;
    report(sent, total);
    yield chunk;
  }
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * How to send a source: a body factory, its media type, and (for tensors and files) its SHA-256 and size,
 * computed in a first streaming pass so the gateway can verify the upload end to end.
 */
async function describeSource(
  source: CheckpointSource,
): Promise<{ body: () => AsyncIterable<Uint8Array>; contentType: string; sha256?: string; size: number | null }> {
  if ('tensors' in source) {
    const encode = () => encodeNativeStream(source.tensors, { metadata: source.metadata });
    const hash = createHash('sha256');
    let size = 0;
    for (const piece of encode()) {
      hash.update(piece);
      size += piece.byteLength;
    }
    return { body: () => toAsync(encode()), contentType: MEDIA_TYPES.native, sha256: hash.digest('hex'), size };
  }
  if ('file' in source) {
    const { size } = await stat(source.file);
    const contentType = extname(source.file) === '.safetensors' ? MEDIA_TYPES.safetensors : OCTET_STREAM;
    return {
      body: () => createReadStream(source.file, { highWaterMark: 1 << 20 }),
      contentType,
      sha256: await sha256OfFile(source.file),
      size,
    };
  }
  return { body: source.stream, contentType: source.contentType ?? OCTET_STREAM, sha256: source.sha256, size: null };
}

async function* toAsync(pieces: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* pieces;
}
