import type { Readable } from 'node:stream';
import type { CheckpointListQuery, MetricPage, MetricQuery } from '../catalog/catalog.js';
import { AppError, errors } from '../errors.js';
import { calibrationGroupOf } from '../estimate/run-estimates.js';
import type { Estimate, HistoryEntry } from '../estimate/types.js';
import type {
  CheckpointListItem,
  CheckpointRecord,
  MetricPoint,
  RunInput,
  RunPolicyRef,
  RunRecord,
} from '../model/records.js';
import type { RetentionDecision } from '../retention/engine.js';
import type { Policy } from '../model/policy.js';
import type { ByteRange } from '../storage/blob-store.js';
import { analyseRun, type RunTrajectory } from '../trajectory/run-analysis.js';
import type { AuditAction } from '../model/access.js';
import { DEFAULT_POLICY_NAME } from './policy-book.js';
import { estimateSpans, loadRunSnapshot, type RunSnapshot } from './run-snapshot.js';
import { isShardIndexKey } from '../storage/shard-keys.js';
import { INDEX_FILE, withShards } from './shard-ingest.js';
import type {
  Caller,
  RunServiceDeps,
  RunSummary,
  ShardUploadOutcome,
  ShardUploadRequest,
  TrajectoryView,
  UploadOutcome,
  UploadRequest,
} from './types.js';

export type {
  Caller,
  RunServiceDeps,
  RunSummary,
  ShardUploadOutcome,
  ShardUploadRequest,
  TrajectoryView,
  UploadOutcome,
  UploadRequest,
} from './types.js';

/**
 * The one way the HTTP layer reaches run state (docs/architecture.md §2). Everything that changes a run's
 * derived state happens under the run's catalog-wide lock, one change at a time on every replica: a new
 * checkpoint's indicators, the estimate's state, pins, the run's policy and plannedSteps — each followed by
 * a fresh retention decision. Decisions are deterministic functions of the catalog, so replaying the same
 * uploads gives the same kept set. Reads load one RunSnapshot, so trajectory, retention and estimate agree
 * on the run's phases.
 */
export class RunService {
  /** Uploads in progress, so a shutdown can wait for their commit or clean abort. */
  private uploads = 0;
  private readonly idle = new Set<() => void>();

  constructor(private readonly deps: RunServiceDeps) {}

  // Runs

  async putRun(id: string, input: RunInput, caller: Caller): Promise<{ run: RunRecord; created: boolean }> {
    return this.exclusive(id, async () => {
      const before = await this.deps.catalog.getRun(id);
      if (!before) await this.admitNewRun(id, caller);
      const result = await this.deps.catalog.putRun(id, input);
      // plannedSteps places checkpoints in phases (by fraction): the kept set may change with it.
      if (before && before.plannedSteps !== result.run.plannedSteps) await this.decide(result.run, caller);
      return result;
    });
  }

  /** Runs by id, only those within `scope`. */
  listRuns(page: { limit: number; after?: string }, scope: readonly string[]): Promise<RunRecord[]> {
    return this.deps.catalog.listRuns({ ...page, scope });
  }

  async summary(id: string): Promise<RunSummary> {
    const run = await this.requireRun(id);
    const checkpoints = await this.deps.catalog.listCheckpoints(id);
    const kept = checkpoints.filter((c) => c.status === 'kept');
    return {
      ...run,
      checkpoints: {
        count: checkpoints.length,
        kept: kept.length,
        latestStep: checkpoints.length ? checkpoints[checkpoints.length - 1].step : null,
        bytesUploaded: checkpoints.reduce((sum, c) => sum + c.bytes, 0),
        bytesKept: kept.reduce((sum, c) => sum + c.bytes, 0),
      },
    };
  }

  // Checkpoints

