import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { BlobWriter } from '../storage/blob-store.js';
import { MEDIA_TYPES, OCTET_STREAM, SHA256_HEADER, type CheckpointFormat } from '@trajgate/sdk/wire/formats';
import { peek, readBody } from './body.js';
import type { BodyAnalysisStart } from './body-analysis.js';
import type { IngestLimits } from './ingest-checkpoint.js';
import { type PipelineOptions, type PipelineOutcome, runIngestPipeline } from './ingest-pipeline.js';
import { SNIFF_BYTES, formatFromContentType, sniffFormat } from './sniff.js';

/**
 * The steps every checkpoint body goes through, whether it is a whole checkpoint (ingest-checkpoint.ts) or
 * one file of a sharded step (runs/shard-ingest.ts): size and content-type checks before reading, the
 * format from the content type or the first bytes, the pipeline into a staged blob, the declared SHA-256.
 */

/** What a checkpoint request says about its body. */
export interface BodyRequest {
  body: AsyncIterable<Uint8Array>;
  contentType?: string;
  contentLength?: number;
}

/**
 * Refuses a declared size over the limit (413) and a content type that is no checkpoint format (415)
 * before anything is read; returns the body capped at the limit and idle timeout, and the declared format
 * ('sniff' when the type leaves it to the bytes). `subject` names the body in messages ("checkpoint", "shard").
 */
export function openBody(
  req: BodyRequest,
  limits: IngestLimits,
  subject: string,
): { body: AsyncIterable<Uint8Array>; declared: CheckpointFormat | 'sniff' } {
  if (req.contentLength !== undefined && req.contentLength > limits.maxCheckpointBytes) {
    throw new AppError(
      'body_too_large',
      `${subject} body of ${req.contentLength} bytes exceeds the limit of ${limits.maxCheckpointBytes}`,
      { contentLength: req.contentLength, limit: limits.maxCheckpointBytes },
    );
  }
  const declared = formatFromContentType(req.contentType);
  if (declared === null) {
    throw new AppError('unsupported_media_type', `content type '${req.contentType}' is not a checkpoint format`, {
      supported: [...Object.values(MEDIA_TYPES), OCTET_STREAM],
    });
  }
  return { body: readBody(req.body, limits.maxCheckpointBytes, limits.uploadIdleMs), declared };
}

/**
 * The body's format: the declared one, or sniffed from its first bytes (415 when neither format matches;
 * `subject` names it in the message). `rest` is the whole body again, the peeked bytes included.
 */
export async function resolveFormat(
  body: AsyncIterable<Uint8Array>,
  declared: CheckpointFormat | 'sniff',
  subject: string,
): Promise<{ format: CheckpointFormat; rest: AsyncIterable<Uint8Array> }> {
  const { head, rest } = await peek(body, SNIFF_BYTES);
  const format = declared === 'sniff' ? sniffFormat(head) : declared;
  if (format === null) {
    throw new AppError(
      'unsupported_media_type',
      `${subject} is neither safetensors nor a trajgate native checkpoint; send it with its own content type`,
    );
  }
  return { format, rest };
}

/**
 * Streams `body` through the ingest pipeline into `writer` and checks it against the declared SHA-256. On
 * any failure the staged write is aborted (a failed abort is logged: the start-up collector removes what is
 * left) and the failure rethrown. The writer is left for the caller to commit.
 */
export async function streamToStaged(
  body: AsyncIterable<Uint8Array>,
  writer: BlobWriter,
  start: BodyAnalysisStart,
  declaredSha: string | undefined,
  pipeline: PipelineOptions,
  logger: Logger,
): Promise<PipelineOutcome> {
  try {
    const outcome = await runIngestPipeline(body, writer, start, pipeline);
    checkDeclaredSha(declaredSha, outcome.sha256);
    return outcome;
  } catch (err) {
    await writer.abort().catch((e: unknown) => {
      logger.warn({ err: e }, 'could not abort a staged blob write; the start-up collector will');
    });
    throw err;
  }
}

/** 400 checksum_mismatch when the client declared a SHA-256 and the body hashes to another. */
export function checkDeclaredSha(declared: string | undefined, actual: string): void {
  if (declared !== undefined && declared !== actual) {
    throw new AppError('checksum_mismatch', `body SHA-256 is ${actual}, the ${SHA256_HEADER} header says ${declared}`, {
      declared,
      actual,
    });
  }
}

/** Reads a body through SHA-256 only (a step already stored: compared, not written). */
export async function hashBody(body: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of body) hash.update(chunk);
  return hash.digest('hex');
}

/** Sortable by creation time (base36 milliseconds) and unique (random suffix). */
export function newUploadId(): string {
  return `${Date.now().toString(36)}${randomBytes(6).toString('hex')}`;
}
