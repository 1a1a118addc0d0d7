import { Router } from 'express';
import { need } from '../access.js';
import type { AppContext } from '../context.js';

/** GET /metrics: the gateway's counters in Prometheus text format, for readers (a scrape token). */
export function telemetryRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/metrics', need('reader'), async (_req, res) => {
    const { contentType, body } = await ctx.telemetry.scrape();
    res.setHeader('Content-Type', contentType);
    res.send(body);
  });
  return router;
}