  /**
   * Streams an upload into storage and the catalog (outside the lock: uploads of one run proceed in
   * parallel), then, under the lock, computes the new checkpoint's indicators, feeds the estimate, pins it
   * if asked, and decides retention.
   */
  async upload(req: UploadRequest): Promise<UploadOutcome> {
    this.uploads++;
    const ended = this.deps.telemetry.uploadStarted();
    const started = performance.now();
    try {
      const outcome = await this.receive(req);
      const { format, bytes } = outcome.checkpoint;
      this.deps.telemetry.uploadFinished(format, outcome.status, bytes, (performance.now() - started) / 1000);
      return outcome;
    } catch (err) {
      const code = err instanceof AppError ? err.code : 'internal';
      this.deps.telemetry.uploadFinished('unknown', code, 0, 0);
      throw err;
    } finally {
      ended();
      if (--this.uploads === 0) for (const resolve of this.idle) resolve();
    }
  }

  /**
   * One file of a sharded step (shard-ingest.ts): streamed and validated outside the lock, then staged
   * under it; the file that completes the step commits it and, still under the lock, its indicators,
   * estimate and retention decision follow exactly as after a single-file upload.
   */
  async uploadShard(req: ShardUploadRequest): Promise<ShardUploadOutcome> {
    this.uploads++;
    const ended = this.deps.telemetry.uploadStarted();
    const started = performance.now();
    try {
      const outcome = await this.receiveShard(req);
      const status = outcome.status === 'unchanged' ? 'unchanged' : 'created';
      this.deps.telemetry.uploadFinished(
        outcome.checkpoint?.format ?? 'safetensors',
        status,
        outcome.bytes,
        (performance.now() - started) / 1000,
      );
      return outcome;
    } catch (err) {
      const code = err instanceof AppError ? err.code : 'internal';
      this.deps.telemetry.uploadFinished('unknown', code, 0, 0);
      throw err;
    } finally {
      ended();
      if (--this.uploads === 0) for (const resolve of this.idle) resolve();
    }
  }

  private async receiveShard(req: ShardUploadRequest): Promise<ShardUploadOutcome> {
    if (!(await this.deps.catalog.getRun(req.run))) await this.admitNewRun(req.run, req.caller);
    const answer = (
      status: ShardUploadOutcome['status'],
      shard: { sha256: string; bytes: number; shardCount: number },
      received: number,
      checkpoint: CheckpointRecord | null,
      decision: RetentionDecision | null,
    ): ShardUploadOutcome => ({
      status,
      file: req.file,
      sha256: shard.sha256,
      bytes: shard.bytes,
      shardCount: shard.shardCount,
      shardsReceived: received,
      checkpoint,
      decision,
    });
    // After a crash or a failed commit, the same file again finishes what was cut: the step's commit (every
    // file staged, none committed it) or its locked work (committed, indicators not computed).
    const early = await this.deps.shards.precheck(req);
    if ('status' in early) {
      const cut = early.checkpoint ? early.checkpoint.indicators === null : early.received >= early.shard.shardCount;
      if (!cut) return answer('unchanged', early.shard, early.received, early.checkpoint, null);
      return this.exclusive(req.run, async () => {
        const committed = await this.deps.shards.completeIfReady(req.run, req.step);
        const checkpoint = await this.deps.catalog.getCheckpoint(req.run, req.step);
        if (!checkpoint) return answer('unchanged', early.shard, early.received, null, null);
        const decision = await this.afterShardCommit(checkpoint, req.caller);
        const status = committed ? 'committed' : 'unchanged';
        return answer(status, early.shard, early.received, await this.checkpoint(req.run, req.step), decision);
      });
    }
    // An uploaded model.safetensors.index.json declares the files; any other file is a shard.
    const { shardCount } = early;
    const stage =
      req.file === INDEX_FILE
        ? await this.deps.shards.readIndex(req).then((index) => () => this.deps.shards.stageIndex(index))
        : shardCount === undefined
          ? null
          : await this.deps.shards.stream({ ...req, shardCount }).then((file) => () => this.deps.shards.stage(file));
    if (!stage) throw new AppError('internal', `no shard count for file '${req.file}'`);
    return this.exclusive(req.run, async () => {
      const staged = await stage();
      if (staged.status !== 'committed') {
        const checkpoint = staged.status === 'unchanged' ? staged.checkpoint : null;
        return answer(staged.status, staged.shard, staged.received, checkpoint, null);
      }
      const decision = await this.afterShardCommit(staged.checkpoint, req.caller);
      const checkpoint = await this.checkpoint(req.run, req.step);
      return answer('committed', staged.shard, staged.received, checkpoint, decision);
    });
  }

