import { Router } from 'express';
import { z } from 'zod';
import { errors } from '../../errors.js';
import { analyseRun } from '../../trajectory/run-analysis.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

const TrajectoryQuery = z
  .object({
    phases: z.coerce.number().int().min(1).max(10).default(3),
    by: z.enum(['auto', 'fraction', 'dynamics']).default('auto'),
    window: z.coerce.number().int().min(3).max(100).default(8),
  })
  .strict();

export function trajectoryRoutes(ctx: AppContext): Router {
  const router = Router();

  router.get('/v1/runs/:run/trajectory', async (req, res) => {
    const id = parseRunId(req.params.run);
    const query = parseInput(TrajectoryQuery, req.query, 'query');
    const run = await ctx.catalog.getRun(id);
    if (!run) throw errors.runNotFound(id);
    if (query.by === 'fraction' && !run.plannedSteps) {
      throw errors.invalidRequest(`phases by fraction need the run's plannedSteps; set it with PUT /v1/runs/${id}`);
    }
    const [records, losses] = await Promise.all([
      ctx.catalog.listCheckpoints(id),
      ctx.catalog.metricAtCheckpoints(id, 'trainLoss', 'mean'),
    ]);
    const lossByStep = new Map(losses.map((l) => [l.step, l.value]));
    const checkpoints = records.flatMap((c) => (c.indicators ? [{ step: c.step, indicators: c.indicators }] : []));
    const trainLoss = checkpoints.map((c) => lossByStep.get(c.step) ?? null);
    res.json(
      analyseRun({
        checkpoints,
        trainLoss,
        plannedSteps: run.plannedSteps,
        phaseCount: query.phases,
        phasesBy: query.by,
        changeWindow: query.window,
      }),
    );
  });

  return router;
}
