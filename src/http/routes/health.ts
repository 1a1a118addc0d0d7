import { Router } from 'express';
import type { AppContext } from '../context.js';

export function healthRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const [catalog, storage] = await Promise.all([check(() => ctx.catalog.ping()), check(() => ctx.blobs.ping())]);
    const ready = catalog === 'ok' && storage === 'ok';
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', checks: { catalog, storage } });
  });
  return router;
}

async function check(probe: () => Promise<void>): Promise<string> {
  try {
    await probe();
    return 'ok';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
