import { sendBlob } from '../send-blob.js';
import { Router, type Response } from 'express';
import { z } from 'zod';
import type { CheckpointPage, CheckpointRecord } from '../../model/records.js';
import { CheckpointStatus } from '../../model/records.js';
import { AppError } from '../../errors.js';
import type { DecisionSummary, RetentionDecision } from '@trajgate/sdk/contract';
import type { ByteRange } from '../../storage/blob-store.js';
import { FILE_EXTENSIONS, MEDIA_TYPES, SHA256_HEADER } from '@trajgate/sdk/wire/formats';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId, parseStep } from '../ids.js';
import { resolveRange } from '../range.js';
import { parseInput } from '../validate.js';

/** A step as query text: what `parseStep` accepts for a path step. */
const stepText = z
  .string()
  .regex(/^(0|[1-9]\d{0,15})$/, 'must be a step: a non-negative integer')
  .transform(Number)
  .pipe(z.number().max(Number.MAX_SAFE_INTEGER));

const ListQuery = z.strictObject({
  status: CheckpointStatus.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  /** Only checkpoints with a greater step: the previous page's `next`. */
  after: stepText.optional(),
  include: z.enum(['tensors']).optional(),
});
const UploadQuery = z.object({ pin: z.enum(['true', 'false']).optional() }).strict();
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

export function checkpointRoutes(ctx: AppContext): Router {
  const router = Router();

  router.put('/v1/runs/:run/checkpoints/:step', need('writer'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const step = parseStep(req.params.step);
    const { pin } = parseInput(UploadQuery, req.query, 'query');
    const outcome = await ctx.runs.upload({
      caller: callerOf(res),
      pin: pin === 'true',
      run,
      step,
      body: req,
      contentType: req.headers['content-type'],
      contentLength: contentLengthOf(req.headers['content-length']),
      sha256: declaredSha(req.get(SHA256_HEADER)),
    });
    res
      .status(outcome.status === 'created' ? 201 : 200)
      .json({ ...outcome.checkpoint, decision: outcome.decision && summariseDecision(outcome.decision) });
  });

  for (const action of ['pin', 'unpin', 'restore'] as const) {
    router.post(`/v1/runs/:run/checkpoints/:step/${action}`, need('operator'), async (req, res) => {
      const run = parseRunId(req.params.run);
      const step = parseStep(req.params.step);
      const checkpoint =
        action === 'restore'
          ? await ctx.runs.restore(run, step, callerOf(res))
          : await ctx.runs.setPinned(run, step, action === 'pin', callerOf(res));
      res.json(checkpoint);
    });
  }

  router.get('/v1/runs/:run/checkpoints', need('reader'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const { status, limit, after, include } = parseInput(ListQuery, req.query, 'query');
    const items = await ctx.runs.listCheckpoints(run, {
      status,
      afterStep: after,
      limit,
      tensors: include === 'tensors',
    });
    const page: CheckpointPage = { items, next: items.length === limit ? items[items.length - 1].step : null };
    res.json(page);
  });

  router.get('/v1/runs/:run/checkpoints/:step', need('reader'), async (req, res) => {
    res.json(await ctx.runs.checkpoint(parseRunId(req.params.run), parseStep(req.params.step)));
  });

  router.get('/v1/runs/:run/checkpoints/:step/content', need('reader'), async (req, res) => {
    const checkpoint = await ctx.runs.downloadable(parseRunId(req.params.run), parseStep(req.params.step));
    const etag = `"${checkpoint.sha256}"`;
    const ifRange = req.get('if-range');
    const range =
      ifRange === undefined || ifRange === etag ? requestedRange(req.get('range'), checkpoint.bytes, res) : null;
    setContentHeaders(res, checkpoint, etag);
    if (req.get('if-none-match') === etag) {
      res.status(304).end();
      return;
    }
    await sendBlob(req, res, await ctx.runs.openContent(checkpoint, range ?? undefined), checkpoint.bytes, range);
  });

  return router;
}

/** What an upload's retention decision did, for the upload response. */
export function summariseDecision(decision: RetentionDecision): DecisionSummary {
  return {
    kept: decision.checkpoints.filter((c) => c.keep).map((c) => c.step),
    discarded: decision.checkpoints.filter((c) => !c.keep).map((c) => ({ step: c.step, reasons: c.reasons })),
    totals: decision.totals,
  };
}

/** The range to send; a 416 carries `Content-Range: bytes *\/size` as RFC 9110 asks. */
export function requestedRange(header: string | undefined, size: number, res: Response): ByteRange | null {
  try {
    return resolveRange(header, size);
  } catch (err) {
    res.setHeader('Content-Range', `bytes */${size}`);
    throw err;
  }
}

function setContentHeaders(res: Response, checkpoint: CheckpointRecord, etag: string): void {
  res.setHeader('Content-Type', MEDIA_TYPES[checkpoint.format]);
  res.setHeader('ETag', etag);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader(
    'Content-Disposition',
    `attachment; filename="${checkpoint.run}-${checkpoint.step}.${FILE_EXTENSIONS[checkpoint.format]}"`,
  );
}

export function contentLengthOf(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export function declaredSha(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = header.trim().toLowerCase();
  if (!SHA256_PATTERN.test(value)) {
    throw new AppError('invalid_checksum_header', `${SHA256_HEADER} must be 64 hex digits (the body's SHA-256)`);
  }
  return value;
}
