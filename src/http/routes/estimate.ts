import { Router } from 'express';
import { z } from 'zod';
import { need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

const EstimateQuery = z.object({ calibrateUntilStep: z.coerce.number().int().nonnegative().optional() }).strict();

export function estimateRoutes(ctx: AppContext): Router {
  const router = Router();

  router.get('/v1/runs/:run/estimate', need('reader'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const { calibrateUntilStep } = parseInput(EstimateQuery, req.query, 'query');
    res.json(await ctx.runs.estimate(run, calibrateUntilStep));
  });

  router.get('/v1/runs/:run/estimate/history', need('reader'), async (req, res) => {
    res.json({ items: await ctx.runs.estimateHistory(parseRunId(req.params.run)) });
  });

  return router;
}
