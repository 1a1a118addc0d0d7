import type { AuditRecord, NewAuditEntry, Role, TokenRecord } from '../model/access.js';
import type { CheckpointSummary } from '../model/summary.js';
import type { CheckpointFormat } from '@trajgate/sdk/wire/formats';
import type {
  CheckpointIndicators,
  CheckpointListItem,
  CheckpointRecord,
  CheckpointStatus,
  MetricField,
  MetricPoint,
  RunInput,
  RunPolicyRef,
  RunRecord,
  TensorEntry,
} from '../model/records.js';

/**
 * The metadata contract (runs, checkpoints, metric points). Implemented once on Kysely
 * (`kysely-catalog.ts`) for every SQL dialect; the dialect is picked from the catalog URL by
 * `catalog/factory.ts`. Backend failures surface as `AppError('catalog_unavailable')`.
 */
export interface Catalog {
  /** Creates the run or updates the fields given; absent fields keep their stored values. */
  putRun(id: string, input: RunInput): Promise<{ run: RunRecord; created: boolean }>;
  /** Returns the run, creating it with defaults if it does not exist (implicit creation on upload). */
  ensureRun(id: string): Promise<RunRecord>;
  getRun(id: string): Promise<RunRecord | null>;
  /** Runs ordered by id, at most `limit`, starting after the id `after`, within `scope` when given. */
  listRuns(page: { limit: number; after?: string; scope?: readonly string[] }): Promise<RunRecord[]>;
  /** How many runs a scope covers. */
  countRuns(scope: readonly string[]): Promise<number>;

