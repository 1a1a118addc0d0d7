import { Router } from 'express';
import { z } from 'zod';
import { allow, need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

const AuditQuery = z.strictObject({
  run: z.string().optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  after: z.coerce.number().int().nonnegative().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export function auditRoutes(ctx: AppContext): Router {
  const router = Router();

  /** Admins read every entry; operators the entries about runs in their scope. */
  router.get('/v1/audit', need('operator'), async (req, res) => {
    const query = parseInput(AuditQuery, req.query, 'query');
    const run = query.run === undefined ? undefined : parseRunId(query.run);
    const reader = allow(res, 'operator', run === undefined ? {} : { run });
    const since = query.since === undefined ? undefined : new Date(query.since).toISOString();
    const items = await ctx.audit.list({ limit: query.limit, after: query.after, since, run }, reader);
    res.json({ items, next: items.length === query.limit ? items[items.length - 1].id : null });
  });

  return router;
}
