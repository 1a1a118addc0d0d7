import { type RequestHandler, Router, type Response } from 'express';
import { AppError } from '../../errors.js';
import { SHA256_HEADER } from '@trajgate/sdk/wire/formats';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId, parseStep } from '../ids.js';
import type { SessionState } from '../../runs/resumable-uploads.js';
import { declaredSha } from './checkpoints.js';

const TUS_VERSION = '1.0.0';
const TUS_EXTENSIONS = 'creation,termination,expiration';
const PATCH_TYPE = 'application/offset+octet-stream';
/** Set on the PATCH that completed the upload: `created` or `unchanged`, as a one-request upload's 201/200. */
export const CHECKPOINT_STATUS_HEADER = 'x-trajgate-checkpoint-status';

const COLLECTION = '/v1/runs/:run/checkpoints/:step/uploads';
const SESSION = `${COLLECTION}/:id`;
const ID_PATTERN = /^[0-9a-z]{8,64}$/;

/**
 * Resumable uploads with the tus 1.0 protocol (core, creation, termination, expiration; docs/api.md). The
 * bytes go through the same ingest as PUT …/checkpoints/{step}; the PATCH that brings the last byte commits
 * the checkpoint and answers like a one-request upload would (409 `checkpoint_conflict` for other bytes).
 */
export function uploadRoutes(ctx: AppContext): Router {
  const router = Router();
  const uploads = ctx.uploads;
  const maxSize = ctx.config.limits.maxCheckpointBytes;

  router.use([COLLECTION, SESSION], (_req, res, next) => {
    res.setHeader('Tus-Resumable', TUS_VERSION);
    next();
  });

  router.options(COLLECTION, need('writer'), (_req, res) => {
    res.setHeader('Tus-Version', TUS_VERSION);
    res.setHeader('Tus-Extension', TUS_EXTENSIONS);
    res.setHeader('Tus-Max-Size', String(maxSize));
    res.status(204).end();
  });

  router.post(COLLECTION, need('writer'), tusVersion, async (req, res) => {
    const run = parseRunId(req.params.run);
    const step = parseStep(req.params.step);
    if (req.get('upload-defer-length') !== undefined) {
      throw new AppError('invalid_request', 'Upload-Defer-Length is not supported: send Upload-Length');
    }
    const length = uploadLength(req.get('upload-length'));
    if (length > maxSize) {
      throw new AppError('body_too_large', `Upload-Length ${length} exceeds the limit of ${maxSize} bytes`, {
        contentLength: length,
        limit: maxSize,
      });
    }
    const metadata = parseMetadata(req.get('upload-metadata'));
    const sha256 = declaredSha(req.get(SHA256_HEADER) ?? metadata.sha256);
    const pin = metadata.pin ?? (typeof req.query.pin === 'string' ? req.query.pin : 'false');
    if (pin !== 'true' && pin !== 'false') throw new AppError('invalid_request', "pin must be 'true' or 'false'");
    const session = await uploads.create({
      run,
      step,
      length,
      contentType: metadata.filetype,
      sha256,
      pin: pin === 'true',
    });
    sessionHeaders(res, session);
    res.setHeader('Location', `/v1/runs/${encodeURIComponent(run)}/checkpoints/${step}/uploads/${session.id}`);
    res.status(201).end();
  });

  router.head(SESSION, need('writer'), tusVersion, async (req, res) => {
    const { run, step, id } = target(req.params);
    const session = await uploads.state(run, step, id);
    sessionHeaders(res, session);
    res.setHeader('Upload-Length', String(session.length));
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).end();
  });

  router.patch(SESSION, need('writer'), tusVersion, async (req, res) => {
    const { run, step, id } = target(req.params);
    const type = (req.get('content-type') ?? '').split(';', 1)[0].trim().toLowerCase();
    if (type !== PATCH_TYPE) {
      throw new AppError('unsupported_media_type', `a PATCH body must be sent as ${PATCH_TYPE}`, {
        supported: [PATCH_TYPE],
      });
    }
    const offset = uploadOffset(req.get('upload-offset'));
    const result = await uploads.append(run, step, id, offset, req, callerOf(res)).catch((err: unknown) => {
      // A tus client reads the offset to resume from in Upload-Offset.
      if (err instanceof AppError && err.code === 'upload_offset_mismatch') {
        res.setHeader('Upload-Offset', String(err.details?.uploadOffset));
      }
      throw err;
    });
    sessionHeaders(res, result);
    if (result.outcome) {
      res.setHeader(CHECKPOINT_STATUS_HEADER, result.outcome.status);
      res.setHeader(SHA256_HEADER, result.outcome.checkpoint.sha256);
    }
    res.status(204).end();
  });

  router.delete(SESSION, need('writer'), tusVersion, async (req, res) => {
    const { run, step, id } = target(req.params);
    await uploads.terminate(run, step, id);
    res.status(204).end();
  });

  return router;
}

/** Every request but OPTIONS carries the protocol version it speaks; only 1.0.0 is served (412 otherwise). */
const tusVersion: RequestHandler = (req, res, next) => {
  const version = req.get('tus-resumable');
  if (version !== TUS_VERSION) {
    res.setHeader('Tus-Version', TUS_VERSION);
    throw new AppError(
      'tus_version_unsupported',
      `Tus-Resumable must be ${TUS_VERSION}${version === undefined ? ' (the header is missing)' : `, not '${version}'`}`,
      { supported: [TUS_VERSION] },
    );
  }
  next();
};

function target(params: Record<string, string>): { run: string; step: number; id: string } {
  const run = parseRunId(params.run);
  const step = parseStep(params.step);
  if (!ID_PATTERN.test(params.id)) {
    throw new AppError('upload_not_found', `no upload ${params.id} for step ${step} of run '${run}'`, { run, step });
  }
  return { run, step, id: params.id };
}

function sessionHeaders(res: Response, session: SessionState): void {
  res.setHeader('Upload-Offset', String(session.offset));
  res.setHeader('Upload-Expires', new Date(session.expiresAt).toUTCString());
}

function uploadLength(header: string | undefined): number {
  if (header === undefined)
    throw new AppError('invalid_request', 'Upload-Length is required (the whole body in bytes)');
  const n = /^\d{1,16}$/.test(header.trim()) ? Number(header) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new AppError('invalid_request', `Upload-Length must be a positive integer, not '${header}'`);
  }
  return n;
}

function uploadOffset(header: string | undefined): number {
  const n = header !== undefined && /^\d{1,16}$/.test(header.trim()) ? Number(header) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new AppError('invalid_request', `Upload-Offset must be a non-negative integer, not '${header ?? ''}'`);
  }
  return n;
}

/** Upload-Metadata: comma-separated `key base64value` pairs (the value may be absent). */
function parseMetadata(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (header === undefined || header.trim() === '') return out;
  for (const pair of header.split(',')) {
    const [key, value, extra] = pair.trim().split(' ');
    if (!key || extra !== undefined || (value !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(value))) {
      throw new AppError('invalid_request', `Upload-Metadata pair '${pair.trim()}' is not 'key base64value'`);
    }
    out[key] = value === undefined ? '' : Buffer.from(value, 'base64').toString('utf8');
  }
  return out;
}
