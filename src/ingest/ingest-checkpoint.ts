import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { CheckpointRecord } from '../model/records.js';
import { AppError } from '../errors.js';
import type { BlobStore } from '../storage/blob-store.js';
import { checkpointDataKey, manifestKeyFor } from '../storage/keys.js';
import type { CheckpointFormat } from '@trajgate/sdk/wire/formats';
import { checkDeclaredSha, hashBody, newUploadId, openBody, resolveFormat, streamToStaged } from './checkpoint-body.js';
import type { DecoderLimits } from './decoder.js';
import { DEFAULT_PIPELINE, type PipelineOptions } from './ingest-pipeline.js';

export interface IngestLimits extends DecoderLimits {
  maxCheckpointBytes: number;
  /** Abandon an upload when the client sends nothing for this long (0: never). */
  uploadIdleMs: number;
}

export interface IngestRequest {
  run: string;
  step: number;
  /** The request body; its chunks must not be reused once yielded (they are written after the next ones arrive). */
  body: AsyncIterable<Uint8Array>;
  contentType?: string;
  contentLength?: number;
  /** Lowercase hex SHA-256 the client declared for the body, already validated as 64 hex digits. */
  sha256?: string;
}

export interface IngestOutcome {
  /** created: stored now; unchanged: the same bytes were already committed for this step. */
  status: 'created' | 'unchanged';
  /** The committed record, as the catalog holds it right after the commit. */
  checkpoint: CheckpointRecord;
}

/**
 * Streams one checkpoint upload (docs/architecture.md §3): one pass over the body feeds SHA-256, the format decoder
 * (which validates and reports tensor data) and a staged blob write, through the bounded pipeline of
 * `ingest-pipeline.ts` (analysis on a worker thread for large bodies, overlapping the writes). Only a body that is whole, valid and
 * matches its declared checksum is committed: blob first, then its manifest, then the catalog row. Any
 * failure before the catalog row aborts the staged write or deletes what was committed, so a rejected
 * upload leaves nothing behind.
 */
export class CheckpointIngest {
  constructor(
    private readonly blobs: BlobStore,
    private readonly catalog: Catalog,
    private readonly limits: IngestLimits,
    private readonly logger: Logger,
    private readonly pipeline: PipelineOptions = DEFAULT_PIPELINE,
  ) {}

  async ingest(req: IngestRequest): Promise<IngestOutcome> {
    const { body, declared } = openBody(req, this.limits, 'checkpoint');
    const existing = await this.catalog.getCheckpoint(req.run, req.step);
    if (existing) {
      // Already committed: read through SHA-256 only and compare, writing nothing.
      const sha256 = await hashBody(body);
      checkDeclaredSha(req.sha256, sha256);
      return resolveAgainst(existing, sha256);
    }
    const { format, rest } = await resolveFormat(body, declared, 'the body');
    return this.store(req, format, rest);
  }

  private async store(
    req: IngestRequest,
    format: CheckpointFormat,
    body: AsyncIterable<Uint8Array>,
  ): Promise<IngestOutcome> {
    const uploadId = newUploadId();
    const blobKey = checkpointDataKey(req.run, req.step, uploadId, format);
    const reference = await this.referenceTensors(req.run);
    const writer = this.blobs.createWriter(blobKey);
    const {
      sha256,
      analysed,
      bytes: received,
    } = await streamToStaged(
      body,
      writer,
      { format, step: req.step, reference, limits: this.limits, contentLength: req.contentLength },
      req.sha256,
      this.pipeline,
      this.logger,
    );

    const blob = await writer.commit();
    const manifestKey = manifestKeyFor(blobKey);
    const createdAt = new Date().toISOString();
    const row = {
      run: req.run,
      step: req.step,
      uploadId,
      sha256,
      bytes: received,
      format,
      blobKey,
      tensors: analysed.tensors,
      metadata: analysed.layout.metadata,
    };
    try {
      await this.blobs.putSmall(
        manifestKey,
        JSON.stringify({ manifestVersion: 1, ...row, createdAt }),
        'application/json',
      );
      await this.catalog.ensureRun(req.run);
      const result = await this.catalog.insertCheckpoint({ ...row, summary: analysed.summary });
      if (!result.inserted) {
        // Another upload of this step won the race; ours was never referenced.
        await this.deleteQuietly([blobKey, manifestKey]);
        return resolveAgainst(result.existing, sha256);
      }
    } catch (err) {
      await this.deleteQuietly([blobKey, manifestKey]);
      throw err;
    }
    this.logger.debug({ run: req.run, step: req.step, bytes: blob.size, key: blobKey }, 'checkpoint committed');
    const checkpoint = await this.catalog.getCheckpoint(req.run, req.step);
    if (!checkpoint) throw new AppError('internal', `checkpoint ${req.run}/${req.step} vanished after commit`);
    return { status: 'created', checkpoint };
  }

  /** The tensor table new checkpoints must match, or null when the run accepts any. */
  private async referenceTensors(run: string) {
    const [record, first] = await Promise.all([this.catalog.getRun(run), this.catalog.firstCheckpoint(run)]);
    return record?.allowShapeChange || !first ? null : first.tensors;
  }

  private async deleteQuietly(keys: string[]): Promise<void> {
    for (const key of keys) {
      try {
        await this.blobs.delete(key);
      } catch (err) {
        this.logger.warn({ err, key }, 'could not delete an uncommitted blob; the start-up collector will');
      }
    }
  }
}

function resolveAgainst(existing: CheckpointRecord, sha256: string): IngestOutcome {
  if (existing.sha256 === sha256) return { status: 'unchanged', checkpoint: existing };
  throw new AppError(
    'checkpoint_conflict',
    `step ${existing.step} of run '${existing.run}' is already committed with different bytes`,
    { run: existing.run, step: existing.step, committedSha256: existing.sha256, uploadedSha256: sha256 },
  );
}
