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
  HOST: z.string().min(1).default('0.0.0.0'),
  TRAJGATE_DATA_DIR: z.string().min(1).default('./data'),
  /** `file:///abs/dir`, a plain path, or `s3://bucket/prefix`. Default: `<data dir>/blobs`. */
  TRAJGATE_BLOB_URL: z.string().min(1).optional(),
  /** `sqlite:///abs/file.db`, `sqlite::memory:`, or a plain path. Default: `<data dir>/catalog.db`. */
  TRAJGATE_CATALOG_URL: z.string().min(1).optional(),
  TRAJGATE_S3_ENDPOINT: z.url().optional(),
  TRAJGATE_S3_FORCE_PATH_STYLE: bool.optional(),
  TRAJGATE_S3_PART_SIZE_MB: int(5, 5120).default(8),
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
  /** How often discarded checkpoints past their grace period are deleted from the blob store, in seconds. */
  TRAJGATE_COLLECT_INTERVAL_S: int(1, 86_400).default(60),
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
  };
  limits: {
    maxCheckpointBytes: number;
    maxHeaderBytes: number;
    maxTensors: number;
    maxJsonBytes: number;
  };
  collectIntervalMs: number;
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
    },
    limits: {
      maxCheckpointBytes: e.TRAJGATE_MAX_CHECKPOINT_MB * MiB,
      maxHeaderBytes: e.TRAJGATE_MAX_HEADER_KB * 1024,
      maxTensors: e.TRAJGATE_MAX_TENSORS,
      maxJsonBytes: e.TRAJGATE_MAX_JSON_MB * MiB,
    },
    collectIntervalMs: e.TRAJGATE_COLLECT_INTERVAL_S * 1000,
    logLevel: e.TRAJGATE_LOG_LEVEL,
  });
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