  /**
   * Inserts a committed checkpoint and its trajectory summary, atomically. (run, step) is unique: when a
   * row exists already, nothing is written and the existing record comes back, so concurrent uploads of
   * one step resolve to one winner.
   */
  insertCheckpoint(row: NewCheckpoint): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }>;
  getCheckpoint(run: string, step: number): Promise<CheckpointRecord | null>;
  /** The run's checkpoint with the lowest step, or null. */
  firstCheckpoint(run: string): Promise<CheckpointRecord | null>;
  /** The upload id of each committed checkpoint of the run whose bytes are not deleted, by step (what reconciliation keeps). */
  uploadIds(run: string): Promise<Map<number, string>>;
  /**
   * The run's checkpoints ordered by step: those after `afterStep`, at most `limit`. Tensor tables (one
   * entry per tensor: the bulk of a record) only with `tensors: true`.
   */
  listCheckpoints(run: string, query: CheckpointListQuery & { tensors: true }): Promise<CheckpointRecord[]>;
  listCheckpoints(run: string, query?: CheckpointListQuery): Promise<CheckpointListItem[]>;

  /** Trajectory summaries of the run's checkpoints (all, or those at `steps`), ordered by step. */
  getSummaries(run: string, steps?: readonly number[]): Promise<CheckpointSummary[]>;
  /** Stores computed indicators of checkpoints of the run, in one transaction. */
  setIndicators(run: string, entries: readonly { step: number; indicators: CheckpointIndicators }[]): Promise<void>;

  /**
   * Appends points in the given order (tagged with the batch's Idempotency-Key when given); returns how many
   * were stored. Large batches commit in chunks, so a failure part-way leaves the earlier chunks.
   */
  appendMetrics(run: string, points: readonly MetricPoint[], batchKey?: string | null): Promise<number>;
  /** Points stored under an idempotent batch's key, and whether the batch was recorded as folded. */
  batchProgress(run: string, key: string): Promise<{ stored: number; folded: boolean }>;
  deleteBatchPoints(run: string, key: string): Promise<void>;
  /**
   * Points ordered by (step, arrival), with step in [fromStep, toStep], after the cursor `after`, at most
   * `limit`; `next` is the cursor after the last point when the page is full, else null.
   */
  listMetrics(run: string, query: MetricQuery): Promise<MetricPage>;

  /** Creates or replaces a named policy (stored as given; validated by the caller). */
  putPolicy(name: string, policy: Record<string, unknown>): Promise<{ created: boolean; record: PolicyRecord }>;
  getPolicy(name: string): Promise<PolicyRecord | null>;
  listPolicies(): Promise<PolicyRecord[]>;
  setRunPolicy(run: string, ref: RunPolicyRef | null): Promise<void>;

  /** Writes a retention decision's per-checkpoint outcome and its audit entries, in one transaction. */
  applyRetention(run: string, outcomes: readonly RetentionOutcome[], audit?: readonly NewAuditEntry[]): Promise<void>;
  setPinned(run: string, step: number, pinned: boolean): Promise<void>;
  /** Discarded checkpoints whose grace period ended by `now` and whose bytes are still stored. */
  listDueDeletions(
    now: string,
    limit: number,
  ): Promise<{ run: string; step: number; blobKey: string; bytes: number }[]>;
  /**
   * Claims a discarded checkpoint's bytes for deletion, with its audit entries, in one transaction — before
   * the bytes are deleted. False (and nothing written) when the checkpoint is no longer discarded (a later
   * decision or a restore kept it) or was claimed already. A claimed checkpoint is unavailable: no decision
   * keeps it again, and reconciliation removes bytes a crash left behind.
   */
  markBlobDeleted(run: string, step: number, audit?: readonly NewAuditEntry[]): Promise<boolean>;
  /** Stores a new token (its secret only as a hash) and audits its creation, in one transaction. */
  insertToken(token: NewToken): Promise<TokenRecord>;
  tokenBySecretHash(hash: string): Promise<(TokenRecord & { secretHash: string }) | null>;
  /** Every token, oldest first (revoked and expired ones too). */
  listTokens(): Promise<TokenRecord[]>;
  /** Revokes a token and audits it; null when there is no such token. Revoking twice changes nothing. */
  revokeToken(id: string, actor: string): Promise<TokenRecord | null>;
  appendAudit(entries: readonly NewAuditEntry[]): Promise<void>;
  listAudit(query: AuditQuery): Promise<AuditRecord[]>;

  /**
   * The run's stored generalization-estimate state (opaque JSON) and its version, or null. The version
   * grows by one with every put, so a process holding a parsed copy can tell whether another wrote since.
   */
  getEstimateState(run: string): Promise<{ state: unknown; version: number } | null>;
  /** The stored state's version alone (cheap), or null when none is stored. */
  estimateStateVersion(run: string): Promise<number | null>;
  /**
   * Stores the state and returns its new version; with `folded`, also records that batch as folded, in one
   * transaction.
   */
  putEstimateState(run: string, state: unknown, folded?: { key: string; points: number }): Promise<number>;

  /** Records the run's own calibration scale (gap per unit of the served indicator) under its group. */
  putCalibrationScale(run: string, entry: { group: string; scale: number; points: number }): Promise<void>;
  /** Scales of the group's other runs, most recently updated first, at most `limit`. */
  siblingScales(group: string, except: string, limit: number): Promise<number[]>;

  /**
   * Runs `work` holding the lock named `key`: no other holder of that key, in this process or in any other
   * process sharing the catalog, runs meanwhile; callers queue in arrival order per process. SQLite serves
   * one process (an in-process queue); Postgres adds a session advisory lock, released when `work` ends or
   * when the holding process dies.
   */
  exclusive<T>(key: string, work: () => Promise<T>): Promise<T>;
  /**
   * Runs `work` only if the lock named `key` is free right now (a lease for duties one replica at a time
   * does, such as the collector); `ran: false` without waiting otherwise.
   */
  tryExclusive<T>(key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;

  /**
   * Per checkpoint of the run (ordered by step), the mean or the last value of `field` logged in
   * (previous checkpoint's step, this checkpoint's step]; null where nothing was logged. Aggregated by the
   * database, so runs with millions of points are not read into memory.
   */
  metricAtCheckpoints(
    run: string,
    field: MetricField,
    mode: 'mean' | 'last',
  ): Promise<{ step: number; value: number | null }[]>;

  /**
   * Stages one file of a sharded step. (run, step, file) is unique: when a row exists already nothing is
   * written and the existing row comes back.
   */
  stageShard(shard: NewShard): Promise<{ inserted: true } | { inserted: false; existing: ShardRecord }>;
  /** The step's shard rows, staged and committed, ordered by file; with their summaries when asked. */
  listShards(run: string, step: number, options?: { summaries?: boolean }): Promise<ShardRecord[]>;
  /**
   * Commits a sharded step: the checkpoint row (its blob key is the step's index), its summary and the
   * staged shards' link to it, in one transaction; like `insertCheckpoint` when the step exists already.
   */
  commitShards(row: NewCheckpoint): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }>;
  /** Deletes the step's staged (uncommitted) shard rows; returns the blob keys they held. */
  dropStagedShards(run: string, step: number): Promise<string[]>;
  /** Steps with staged shards whose latest shard arrived before `before` (ISO-8601), at most `limit`. */
  abandonedShardSteps(before: string, limit: number): Promise<{ run: string; step: number }[]>;
  /** `${step}/${uploadId}` of every shard upload of the run whose bytes must stay (what reconciliation keeps). */
  liveShardUploads(run: string): Promise<Set<string>>;

  /** Records a new resumable upload at offset 0. */
  createUploadSession(session: NewUploadSession): Promise<void>;
  getUploadSession(id: string): Promise<UploadSessionRecord | null>;
  /** Sets offset and expiry; with `expectOffset` only when the stored offset is that. True when it changed. */
  updateUploadSession(
    id: string,
    change: { offset: number; expiresAt: string; expectOffset?: number },
  ): Promise<boolean>;
  deleteUploadSession(id: string): Promise<boolean>;
  /** Deletes sessions that expired before `now` (ISO-8601), at most `limit`; returns their ids. */
  expireUploadSessions(now: string, limit: number): Promise<string[]>;

  /** Throws `catalog_unavailable` when the database cannot be reached. Used by /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface NewCheckpoint {
  run: string;
  step: number;
  uploadId: string;
  sha256: string;
  bytes: number;
  format: CheckpointFormat;
  blobKey: string;
  tensors: TensorEntry[];
  metadata: Record<string, string> | null;
  summary: CheckpointSummary;
}

/** A resumable upload as `createUploadSession` takes it. */
export interface NewUploadSession {
  id: string;
  run: string;
  step: number;
  /** Upload-Length: the whole body's bytes. */
  length: number;
  /** What the creation declared: content type, SHA-256, pin. */
  metadata: Record<string, string>;
  expiresAt: string;
  createdAt: string;
}

