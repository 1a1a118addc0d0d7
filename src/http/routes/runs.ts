import { Router } from 'express';
import { z } from 'zod';
import { RunInput } from '../../model/records.js';
import type { AppContext } from '../context.js';
import { jsonBody } from '../json-body.js';
import { parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().optional(),
});

export function runRoutes(ctx: AppContext): Router {
  const router = Router();
  const json = jsonBody(ctx.config.limits.maxJsonBytes);

  router.put('/v1/runs/:run', json, async (req, res) => {
    const id = parseRunId(req.params.run);
    const input = parseInput(RunInput, req.body ?? {}, 'run');
    const { run, created } = await ctx.runs.putRun(id, input);
    res.status(created ? 201 : 200).json(run);
  });

  router.get('/v1/runs', async (req, res) => {
    const query = parseInput(ListQuery, req.query, 'query');
    const items = await ctx.runs.listRuns(query);
    const next = items.length === query.limit ? items[items.length - 1].id : null;
    res.json({ items, next });
  });

  router.get('/v1/runs/:run', async (req, res) => {
    res.json(await ctx.runs.summary(parseRunId(req.params.run)));
  });

  return router;
}
