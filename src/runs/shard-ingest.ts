import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Catalog, NewCheckpoint, ShardRecord } from '../catalog/catalog.js';
import { AppError } from '../errors.js';
import { readBody } from '../ingest/body.js';
import {
  checkDeclaredSha,
  hashBody,
  newUploadId,
  openBody,
  resolveFormat,
  streamToStaged,
} from '../ingest/checkpoint-body.js';
import type { AnalysedCheckpoint } from '../ingest/checkpoint-analysis.js';
import type { IngestLimits } from '../ingest/ingest-checkpoint.js';
import { DEFAULT_PIPELINE, type PipelineOptions } from '../ingest/ingest-pipeline.js';
import type { CheckpointRecord, ShardInfo, TensorEntry } from '../model/records.js';
import type { BlobStore } from '../storage/blob-store.js';
import { manifestKeyFor } from '../storage/keys.js';
import { isShardIndexKey, shardDataKey, shardIndexKey } from '../storage/shard-keys.js';
import { DEFAULT_SKETCH_SPEC } from '../trajectory/accumulator.js';
import { mergeSummaries } from '../trajectory/merge-summaries.js';
import { DTYPE_SIZES, elementCount } from '@trajgate/sdk/wire/dtypes';
import { SHARD_INDEX_FILE, type CheckpointFormat } from '@trajgate/sdk/wire/formats';

/** The name of the served index, as Hugging Face writes it beside its shards. */
export const INDEX_FILE = SHARD_INDEX_FILE;
/** Most files one step may have. */
export const MAX_SHARDS = 10_000;
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
const IndexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string()),
});

export interface ShardRequest {
  run: string;
  step: number;
  file: string;
  /**
   * The number of files the step has (x-trajgate-shard-count); may be left out once the step's index or
   * another of its files declared it.
   */
  shardCount?: number;
  body: AsyncIterable<Uint8Array>;
  contentType?: string;
  contentLength?: number;
  sha256?: string;
}

/** A request whose shard count is known. */
export type CountedShardRequest = ShardRequest & { shardCount: number };

/** A shard whose bytes are stored (its blob committed) and valid, not yet staged in the catalog. */
export interface StreamedShard {
  req: CountedShardRequest;
  uploadId: string;
  blobKey: string;
  format: CheckpointFormat;
  sha256: string;
  bytes: number;
  analysed: AnalysedCheckpoint;
}

/** An uploaded `model.safetensors.index.json`: the files it declares, read and stored, not yet staged. */
export interface DeclaredIndex {
  req: ShardRequest;
  uploadId: string;
  blobKey: string;
  sha256: string;
  bytes: number;
  /** Tensor name → file. */
  weightMap: Record<string, string>;
  files: string[];
}

export interface UnchangedShard {
  status: 'unchanged';
  shard: ShardRecord;
  received: number;
  checkpoint: CheckpointRecord | null;
}

export type ShardStageOutcome =
  | UnchangedShard
  | { status: 'staged'; shard: ShardRecord; received: number }
  | { status: 'committed'; shard: ShardRecord; received: number; checkpoint: CheckpointRecord };

/**
 * Sharded steps (docs/architecture.md §3): a step stored as N files uploaded separately, in parallel and
 * on any replica. Each file streams through the same decoder and analysis as a single-file upload into a
 * blob of its own (`stream`, outside the run's lock). Then, under the run's lock (`stage`), it is staged in
 * the catalog after the checks that need the step's other files (the same shard count, no tensor name in
 * two files, one format); the file that makes N commits the step: its checkpoint row, whose summary is
 * the files' summed summaries (trajectory/merge-summaries.ts) and whose blob is the step's index, becomes
 * visible in one transaction together with the shards' link to it. Until then the step does not exist
 * for listings, the trajectory, retention or the estimate.
 */
export class ShardIngest {
  constructor(
    private readonly blobs: BlobStore,
    private readonly catalog: Catalog,
    private readonly limits: IngestLimits,
    private readonly logger: Logger,
    private readonly pipeline: PipelineOptions = DEFAULT_PIPELINE,
  ) {}

