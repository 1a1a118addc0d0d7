import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/**
 * Process configuration, from the environment, parsed once in `main.ts`: every problem is reported
 * together, and the result is frozen. Nothing else reads `process.env`.
 */
const MiB = 1024 * 1024;

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(min).max(max));

const bool = z
  .enum(['true', 'false', '1', '0'], { message: "must be one of 'true', 'false', '1', '0'" })
  .transform((v) => v === 'true' || v === '1');

const EnvSchema = z.object({
  PORT: int(0, 65535).default(8080),
  /** Loopback by default: reaching the gateway from elsewhere is a decision (with access control on). */
  HOST: z.string().min(1).default('127.0.0.1'),
  /** `tokens`: bearer tokens required; `none`: open. Default: none on a loopback HOST, tokens elsewhere. */
  TRAJGATE_AUTH: z.enum(['tokens', 'none']).optional(),
  /** A bootstrap admin token (at least 32 characters), e.g. from a secret store. */
  TRAJGATE_ADMIN_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Most runs one token's scope may hold; creating another is refused. */
  TRAJGATE_MAX_RUNS_PER_SCOPE: int(1).default(100_000),
  TRAJGATE_DATA_DIR: z.string().min(1).default('./data'),
  /** `file:///abs/dir`, a plain path, or `s3://bucket/prefix`. Default: `<data dir>/blobs`. */
  TRAJGATE_BLOB_URL: z.string().min(1).optional(),
  /** `sqlite:///abs/file.db`, `sqlite::memory:`, or a plain path. Default: `<data dir>/catalog.db`. */
  TRAJGATE_CATALOG_URL: z.string().min(1).optional(),
  TRAJGATE_S3_ENDPOINT: z.url().optional(),
  TRAJGATE_S3_FORCE_PATH_STYLE: bool.optional(),
  TRAJGATE_S3_PART_SIZE_MB: int(5, 5120).default(8),
  /** Parts of one upload sent to S3 at once; each holds a part in memory. */
  TRAJGATE_S3_QUEUE_SIZE: int(1, 64).default(4),
  AWS_REGION: z.string().min(1).default('us-east-1'),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Largest checkpoint body accepted, in MiB. */
  TRAJGATE_MAX_CHECKPOINT_MB: int(1).default(64 * 1024),
  /** Largest safetensors JSON header / native header record, in KiB. */
  TRAJGATE_MAX_HEADER_KB: int(1, 1024 * 1024).default(16 * 1024),
  TRAJGATE_MAX_TENSORS: int(1).default(100_000),
  /** Largest JSON or msgpack request body other than checkpoints (metric batches), in MiB. */
  TRAJGATE_MAX_JSON_MB: int(1, 1024).default(16),
  /** Requests per second one caller (its token, else its address) may make; 0: no limit. */
  TRAJGATE_RATE_LIMIT_RPS: int(0).default(200),
  /** Requests a caller may make beyond that rate per 10-second window (short bursts); 0: none. */
  TRAJGATE_RATE_LIMIT_BURST: int(0).default(400),
  /** Most tags a run may have. */
  TRAJGATE_MAX_TAGS: int(0).default(256),
  /** Most `extra` keys in one metric point. */
  TRAJGATE_MAX_EXTRA_KEYS: int(0, 100_000).default(64),
  /** Most points in one metric batch. */
  TRAJGATE_MAX_POINTS_PER_BATCH: int(1).default(100_000),
  /** Most metric points one run may take per minute; 0: no limit. */
  TRAJGATE_MAX_POINTS_PER_MINUTE: int(0).default(1_000_000),
  /** How often discarded checkpoints past their grace period are deleted from the blob store, in seconds. */
  TRAJGATE_COLLECT_INTERVAL_S: int(1, 86_400).default(60),
  /** An upload whose client sends nothing for this long is abandoned (408), in seconds; 0: never. */
  TRAJGATE_UPLOAD_IDLE_S: int(0, 86_400).default(60),
  /** On SIGTERM/SIGINT, how long in-flight requests may finish before they are cut, in seconds. */
  TRAJGATE_SHUTDOWN_GRACE_S: int(0, 3600).default(30),
  /** Worker threads analysing large uploads beside the request thread; 0: every upload on the request thread. */
  TRAJGATE_ANALYSIS_THREADS: int(0, 64).optional(),
  TRAJGATE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  blobUrl: string;
  catalogUrl: string;
  s3: {
    endpoint?: string;
    forcePathStyle?: boolean;
    region: string;
    accessKeyId?: string;
    secretAccessKey?: string;
    partSizeBytes: number;
    /** Parts of one upload in flight at once (lib-storage `queueSize`). */
    queueSize: number;
  };
  limits: {
    maxCheckpointBytes: number;
    maxHeaderBytes: number;
    maxTensors: number;
    maxJsonBytes: number;
    uploadIdleMs: number;
    rateLimitRps: number;
    rateLimitBurst: number;
    maxTags: number;
    maxExtraKeys: number;
    maxPointsPerBatch: number;
    maxPointsPerMinute: number;
  };
  auth: { mode: 'tokens' | 'none'; adminToken?: string; maxRunsPerScope: number };
  /** Worker threads for the analysis of large uploads (see ingest-pipeline.ts). */
  analysisThreads: number;
  collectIntervalMs: number;
  shutdownGraceMs: number;
  logLevel: z.infer<typeof EnvSchema>['TRAJGATE_LOG_LEVEL'];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses `env` (empty strings count as unset). Throws ConfigError listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  const loopback = isLoopback(e.HOST);
  const authMode = e.TRAJGATE_AUTH ?? (loopback ? 'none' : 'tokens');
  if (authMode === 'none' && !loopback && e.TRAJGATE_AUTH !== 'none') {
    throw new ConfigError([
      `HOST ${e.HOST} is not a loopback address: set TRAJGATE_AUTH=tokens, or TRAJGATE_AUTH=none to run open`,
    ]);
  }
  if (authMode === 'none' && e.TRAJGATE_ADMIN_TOKEN) {
    throw new ConfigError(['TRAJGATE_ADMIN_TOKEN is set but TRAJGATE_AUTH=none: tokens would not be checked']);
  }
  const dataDir = path.resolve(e.TRAJGATE_DATA_DIR);
  return deepFreeze({
    port: e.PORT,
    host: e.HOST,
    dataDir,
    blobUrl: e.TRAJGATE_BLOB_URL ?? path.join(dataDir, 'blobs'),
    catalogUrl: e.TRAJGATE_CATALOG_URL ?? `sqlite://${path.join(dataDir, 'catalog.db')}`,
    s3: {
      endpoint: e.TRAJGATE_S3_ENDPOINT,
      forcePathStyle: e.TRAJGATE_S3_FORCE_PATH_STYLE,
      region: e.AWS_REGION,
      accessKeyId: e.AWS_ACCESS_KEY_ID,
      secretAccessKey: e.AWS_SECRET_ACCESS_KEY,
      partSizeBytes: e.TRAJGATE_S3_PART_SIZE_MB * MiB,
      queueSize: e.TRAJGATE_S3_QUEUE_SIZE,
    },
    limits: {
      maxCheckpointBytes: e.TRAJGATE_MAX_CHECKPOINT_MB * MiB,
      maxHeaderBytes: e.TRAJGATE_MAX_HEADER_KB * 1024,
      maxTensors: e.TRAJGATE_MAX_TENSORS,
      maxJsonBytes: e.TRAJGATE_MAX_JSON_MB * MiB,
      uploadIdleMs: e.TRAJGATE_UPLOAD_IDLE_S * 1000,
      rateLimitRps: e.TRAJGATE_RATE_LIMIT_RPS,
      rateLimitBurst: e.TRAJGATE_RATE_LIMIT_BURST,
      maxTags: e.TRAJGATE_MAX_TAGS,
      maxExtraKeys: e.TRAJGATE_MAX_EXTRA_KEYS,
      maxPointsPerBatch: e.TRAJGATE_MAX_POINTS_PER_BATCH,
      maxPointsPerMinute: e.TRAJGATE_MAX_POINTS_PER_MINUTE,
    },
    auth: { mode: authMode, adminToken: e.TRAJGATE_ADMIN_TOKEN, maxRunsPerScope: e.TRAJGATE_MAX_RUNS_PER_SCOPE },
    analysisThreads: e.TRAJGATE_ANALYSIS_THREADS ?? defaultAnalysisThreads(),
    collectIntervalMs: e.TRAJGATE_COLLECT_INTERVAL_S * 1000,
    shutdownGraceMs: e.TRAJGATE_SHUTDOWN_GRACE_S * 1000,
    logLevel: e.TRAJGATE_LOG_LEVEL,
  });
}

/**
 * One per core beyond two: the request thread needs a core of its own and the kernel (socket, page cache) and
 * clients on the same machine another. On 2 cores a worker bought no measurable speed in bench-ingest and cost
 * ~55 MiB of resident memory with 4 uploads at once (docs/architecture.md §3).
 */
function defaultAnalysisThreads(): number {
  return Math.max(0, availableParallelism() - 2);
}

/** 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
