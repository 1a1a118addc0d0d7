import { Router } from 'express';
import { z } from 'zod';
import { need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

/** Without `phases`/`by` the run's own segmentation (its policy's phase settings) is served. */
const TrajectoryQuery = z
  .object({
    phases: z.coerce.number().int().min(1).max(10).optional(),
    by: z.enum(['auto', 'fraction', 'dynamics']).optional(),
    window: z.coerce.number().int().min(3).max(100).default(8),
  })
  .strict();

export function trajectoryRoutes(ctx: AppContext): Router {
  const router = Router();

  router.get('/v1/runs/:run/trajectory', need('reader'), async (req, res) => {
    const run = parseRunId(req.params.run);
    res.json(await ctx.runs.trajectory(run, parseInput(TrajectoryQuery, req.query, 'query')));
  });

  return router;
}
