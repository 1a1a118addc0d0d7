import { Router } from 'express';
import { z } from 'zod';
import { RunInput } from '../../model/records.js';
import { checkRunInput } from '../../model/limits.js';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { jsonBody } from '../json-body.js';
import { parseRunId } from '../ids.js';
import { refuseOverLimit } from '../rate-limit.js';
import { parseInput } from '../validate.js';

const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().optional(),
});

export function runRoutes(ctx: AppContext): Router {
  const router = Router();
  const json = jsonBody(ctx.config.limits.maxJsonBytes);

  router.put('/v1/runs/:run', need('writer'), json, async (req, res) => {
    const id = parseRunId(req.params.run);
    const input = parseInput(RunInput, req.body ?? {}, 'run');
    refuseOverLimit(checkRunInput(input, ctx.config.limits));
    const { run, created } = await ctx.runs.putRun(id, input, callerOf(res));
    res.status(created ? 201 : 200).json(run);
  });

  router.get('/v1/runs', need('reader'), async (req, res) => {
    const query = parseInput(ListQuery, req.query, 'query');
    const principal = res.locals.principal;
    const items = await ctx.runs.listRuns(query, principal.role === 'admin' ? ['*'] : principal.runs);
    const next = items.length === query.limit ? items[items.length - 1].id : null;
    res.json({ items, next });
  });

  router.get('/v1/runs/:run', need('reader'), async (req, res) => {
    res.json(await ctx.runs.summary(parseRunId(req.params.run)));
  });

  return router;
}
