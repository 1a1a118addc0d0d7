import express, { Router } from 'express';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import type { MetricPointPage } from '../../model/records.js';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { batchReader, MSGPACK_TYPES, readPoints } from '../metric-batch/read-points.js';
import { PointBudget } from '../rate-limit.js';
import { parseInput } from '../validate.js';

/** The largest page of a run's metric series. */
const MAX_SERIES_LIMIT = 100_000;

/** A position in the metric series as the run service takes and gives it: the last point's step and arrival. */
interface MetricCursor {
  step: number;
  seq: number;
}

/**
 * The `next`/`after` cursor of the metric series: base64url of `<step>.<seq>`. Opaque to clients
 * (docs/api.md); only the canonical encoding of two safe integers is accepted.
 */
function encodeMetricCursor(cursor: MetricCursor): string {
  return Buffer.from(`${cursor.step}.${cursor.seq}`).toString('base64url');
}

const CURSOR_TEXT = /^(0|[1-9]\d{0,15})\.(0|[1-9]\d{0,15})$/;

function decodeMetricCursor(text: string): MetricCursor | null {
  if (!/^[A-Za-z0-9_-]{1,48}$/.test(text)) return null;
  const match = CURSOR_TEXT.exec(Buffer.from(text, 'base64url').toString('latin1'));
  if (!match) return null;
  const cursor = { step: Number(match[1]), seq: Number(match[2]) };
  if (!Number.isSafeInteger(cursor.step) || !Number.isSafeInteger(cursor.seq)) return null;
  return encodeMetricCursor(cursor) === text ? cursor : null;
}

const metricCursor = z.string().transform((text, ctx) => {
  const cursor = decodeMetricCursor(text);
  if (cursor) return cursor;
  ctx.issues.push({ code: 'custom', input: text, message: "must be a page's `next`, passed back unchanged" });
  return z.NEVER;
});

const SeriesQuery = z
  .object({
    fromStep: z.coerce.number().int().nonnegative().optional(),
    toStep: z.coerce.number().int().nonnegative().optional(),
    limit: z.coerce.number().int().min(1).max(MAX_SERIES_LIMIT).default(10_000),
    /** Only points after this cursor: the previous page's `next`. */
    after: metricCursor.optional(),
  })
  .strict();

const IDEMPOTENCY_HEADER = 'idempotency-key';
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{8,128}$/;

/** A batch's Idempotency-Key: a retry with the same key stores the batch once. */
function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) {
    throw new AppError('invalid_request', 'Idempotency-Key must be 8-128 characters from [A-Za-z0-9._:-] (a UUID is)');
  }
  return header;
}

export function metricRoutes(ctx: AppContext): Router {
  const router = Router();
  const { limits } = ctx.config;
  const body = express.raw({ limit: limits.maxJsonBytes, type: ['application/json', ...MSGPACK_TYPES] });
  const perMinute = new PointBudget(
    limits.maxPointsPerMinute,
    60,
    'metric points per run per minute',
    'TRAJGATE_MAX_POINTS_PER_MINUTE',
  );

  router.post('/v1/runs/:run/metrics', need('writer'), body, async (req, res) => {
    const run = parseRunId(req.params.run);
    const key = idempotencyKey(req.get(IDEMPOTENCY_HEADER));
    const points = await readPoints(batchReader(req, limits), limits);
    await perMinute.take(run, points.length, res);
    let outcome: { accepted: number; replayed: boolean };
    try {
      outcome = await ctx.runs.appendMetrics(run, points, callerOf(res), key);
    } catch (err) {
      await perMinute.giveBack(run, points.length);
      throw err;
    }
    if (outcome.replayed) {
      await perMinute.giveBack(run, points.length);
      res.setHeader('Idempotency-Replayed', 'true');
    }
    res.json({ accepted: outcome.accepted });
  });

  router.get('/v1/runs/:run/metrics', need('reader'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const query = parseInput(SeriesQuery, req.query, 'query');
    const { items, next } = await ctx.runs.listMetrics(run, query);
    const page: MetricPointPage = { items, next: next && encodeMetricCursor(next) };
    res.json(page);
  });

  return router;
}
