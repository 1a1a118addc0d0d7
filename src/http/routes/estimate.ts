import { Router } from 'express';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';

export function estimateRoutes(ctx: AppContext): Router {
  const router = Router();

  router.get('/v1/runs/:run/estimate', async (req, res) => {
    res.json(await ctx.estimates.current(parseRunId(req.params.run)));
  });

  router.get('/v1/runs/:run/estimate/history', async (req, res) => {
    res.json({ items: await ctx.estimates.history(parseRunId(req.params.run)) });
  });

  return router;
}