  /**
   * Before the body is stored: a file already stored for the step (staged or committed) is compared by
   * SHA-256 and answered without writing anything; a shard count that disagrees with the staged files' is
   * refused before the body is read. Null when the body must be stored.
   */
  async precheck(req: ShardRequest): Promise<UnchangedShard | { shardCount: number | undefined }> {
    const [checkpoint, shards] = await Promise.all([
      this.catalog.getCheckpoint(req.run, req.step),
      this.catalog.listShards(req.run, req.step),
    ]);
    const staged = shards.filter((s) => s.checkpointUploadId === null);
    if (!checkpoint && !staged.some((s) => s.file === req.file)) {
      if (req.file === INDEX_FILE) return { shardCount: req.shardCount };
      const counted = { ...req, shardCount: countOf(req, staged) };
      checkShardCount(counted, staged);
      return { shardCount: counted.shardCount };
    }
    const sha256 = await hashBody(readBody(req.body, this.limits.maxCheckpointBytes, this.limits.uploadIdleMs));
    checkDeclaredSha(req.sha256, sha256);
    if (checkpoint) return this.answerCommitted(req, checkpoint, shards, sha256);
    const same = staged.find((s) => s.file === req.file) as ShardRecord;
    if (sha256 !== same.sha256) throw differentBytes(req, same.sha256, sha256);
    return { status: 'unchanged', shard: same, received: dataOf(staged).length, checkpoint: null };
  }