  /** Under the run's lock, after a sharded step's commit: what a single-file upload's commit does next. */
  private async afterShardCommit(checkpoint: CheckpointRecord, caller: Caller): Promise<RetentionDecision | null> {
    if (checkpoint.indicators !== null) return null;
    await this.deps.trajectory.record(checkpoint.run, checkpoint.step);
    await this.deps.estimates.addCheckpoint(checkpoint.run, checkpoint.step);
    this.deps.telemetry.folded('checkpoints', 1);
    return this.decide(await this.requireRun(checkpoint.run), caller);
  }

  /** Resolves once no upload is in progress, or after `timeoutMs`. */
  drained(timeoutMs: number): Promise<void> {
    if (this.uploads === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idle.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.idle.add(done);
    });
  }

  private async receive(req: UploadRequest): Promise<UploadOutcome> {
    if (!(await this.deps.catalog.getRun(req.run))) await this.admitNewRun(req.run, req.caller);
    const received = await this.deps.ingest.ingest(req);
    const { run, step } = req;
    // The same bytes again (a retry) finish what a crash may have cut: the commit's locked work, the pin.
    const { indicators, pinned } = received.checkpoint;
    if (received.status === 'unchanged' && indicators !== null && (pinned || !req.pin)) {
      return { ...received, decision: null };
    }
    return this.exclusive(run, async () => {
      const current = await this.requireCheckpoint(run, step);
      if (current.indicators === null) {
        await this.deps.trajectory.record(run, step);
        await this.deps.estimates.addCheckpoint(run, step);
        this.deps.telemetry.folded('checkpoints', 1);
      }
      if (req.pin && !current.pinned) {
        await this.deps.catalog.setPinned(run, step, true);
        await this.audit(req.caller, 'checkpoint.pin', run, step);
      }
      const decision = await this.decide(await this.requireRun(run), req.caller);
      return { status: received.status, checkpoint: await this.requireCheckpoint(run, step), decision };
    });
  }

  /** A page of the run's checkpoints (see `Catalog.listCheckpoints`). */
  async listCheckpoints(run: string, query: CheckpointListQuery = {}): Promise<CheckpointListItem[]> {
    await this.requireRun(run);
    return this.deps.catalog.listCheckpoints(run, query);
  }

  /** The checkpoint's record; a sharded step's lists its files. */
  async checkpoint(run: string, step: number): Promise<CheckpointRecord> {
    const checkpoint = await this.requireCheckpoint(run, step);
    return withShards(checkpoint, await this.deps.shards.filesOf(checkpoint));
  }

  /**
   * What `GET …/checkpoints/{step}/shards/{file}` serves of a downloadable sharded step: one of its files,
   * or its index (`model.safetensors.index.json`, generated at commit).
   */
  async downloadableShard(
    run: string,
    step: number,
    file: string,
  ): Promise<{ blobKey: string; bytes: number; sha256: string; index: boolean; format: CheckpointRecord['format'] }> {
    const checkpoint = await this.requireKept(run, step);
    const files = await this.deps.shards.filesOf(checkpoint);
    if (files.length === 0) {
      throw new AppError('not_found', `step ${step} of run '${run}' is a single file; it has no shards`, { run, step });
    }
    if (file === INDEX_FILE) {
      const head = await this.deps.blobs.head(checkpoint.blobKey);
      if (!head) throw errors.storageUnavailable(`the index of step ${step} of run '${run}' is missing from storage`);
      return { blobKey: checkpoint.blobKey, bytes: head.size, sha256: '', index: true, format: checkpoint.format };
    }
    const shard = files.find((s) => s.file === file);
    if (!shard) {
      throw new AppError('not_found', `step ${step} of run '${run}' has no file '${file}'`, {
        run,
        step,
        file,
        files: files.map((s) => s.file),
      });
    }
    return { blobKey: shard.blobKey, bytes: shard.bytes, sha256: shard.sha256, index: false, format: shard.format };
  }

  /** The bytes of a blob from `downloadableShard`, whole or a range. */
  async openShard(blobKey: string, size: number, range?: ByteRange): Promise<Readable> {
    const blob = await this.deps.blobs.get(blobKey, range);
    if (!blob) throw errors.storageUnavailable('a file of a sharded step is missing from storage');
    this.deps.telemetry.download(range !== undefined, range ? range.end - range.start + 1 : size);
    return blob.body;
  }

  /**
   * A kept single-file checkpoint whose bytes can be served; a discarded one is 410 with its reasons, a
   * sharded one 404 (its files are served one by one: `downloadableShard`).
   */
  async downloadable(run: string, step: number): Promise<CheckpointRecord> {
    const checkpoint = await this.requireKept(run, step);
    if (isShardIndexKey(checkpoint.blobKey)) {
      throw new AppError(
        'not_found',
        `step ${step} of run '${run}' is sharded: download its files from /v1/runs/${run}/checkpoints/${step}/shards/{file} (GET /v1/runs/${run}/checkpoints/${step} lists them; the index is ${INDEX_FILE})`,
        { run, step },
      );
    }
    return checkpoint;
  }

  private async requireKept(run: string, step: number): Promise<CheckpointRecord> {
    const checkpoint = await this.requireCheckpoint(run, step);
    if (checkpoint.status === 'discarded') {
      throw new AppError(
        'checkpoint_discarded',
        `step ${step} of run '${run}' was discarded: ${checkpoint.reasons.join(' ') || 'no reason recorded'}`,
        {
          run,
          step,
          reasons: checkpoint.reasons,
          discardedAt: checkpoint.discardedAt,
          deleteAfter: checkpoint.deleteAfter,
        },
      );
    }
    return checkpoint;
  }

  /** The bytes of a checkpoint from `downloadable`, whole or a range. */
  async openContent(checkpoint: CheckpointRecord, range?: ByteRange): Promise<Readable> {
    const blob = await this.deps.blobs.get(checkpoint.blobKey, range);
    if (!blob) {
      throw errors.storageUnavailable(
        `the blob of step ${checkpoint.step} of run '${checkpoint.run}' is missing from storage`,
      );
    }
    this.deps.telemetry.download(range !== undefined, range ? range.end - range.start + 1 : checkpoint.bytes);
    return blob.body;
  }

  setPinned(run: string, step: number, pinned: boolean, caller: Caller): Promise<CheckpointRecord> {
    return this.exclusive(run, async () => {
      const before = await this.requireCheckpoint(run, step);
      await this.deps.catalog.setPinned(run, step, pinned);
      if (before.pinned !== pinned) await this.audit(caller, pinned ? 'checkpoint.pin' : 'checkpoint.unpin', run, step);
      await this.decide(await this.requireRun(run), caller);
      return this.checkpoint(run, step);
    });
  }

  /**
   * Brings a discarded checkpoint back while its bytes still exist, and pins it so the next decision
   * does not discard it again.
   */
  restore(run: string, step: number, caller: Caller): Promise<CheckpointRecord> {
    return this.exclusive(run, async () => {
      const checkpoint = await this.requireCheckpoint(run, step);
      if (checkpoint.status === 'kept') return checkpoint;
      if (!checkpoint.contentAvailable) {
        throw new AppError(
          'checkpoint_not_restorable',
          `step ${step} of run '${run}' can no longer be restored: its bytes were deleted after the grace period`,
          { run, step, discardedAt: checkpoint.discardedAt },
        );
      }
      await this.deps.catalog.setPinned(run, step, true);
      await this.audit(caller, 'checkpoint.restore', run, step, { reasons: checkpoint.reasons });
      await this.decide(await this.requireRun(run), caller);
      return this.checkpoint(run, step);
    });
  }

  // Metrics

  /**
   * Stores a metric batch and folds it into the run's estimate; creates the run if needed. With an
   * Idempotency-Key the batch takes effect once however often it is sent: its points are stored tagged
   * with the key, and the estimate's state is written together with a record of the folded batch. A retry
   * finds the record (nothing to do), or all points stored but not folded (fold them), or some points
   * left by a cut-off attempt (drop them, start over). `replayed` tells the caller which.
   */
  appendMetrics(
    run: string,
    points: readonly MetricPoint[],
    caller: Caller,
    idempotencyKey?: string,
  ): Promise<{ accepted: number; replayed: boolean }> {
    return this.exclusive(run, async () => {
      if (!(await this.deps.catalog.getRun(run))) await this.admitNewRun(run, caller);
      await this.deps.catalog.ensureRun(run);
      if (idempotencyKey !== undefined) {
        const { stored, folded } = await this.deps.catalog.batchProgress(run, idempotencyKey);
        if (folded) return { accepted: stored, replayed: true };
        if (stored > 0 && stored !== points.length) await this.deps.catalog.deleteBatchPoints(run, idempotencyKey);
        if (stored !== points.length) await this.deps.catalog.appendMetrics(run, points, idempotencyKey);
        await this.deps.estimates.addMetrics(run, points, idempotencyKey);
        this.deps.telemetry.folded('metric_points', points.length);
        await this.shareCalibration(run, points);
        return { accepted: points.length, replayed: stored === points.length };
      }
      const accepted = await this.deps.catalog.appendMetrics(run, points);
      await this.deps.estimates.addMetrics(run, points);
      this.deps.telemetry.folded('metric_points', points.length);
      await this.shareCalibration(run, points);
      return { accepted, replayed: false };
    });
  }

  async listMetrics(run: string, query: MetricQuery): Promise<MetricPage> {
    await this.requireRun(run);
    return this.deps.catalog.listMetrics(run, query);
  }

  // Policies and retention

  /** Attaches a named or inline policy (null: the built-in default) and decides again at once. */
  setPolicy(id: string, ref: RunPolicyRef, caller: Caller): Promise<{ run: RunRecord; decision: RetentionDecision }> {
    return this.exclusive(id, async () => {
      await this.deps.policies.resolve(ref); // an unknown name fails before anything is written
      const before = await this.deps.catalog.getRun(id);
      if (!before) await this.admitNewRun(id, caller);
      await this.deps.catalog.ensureRun(id);
      const after = 'name' in ref && ref.name === DEFAULT_POLICY_NAME ? null : ref;
      await this.deps.catalog.setRunPolicy(id, after);
      await this.audit(caller, 'run.policy', id, null, { before: before?.policy ?? null, after });
      const run = await this.requireRun(id);
      return { run, decision: await this.decide(run, caller) };
    });
  }

  /** What `ref` (default: the run's own policy) would keep now, without touching anything. */
  async simulate(id: string, ref?: RunPolicyRef): Promise<RetentionDecision> {
    const snapshot = await this.snapshot(await this.requireRun(id));
    const policy: Policy | undefined = ref ? await this.deps.policies.resolve(ref) : undefined;
    return this.deps.retention.decide(snapshot, policy);
  }

  // Analysis

  async trajectory(id: string, view: TrajectoryView = {}): Promise<RunTrajectory> {
    const run = await this.requireRun(id);
    if (view.by === 'fraction' && !run.plannedSteps) {
      throw errors.invalidRequest(`phases by fraction need the run's plannedSteps; set it with PUT /v1/runs/${id}`);
    }
    const snapshot = await this.snapshot(run);
    const own = snapshot.policy.phase;
    const sameView = (view.phases ?? own.count) === own.count && (view.by ?? own.by) === own.by;
    return analyseRun({
      checkpoints: snapshot.checkpoints.map((c) => ({ step: c.step, indicators: c.indicators })),
      trainLoss: snapshot.trainLoss,
      plannedSteps: run.plannedSteps,
      phases: sameView ? snapshot.phases : undefined,
      phaseCount: view.phases ?? own.count,
      phasesBy: view.by ?? own.by,
      changeWindow: view.window,
    });
  }

  /** Under the lock: a read that must rebuild a lost state must not see a batch half-applied. */
  estimate(id: string, calibrateUntilStep?: number): Promise<Estimate> {
    return this.exclusive(id, async () => {
      const snapshot = await this.snapshot(await this.requireRun(id));
      return this.deps.estimates.current(snapshot.run, { phases: estimateSpans(snapshot), calibrateUntilStep });
    });
  }

  estimateHistory(id: string): Promise<HistoryEntry[]> {
    return this.exclusive(id, async () => this.deps.estimates.history(await this.requireRun(id)));
  }

  // Helpers

  /**
   * Runs `work` holding the run's lock, catalog-wide: one change to a run's derived state at a time across
   * every gateway sharing the catalog (an in-process queue first, then a Postgres advisory lock).
   */
  private exclusive<T>(run: string, work: () => Promise<T>): Promise<T> {
    return this.deps.catalog.exclusive(`run:${run}`, work);
  }

  private async snapshot(run: RunRecord): Promise<RunSnapshot> {
    return loadRunSnapshot(this.deps.catalog, run, await this.deps.policies.forRun(run));
  }

  /**
   * Evaluation points may change the run's own calibration, which the runs of its calibration group pool:
   * computing the estimate records it (RunEstimates.current). The caller holds the run's lock.
   */
  private async shareCalibration(id: string, points: readonly MetricPoint[]): Promise<void> {
    if (!points.some((p) => p.valLoss !== undefined)) return;
    const run = await this.requireRun(id);
    if (calibrationGroupOf(run) === null || run.trainSize === null) return;
    await this.deps.estimates.current(run, { phases: estimateSpans(await this.snapshot(run)) });
  }

  /** Decides retention for the run and records it, auditing evictions; the caller holds the run's lock. */
  private async decide(run: RunRecord, caller: Caller): Promise<RetentionDecision> {
    const started = performance.now();
    const snapshot = await this.snapshot(run);
    const decision = await this.deps.retention.apply(snapshot, { actor: caller.actor });
    const wasKept = new Set(snapshot.checkpoints.filter((c) => c.status === 'kept').map((c) => c.step));
    const evicted = decision.checkpoints.filter((c) => !c.keep && wasKept.has(c.step)).length;
    this.deps.telemetry.decision((performance.now() - started) / 1000, evicted);
    return decision;
  }

  /** A caller may create a run while its scope holds fewer than maxRunsPerScope runs. */
  private async admitNewRun(id: string, caller: Caller): Promise<void> {
    const held = await this.deps.catalog.countRuns(caller.scope);
    if (held >= this.deps.maxRunsPerScope) {
      throw new AppError(
        'limit_exceeded',
        `cannot create run '${id}': the scope ${caller.scope.join(', ')} already holds ${held} runs ` +
          `(TRAJGATE_MAX_RUNS_PER_SCOPE=${this.deps.maxRunsPerScope})`,
        { limit: 'runs per scope', max: this.deps.maxRunsPerScope, value: held },
      );
    }
  }

  private audit(
    caller: Caller,
    action: AuditAction,
    run: string,
    step: number | null,
    details: Record<string, unknown> = {},
  ): Promise<void> {
    return this.deps.catalog.appendAudit([{ actor: caller.actor, action, run, step, details }]);
  }

  private async requireRun(id: string): Promise<RunRecord> {
    const run = await this.deps.catalog.getRun(id);
    if (!run) throw errors.runNotFound(id);
    return run;
  }

  private async requireCheckpoint(run: string, step: number): Promise<CheckpointRecord> {
    const checkpoint = await this.deps.catalog.getCheckpoint(run, step);
    if (checkpoint) return checkpoint;
    await this.requireRun(run);
    throw errors.checkpointNotFound(run, step);
  }
}
