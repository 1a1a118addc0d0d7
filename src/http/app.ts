import express, { type Express, type Request, type Response } from 'express';
import { ANONYMOUS } from '../auth/principal.js';
import type { AppContext } from './context.js';
import { errorHandler, notFoundHandler } from './error-handler.js';
import { rateLimit } from './rate-limit.js';
import { requestLog } from './request-log.js';
import { authenticate } from './access.js';
import { auditRoutes } from './routes/audit.js';
import { checkpointRoutes } from './routes/checkpoints.js';
import { shardRoutes } from './routes/shards.js';
import { uploadRoutes } from './routes/uploads.js';
import { telemetryRoutes } from './routes/telemetry.js';
import { tokenRoutes } from './routes/tokens.js';
import { estimateRoutes } from './routes/estimate.js';
import { healthRoutes } from './routes/health.js';
import { metricRoutes } from './routes/metrics.js';
import { policyRoutes } from './routes/policies.js';
import { runRoutes } from './routes/runs.js';
import { trajectoryRoutes } from './routes/trajectory.js';
import { uiRoutes } from './ui/routes.js';

/** Builds the Express app without listening, so tests drive it in-process and scripts can inspect it. */
export function createApp(ctx: AppContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestLog(ctx.logger));
  app.use(healthRoutes(ctx));
  app.use(uiRoutes()); // the run pages: static, no token; their data comes from /v1 with the user's token
  app.use(['/v1', '/metrics'], authenticate(ctx.config.auth.mode, ctx.tokens));
  // Per token; without access control everyone is `anonymous`, so per address then.
  const caller = (req: Request, res: Response) =>
    res.locals.principal.id === ANONYMOUS.id ? `ip:${req.ip}` : res.locals.principal.id;
  const { rateLimitRps, rateLimitBurst } = ctx.config.limits;
  app.use(['/v1', '/metrics'], rateLimit({ pointsPerSecond: rateLimitRps, burst: rateLimitBurst }, caller));
  app.use(telemetryRoutes(ctx));
  app.use(tokenRoutes(ctx));
  app.use(auditRoutes(ctx));
  app.use(runRoutes(ctx));
  app.use(checkpointRoutes(ctx));
  app.use(shardRoutes(ctx));
  app.use(uploadRoutes(ctx));
  app.use(metricRoutes(ctx));
  app.use(trajectoryRoutes(ctx));
  app.use(policyRoutes(ctx));
  app.use(estimateRoutes(ctx));
  app.use(notFoundHandler);
  app.use(errorHandler(ctx.logger, ctx.telemetry));
  return app;
}