  /**
   * Reads an uploaded `model.safetensors.index.json` (Hugging Face's format) and stores it as a file of
   * the step: it declares the step's files (the shard count) and which tensors each must hold.
   */
  async readIndex(req: ShardRequest): Promise<DeclaredIndex> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of readBody(req.body, this.limits.maxHeaderBytes, this.limits.uploadIdleMs)) {
      chunks.push(chunk);
    }
    const bytes = Buffer.concat(chunks);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    checkDeclaredSha(req.sha256, sha256);
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new AppError('invalid_request', `${INDEX_FILE} is not JSON`);
    }
    const index = IndexSchema.safeParse(parsed);
    if (!index.success) {
      throw new AppError(
        'invalid_request',
        `${INDEX_FILE} must be {"weight_map": {tensor: file, ...}} (Hugging Face's format): ${index.error.issues[0]?.message ?? 'invalid'}`,
      );
    }
    const weightMap = index.data.weight_map;
    const files = [...new Set(Object.values(weightMap))].sort();
    const bad = files.find((f) => !FILE_NAME.test(f) || f.includes('..') || f === INDEX_FILE);
    if (files.length === 0 || files.length > MAX_SHARDS || bad !== undefined) {
      throw new AppError(
        'invalid_request',
        bad !== undefined
          ? `${INDEX_FILE} names the file '${bad.slice(0, 220)}', which is not a valid file name`
          : `${INDEX_FILE} must name from 1 to ${MAX_SHARDS} files, not ${files.length}`,
      );
    }
    if (req.shardCount !== undefined && req.shardCount !== files.length) {
      throw new AppError(
        'checkpoint_conflict',
        `${INDEX_FILE} declares ${files.length} files but x-trajgate-shard-count says ${req.shardCount}`,
        { run: req.run, step: req.step, declared: files.length, shardCount: req.shardCount },
      );
    }
    const uploadId = newUploadId();
    const blobKey = shardDataKey(req.run, req.step, uploadId, INDEX_FILE);
    await this.blobs.putSmall(blobKey, bytes, 'application/json');
    return { req, uploadId, blobKey, sha256, bytes: bytes.byteLength, weightMap, files };
  }

  /** Under the run's lock: stages a declared index after the checks against the step's staged files. */
  async stageIndex(index: DeclaredIndex): Promise<ShardStageOutcome> {
    const req: CountedShardRequest = { ...index.req, shardCount: index.files.length };
    const checkpoint = await this.catalog.getCheckpoint(req.run, req.step);
    if (checkpoint) {
      await this.deleteQuietly([index.blobKey]);
      return this.answerCommitted(req, checkpoint, await this.catalog.listShards(req.run, req.step), index.sha256);
    }
    const staged = (await this.catalog.listShards(req.run, req.step)).filter((s) => s.checkpointUploadId === null);
    try {
      checkShardCount(req, staged);
      for (const s of dataOf(staged)) checkDeclared(req, s.file, s.tensors, index.weightMap);
    } catch (err) {
      await this.deleteQuietly([index.blobKey]);
      throw err;
    }
    const spec = DEFAULT_SKETCH_SPEC;
    const result = await this.catalog.stageShard({
      run: req.run,
      step: req.step,
      file: INDEX_FILE,
      shardCount: req.shardCount,
      uploadId: index.uploadId,
      sha256: index.sha256,
      bytes: index.bytes,
      format: 'safetensors',
      blobKey: index.blobKey,
      tensors: [],
      // The declared weight map rides in the row's metadata (tensor → file).
      metadata: index.weightMap,
      summary: {
        step: req.step,
        spec,
        sketch: new Float64Array(spec.k),
        tensors: [],
        tensorSketches: [],
        weightNorm: 0,
      },
    });
    return this.afterStaging(req, index.blobKey, index.sha256, result, staged);
  }

  /** The step is committed: the same file with the same bytes is unchanged; anything else a conflict. */
  private answerCommitted(
    req: ShardRequest,
    checkpoint: CheckpointRecord,
    shards: readonly ShardRecord[],
    sha256: string,
  ): UnchangedShard {
    if (!isShardIndexKey(checkpoint.blobKey)) {
      throw new AppError(
        'checkpoint_conflict',
        `step ${req.step} of run '${req.run}' is already committed as a single file; it has no shards`,
        { run: req.run, step: req.step },
      );
    }
    const committed = shards.filter((s) => s.checkpointUploadId === checkpoint.uploadId);
    const same = committed.find((s) => s.file === req.file);
    if (!same) {
      throw new AppError(
        'checkpoint_conflict',
        `step ${req.step} of run '${req.run}' is already committed with the files ${committed.map((s) => `'${s.file}'`).join(', ')}; '${req.file}' is not one of them`,
        { run: req.run, step: req.step, file: req.file, files: committed.map((s) => s.file) },
      );
    }
    if (same.sha256 !== sha256) throw differentBytes(req, same.sha256, sha256);
    return {
      status: 'unchanged',
      shard: same,
      received: dataOf(committed).length,
      checkpoint: withShards(checkpoint, dataOf(committed)),
    };
  }

  /** Streams the body through validation and analysis into the shard's own blob (committed, not yet staged). */
  async stream(req: CountedShardRequest): Promise<StreamedShard> {
    const opened = openBody(req, this.limits, 'shard');
    const { format, rest } = await resolveFormat(opened.body, opened.declared, `file '${req.file}'`);
    const uploadId = newUploadId();
    const blobKey = shardDataKey(req.run, req.step, uploadId, req.file);
    const writer = this.blobs.createWriter(blobKey);
    // No reference table: a file holds part of the step's tensors; checkAgainstRun and commit compare.
    const { sha256, analysed, bytes } = await streamToStaged(
      rest,
      writer,
      { format, step: req.step, reference: null, limits: this.limits, contentLength: req.contentLength },
      req.sha256,
      this.pipeline,
      this.logger,
    );
    await writer.commit();
    return { req, uploadId, blobKey, format, sha256, bytes, analysed };
  }

  /**
   * Under the run's lock: stages a streamed shard after the checks against the step's other files, and
   * commits the step when this is its last file. A shard refused here has its bytes deleted.
   */
  async stage(shard: StreamedShard): Promise<ShardStageOutcome> {
    const { req } = shard;
    const checkpoint = await this.catalog.getCheckpoint(req.run, req.step);
    if (checkpoint) {
      // Committed meanwhile (by the same file on another replica, or a single-file upload).
      await this.deleteQuietly([shard.blobKey]);
      return this.answerCommitted(req, checkpoint, await this.catalog.listShards(req.run, req.step), shard.sha256);
    }
    const staged = (await this.catalog.listShards(req.run, req.step)).filter((s) => s.checkpointUploadId === null);
    try {
      checkShardCount(req, staged);
      checkAgainstStaged(shard, staged);
      await this.checkAgainstRun(shard);
    } catch (err) {
      await this.deleteQuietly([shard.blobKey]);
      throw err;
    }
    const result = await this.catalog.stageShard({
      run: req.run,
      step: req.step,
      file: req.file,
      shardCount: req.shardCount,
      uploadId: shard.uploadId,
      sha256: shard.sha256,
      bytes: shard.bytes,
      format: shard.format,
      blobKey: shard.blobKey,
      tensors: shard.analysed.tensors,
      metadata: shard.analysed.layout.metadata,
      summary: shard.analysed.summary,
    });
    return this.afterStaging(req, shard.blobKey, shard.sha256, result, staged);
  }

  private async afterStaging(
    req: CountedShardRequest,
    blobKey: string,
    sha256: string,
    result: Awaited<ReturnType<Catalog['stageShard']>>,
    staged: readonly ShardRecord[],
  ): Promise<ShardStageOutcome> {
    if (!result.inserted) {
      // The same file arrived twice at once; the other copy is staged.
      await this.deleteQuietly([blobKey]);
      if (result.existing.sha256 !== sha256) throw differentBytes(req, result.existing.sha256, sha256);
      return { status: 'unchanged', shard: result.existing, received: dataOf(staged).length, checkpoint: null };
    }
    const record = (await this.catalog.listShards(req.run, req.step)).find((s) => s.file === req.file);
    if (!record) throw new AppError('internal', `file '${req.file}' vanished after staging`);
    const committed = await this.completeIfReady(req.run, req.step);
    if (committed) return { status: 'committed', shard: record, received: req.shardCount, checkpoint: committed };
    const received = dataOf(staged).length + (req.file === INDEX_FILE ? 0 : 1);
    return { status: 'staged', shard: record, received };
  }

  /**
   * Under the run's lock: commits the step when all its declared files are staged and it is not committed;
   * returns the committed record, else null.
   */
  async completeIfReady(run: string, step: number): Promise<CheckpointRecord | null> {
    if (await this.catalog.getCheckpoint(run, step)) return null;
    const all = (await this.catalog.listShards(run, step, { summaries: true })).filter(
      (s) => s.checkpointUploadId === null,
    );
    const data = dataOf(all);
    if (all.length === 0 || data.length < all[0].shardCount) return null;
    const index = all.find((s) => s.file === INDEX_FILE);
    if (index?.metadata) {
      const have = new Set(data.flatMap((s) => s.tensors.map((t) => t.name)));
      const missing = Object.keys(index.metadata).filter((name) => !have.has(name));
      if (missing.length > 0) {
        await this.dropStep(run, step);
        throw new AppError(
          'checkpoint_conflict',
          `the files of step ${step} of run '${run}' lack tensors its ${INDEX_FILE} declares: ${missing
            .slice(0, 5)
            .map((n) => `'${n}'`)
            .join(', ')}${missing.length > 5 ? ', ...' : ''}; its files were dropped`,
          { run, step, missing: missing.slice(0, 100) },
        );
      }
    }
    return this.commit(run, step, data);
  }

  /** The files of a committed sharded step, by file name. */
  async filesOf(checkpoint: CheckpointRecord): Promise<ShardRecord[]> {
    if (!isShardIndexKey(checkpoint.blobKey)) return [];
    const shards = await this.catalog.listShards(checkpoint.run, checkpoint.step);
    return dataOf(shards.filter((s) => s.checkpointUploadId === checkpoint.uploadId));
  }

  private async commit(run: string, step: number, shards: ShardRecord[]): Promise<CheckpointRecord> {
    const tensors = shards.flatMap((s) => s.tensors);
    if (tensors.length > this.limits.maxTensors) {
      await this.dropStep(run, step);
      throw new AppError(
        'limit_exceeded',
        `step ${step} of run '${run}' holds ${tensors.length} tensors in its ${shards.length} files, more than TRAJGATE_MAX_TENSORS=${this.limits.maxTensors}; its files were dropped`,
        { limit: 'tensors per checkpoint', max: this.limits.maxTensors, value: tensors.length },
      );
    }
    const reference = await this.referenceTensors(run);
    if (reference) {
      const have = new Set(tensors.map((t) => t.name));
      const missing = reference.filter((t) => !have.has(t.name)).map((t) => t.name);
      if (missing.length > 0) {
        await this.dropStep(run, step);
        throw new AppError(
          'shape_mismatch',
          `the ${shards.length} files of step ${step} of run '${run}' lack tensors of the run's first checkpoint: ${missing
            .slice(0, 5)
            .map((n) => `'${n}'`)
            .join(
              ', ',
            )}${missing.length > 5 ? ', ...' : ''}; its files were dropped. Create the run with allowShapeChange to accept this.`,
          { missing: missing.slice(0, 100) },
        );
      }
    }
    const uploadId = newUploadId();
    const blobKey = shardIndexKey(run, step, uploadId);
    const index = indexOf(shards);
    const sha256 = stepSha256(shards);
    const bytes = shards.reduce((n, s) => n + s.bytes, 0);
    const metadata = shards.reduce<Record<string, string> | null>(
      (acc, s) => (s.metadata ? { ...s.metadata, ...(acc ?? {}) } : acc),
      null,
    );
    const summary = mergeSummaries(
      step,
      shards.map((s) => {
        if (!s.summary) throw new AppError('internal', `file '${s.file}' was listed without its summary`);
        return s.summary;
      }),
    );
    const row: NewCheckpoint = {
      run,
      step,
      uploadId,
      sha256,
      bytes,
      format: shards[0].format,
      blobKey,
      tensors,
      metadata,
      summary,
    };
    const manifestKey = manifestKeyFor(blobKey);
    try {
      await this.blobs.putSmall(blobKey, index, 'application/json');
      await this.blobs.putSmall(
        manifestKey,
        JSON.stringify({
          manifestVersion: 1,
          ...row,
          summary: undefined,
          shards: shards.map((s) => ({ file: s.file, sha256: s.sha256, bytes: s.bytes, blobKey: s.blobKey })),
          createdAt: new Date().toISOString(),
        }),
        'application/json',
      );
      await this.catalog.ensureRun(run);
      const result = await this.catalog.commitShards(row);
      if (!result.inserted) {
        await this.deleteQuietly([blobKey, manifestKey]);
        throw new AppError(
          'checkpoint_conflict',
          `step ${step} of run '${run}' was committed by another upload while its files arrived`,
          { run, step, committedSha256: result.existing.sha256 },
        );
      }
    } catch (err) {
      if (!(err instanceof AppError && err.code === 'checkpoint_conflict')) {
        await this.deleteQuietly([blobKey, manifestKey]);
      }
      throw err;
    }
    this.logger.debug({ run, step, files: shards.length, bytes }, 'sharded checkpoint committed');
    const checkpoint = await this.catalog.getCheckpoint(run, step);
    if (!checkpoint) throw new AppError('internal', `checkpoint ${run}/${step} vanished after commit`);
    return checkpoint;
  }

  /** A new file must match the run's first checkpoint where it names its tensors (all are checked at commit). */
  private async checkAgainstRun(shard: StreamedShard): Promise<void> {
    const reference = await this.referenceTensors(shard.req.run);
    if (!reference) return;
    const expected = new Map(reference.map((t) => [t.name, t.shape]));
    const problems: string[] = [];
    for (const t of shard.analysed.tensors) {
      const shape = expected.get(t.name);
      if (!shape) problems.push(`unexpected tensor '${t.name}'`);
      else if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])) {
        problems.push(`'${t.name}' has shape [${t.shape}], the run's first checkpoint has [${shape}]`);
      }
    }
    if (problems.length > 0) {
      throw new AppError(
        'shape_mismatch',
        `file '${shard.req.file}' differs from the run's first checkpoint: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}. Create the run with allowShapeChange to accept this.`,
        { file: shard.req.file, problems: problems.slice(0, 100) },
      );
    }
  }

  private async referenceTensors(run: string): Promise<TensorEntry[] | null> {
    const [record, first] = await Promise.all([this.catalog.getRun(run), this.catalog.firstCheckpoint(run)]);
    return record?.allowShapeChange || !first ? null : first.tensors;
  }

  private async dropStep(run: string, step: number): Promise<void> {
    await this.deleteQuietly(await this.catalog.dropStagedShards(run, step));
  }

  private async deleteQuietly(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      try {
        await this.blobs.delete(key);
      } catch (err) {
        this.logger.warn({ err, key }, 'could not delete a shard blob; reconciliation will');
      }
    }
  }
}