export interface UploadSessionRecord extends NewUploadSession {
  /** Bytes accepted as of the last PATCH that ended (the live process may know more). */
  offset: number;
}

/** One file of a sharded step, as `stageShard` takes it: a checkpoint's fields for that file alone. */
export interface NewShard extends NewCheckpoint {
  file: string;
  /** The number of files the step has, as this shard declared it. */
  shardCount: number;
}

export interface ShardRecord extends Omit<NewShard, 'summary'> {
  createdAt: string;
  /** Null while staged; the upload id of the step's checkpoint once committed. */
  checkpointUploadId: string | null;
  /** Only from `listShards(..., { summaries: true })`. */
  summary: CheckpointSummary | null;
}

export interface PolicyRecord {
  name: string;
  policy: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export interface RetentionOutcome {
  step: number;
  status: CheckpointStatus;
  classes: string[];
  reasons: string[];
  /** Set when the checkpoint becomes discarded; kept as it was when it stays discarded. */
  discardedAt: string | null;
  deleteAfter: string | null;
}

export interface CheckpointListQuery {
  status?: CheckpointStatus;
  /** Only checkpoints with a greater step. */
  afterStep?: number;
  /** At most this many; all when absent. */
  limit?: number;
  /** Include each checkpoint's tensor table. */
  tensors?: boolean;
}

/** Where a metric page ends: the last point's step and its arrival sequence number. */
export interface MetricCursor {
  step: number;
  seq: number;
}

export interface MetricQuery {
  fromStep?: number;
  toStep?: number;
  /** Only points after this one in (step, arrival) order. */
  after?: MetricCursor;
  limit: number;
}

export interface MetricPage {
  items: MetricPoint[];
  next: MetricCursor | null;
}

export interface NewToken {
  id: string;
  name: string;
  role: Role;
  runs: string[];
  secretHash: string;
  expiresAt: string | null;
  createdAt: string;
  createdBy: string;
}

export interface AuditQuery {
  limit: number;
  /** Entries after this id. */
  after?: number;
  /** ISO-8601: entries at or after this time. */
  since?: string;
  run?: string;
  /** Only entries about runs within this scope. */
  scope?: readonly string[];
}
