import express, { Router } from 'express';
import { unpack } from 'msgpackr';
import { z } from 'zod';
import { MetricPoint } from '../../model/records.js';
import { AppError } from '../../errors.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

export const MAX_POINTS_PER_BATCH = 100_000;

/** A batch is `{points: [...]}` or a bare array of points, as JSON or msgpack. */
const MetricBatch = z.union([
  z.object({ points: z.array(MetricPoint).max(MAX_POINTS_PER_BATCH) }).strict(),
  z
    .array(MetricPoint)
    .max(MAX_POINTS_PER_BATCH)
    .transform((points) => ({ points })),
]);

const SeriesQuery = z
  .object({
    fromStep: z.coerce.number().int().nonnegative().optional(),
    toStep: z.coerce.number().int().nonnegative().optional(),
    limit: z.coerce.number().int().min(1).max(MAX_POINTS_PER_BATCH).default(10_000),
  })
  .strict();

const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];

export function metricRoutes(ctx: AppContext): Router {
  const router = Router();
  const limit = ctx.config.limits.maxJsonBytes;
  const json = express.json({ limit, strict: true });
  const raw = express.raw({ limit, type: MSGPACK_TYPES });

  router.post('/v1/runs/:run/metrics', json, raw, async (req, res) => {
    const run = parseRunId(req.params.run);
    const { points } = parseInput(
      MetricBatch,
      decodeBatch(req.is(['json', ...MSGPACK_TYPES]), req.body),
      'metric batch',
    );
    res.json({ accepted: await ctx.runs.appendMetrics(run, points) });
  });

  router.get('/v1/runs/:run/metrics', async (req, res) => {
    const run = parseRunId(req.params.run);
    const query = parseInput(SeriesQuery, req.query, 'query');
    res.json({ items: await ctx.runs.listMetrics(run, query) });
  });

  return router;
}

function decodeBatch(matched: string | false | null, body: unknown): unknown {
  if (!matched) {
    throw new AppError('unsupported_media_type', 'send metric batches as application/json or application/msgpack');
  }
  if (matched === 'json') return body;
  try {
    return unpack(body as Buffer);
  } catch (err) {
    throw new AppError('invalid_request', `request body is not valid msgpack: ${(err as Error).message}`);
  }
}