/** The record with its files listed, for a sharded step. */
export function withShards(checkpoint: CheckpointRecord, shards: readonly ShardRecord[]): CheckpointRecord {
  if (shards.length === 0) return checkpoint;
  const info: ShardInfo[] = shards.map((s) => ({
    file: s.file,
    bytes: s.bytes,
    sha256: s.sha256,
    tensors: s.tensors.length,
  }));
  return { ...checkpoint, shards: info };
}

/**
 * The step's index in Hugging Face's format: total_size is the tensors' data bytes, weight_map each
 * tensor's file, by tensor name.
 */
export function indexOf(shards: readonly Pick<ShardRecord, 'file' | 'tensors'>[]): string {
  let total = 0;
  const map: [string, string][] = [];
  for (const s of shards) {
    for (const t of s.tensors) {
      total += elementCount(t.shape) * DTYPE_SIZES[t.dtype];
      map.push([t.name, s.file]);
    }
  }
  map.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return `${JSON.stringify({ metadata: { total_size: total }, weight_map: Object.fromEntries(map) }, null, 2)}\n`;
}

/** A sharded step's sha256: the SHA-256 of its `sha256sum` listing ("<hex>  <file>\n" by file name). */
export function stepSha256(shards: readonly Pick<ShardRecord, 'file' | 'sha256'>[]): string {
  const lines = [...shards]
    .sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
    .map((s) => `${s.sha256}  ${s.file}\n`);
  return createHash('sha256').update(lines.join('')).digest('hex');
}

