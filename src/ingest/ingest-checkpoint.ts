import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { CheckpointRecord } from '../model/records.js';
import { AppError } from '../errors.js';
import type { BlobStore, BlobWriter } from '../storage/blob-store.js';
import { checkpointDataKey, manifestKeyFor } from '../storage/keys.js';
import { MEDIA_TYPES, OCTET_STREAM, SHA256_HEADER, type CheckpointFormat } from '@trajgate/sdk/wire/formats';
import { peek, readBody } from './body.js';
import type { DecoderLimits } from './decoder.js';
import { DEFAULT_PIPELINE, type PipelineOptions, type PipelineOutcome, runIngestPipeline } from './ingest-pipeline.js';
import { SNIFF_BYTES, formatFromContentType, sniffFormat } from './sniff.js';

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
    if (req.contentLength !== undefined && req.contentLength > this.limits.maxCheckpointBytes) {
      throw new AppError(
        'body_too_large',
        `checkpoint body of ${req.contentLength} bytes exceeds the limit of ${this.limits.maxCheckpointBytes}`,
        {
          contentLength: req.contentLength,
          limit: this.limits.maxCheckpointBytes,
        },
      );
    }
    const declared = formatFromContentType(req.contentType);
    if (declared === null) {
      throw new AppError('unsupported_media_type', `content type '${req.contentType}' is not a checkpoint format`, {
        supported: [...Object.values(MEDIA_TYPES), OCTET_STREAM],
      });
    }
    const body = readBody(req.body, this.limits.maxCheckpointBytes, this.limits.uploadIdleMs);
    const existing = await this.catalog.getCheckpoint(req.run, req.step);
    if (existing) return this.compareWithCommitted(existing, body, req.sha256);

    const { head, rest } = await peek(body, SNIFF_BYTES);
    const format = declared === 'sniff' ? sniffFormat(head) : declared;
    if (format === null) {
      throw new AppError(
        'unsupported_media_type',
        'the body is neither safetensors nor a trajgate native checkpoint; send it with its own content type',
      );
    }
    return this.store(req, format, rest);
  }

  /** The step is already committed: read the body through SHA-256 only and compare, writing nothing. */
  private async compareWithCommitted(
    existing: CheckpointRecord,
    body: AsyncIterable<Uint8Array>,
    declaredSha: string | undefined,
  ): Promise<IngestOutcome> {
    const hash = createHash('sha256');
    for await (const chunk of body) hash.update(chunk);
    const sha256 = hash.digest('hex');
    checkDeclaredSha(declaredSha, sha256);
    return resolveAgainst(existing, sha256);
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
    let outcome: PipelineOutcome;
    try {
      outcome = await runIngestPipeline(
        body,
        writer,
        { format, step: req.step, reference, limits: this.limits, contentLength: req.contentLength },
        this.pipeline,
      );
      checkDeclaredSha(req.sha256, outcome.sha256);
    } catch (err) {
      await abortQuietly(writer, this.logger);
      throw err;
    }
    const { sha256, analysed, bytes: received } = outcome;

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

function checkDeclaredSha(declared: string | undefined, actual: string): void {
  if (declared !== undefined && declared !== actual) {
    throw new AppError('checksum_mismatch', `body SHA-256 is ${actual}, the ${SHA256_HEADER} header says ${declared}`, {
      declared,
      actual,
    });
  }
}

async function abortQuietly(writer: BlobWriter, logger: Logger): Promise<void> {
  try {
    await writer.abort();
  } catch (err) {
    logger.warn({ err }, 'could not abort a staged blob write; the start-up collector will');
  }
}

/** Sortable by creation time (base36 milliseconds) and unique (random suffix). */
function newUploadId(): string {
  return `${Date.now().toString(36)}${randomBytes(6).toString('hex')}`;
}