/** The step's files, without its uploaded index. */
function dataOf<T extends { file: string }>(shards: readonly T[]): T[] {
  return shards.filter((s) => s.file !== INDEX_FILE);
}

/** The shard count: as the request says, else as the step's index or staged files declared it. */
function countOf(req: ShardRequest, staged: readonly ShardRecord[]): number {
  if (req.shardCount !== undefined) return req.shardCount;
  const declared = staged[0]?.shardCount;
  if (declared === undefined) {
    throw new AppError(
      'invalid_request',
      `x-trajgate-shard-count is missing: give the number of files of step ${req.step}, or upload its ${INDEX_FILE} first`,
      { header: 'x-trajgate-shard-count' },
    );
  }
  return declared;
}

function checkShardCount(req: CountedShardRequest, staged: readonly ShardRecord[]): void {
  const other = staged.find((s) => s.shardCount !== req.shardCount);
  if (other) {
    throw new AppError(
      'checkpoint_conflict',
      `file '${req.file}' declares ${req.shardCount} shards for step ${req.step} of run '${req.run}', but '${other.file}' declared ${other.shardCount}`,
      { run: req.run, step: req.step, file: req.file, shardCount: req.shardCount, stagedShardCount: other.shardCount },
    );
  }
  const data = dataOf(staged);
  if (req.file !== INDEX_FILE && data.length >= req.shardCount && !data.some((s) => s.file === req.file)) {
    throw new AppError(
      'checkpoint_conflict',
      `step ${req.step} of run '${req.run}' already has its ${req.shardCount} files (${data.map((s) => `'${s.file}'`).join(', ')}); '${req.file}' would be one more`,
      { run: req.run, step: req.step, file: req.file, files: data.map((s) => s.file) },
    );
  }
}

/** A file of a step whose index is staged must be one the index names, holding the tensors it says. */
function checkDeclared(
  req: ShardRequest,
  file: string,
  tensors: readonly { name: string }[],
  weightMap: Readonly<Record<string, string>>,
): void {
  if (!Object.values(weightMap).includes(file)) {
    throw new AppError(
      'checkpoint_conflict',
      `file '${file}' is not one of the files the ${INDEX_FILE} of step ${req.step} of run '${req.run}' declares`,
      { run: req.run, step: req.step, file },
    );
  }
  for (const t of tensors) {
    if (weightMap[t.name] !== file) {
      throw new AppError(
        'checkpoint_conflict',
        `tensor '${t.name}' is in file '${file}', but the ${INDEX_FILE} of step ${req.step} of run '${req.run}' ${weightMap[t.name] === undefined ? 'does not name it' : `puts it in '${weightMap[t.name]}'`}`,
        { run: req.run, step: req.step, file, tensor: t.name, declaredFile: weightMap[t.name] ?? null },
      );
    }
  }
}

function checkAgainstStaged(shard: StreamedShard, staged: readonly ShardRecord[]): void {
  const { req } = shard;
  const index = staged.find((s) => s.file === INDEX_FILE);
  if (index?.metadata) checkDeclared(req, req.file, shard.analysed.tensors, index.metadata);
  const owner = new Map<string, string>();
  for (const s of dataOf(staged)) for (const t of s.tensors) owner.set(t.name, s.file);
  for (const t of shard.analysed.tensors) {
    const other = owner.get(t.name);
    if (other !== undefined) {
      throw new AppError(
        'checkpoint_conflict',
        `tensor '${t.name}' is in two files of step ${req.step} of run '${req.run}': '${other}' and '${req.file}'`,
        { run: req.run, step: req.step, tensor: t.name, files: [other, req.file] },
      );
    }
  }
  const format = dataOf(staged)[0]?.format;
  if (format !== undefined && format !== shard.format) {
    throw new AppError(
      'checkpoint_conflict',
      `file '${req.file}' is ${shard.format} but the other files of step ${req.step} are ${format}; one step has one format`,
      { run: req.run, step: req.step, file: req.file },
    );
  }
}

function differentBytes(req: ShardRequest, stored: string, uploaded: string): AppError {
  return new AppError(
    'checkpoint_conflict',
    `file '${req.file}' of step ${req.step} of run '${req.run}' is already stored with different bytes`,
    { run: req.run, step: req.step, file: req.file, storedSha256: stored, uploadedSha256: uploaded },
  );
}
