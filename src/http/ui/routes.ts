import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Router, type Response } from 'express';
import { parseRunId } from '../ids.js';

/**
 * The run pages: `GET /ui/` (runs) and `GET /ui/runs/{run}`. They are static HTML, JS and CSS, served without
 * a token; in the browser they read the /v1 API with the token the user gives them (kept in the tab's
 * session storage), so they show nothing the token cannot read. The assets sit next to this module (`npm
 * run build` copies them into dist/) and uPlot comes from its package: nothing is fetched from elsewhere.
 */

interface Asset {
  body: Buffer;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Served under /ui/assets/ by name; the HTML pages are served by their routes. */
const ASSET_FILES = ['ui.css', 'api.js', 'charts.js', 'run.js', 'runs.js'];

// Scripts and styles from this origin only; API calls to this origin only; blob: URLs for downloads.
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};

function load(url: URL | string, name: string): Asset {
  const ext = name.slice(name.lastIndexOf('.'));
  return { body: readFileSync(url), type: TYPES[ext] };
}

/** Every file the pages need, read once. */
export function loadUiAssets(): Map<string, Asset> {
  const here = (name: string) => new URL(`./assets/${name}`, import.meta.url);
  const require = createRequire(import.meta.url);
  const assets = new Map<string, Asset>();
  for (const name of ['index.html', 'run.html', ...ASSET_FILES]) assets.set(name, load(here(name), name));
  assets.set('uplot.js', load(require.resolve('uplot/dist/uPlot.iife.min.js'), 'uplot.js'));
  assets.set('uplot.css', load(require.resolve('uplot/dist/uPlot.min.css'), 'uplot.css'));
  return assets;
}

function send(res: Response, asset: Asset): void {
  res.set(SECURITY_HEADERS).type(asset.type).send(asset.body);
}

export function uiRoutes(): Router {
  const assets = loadUiAssets();
  const router = Router({ strict: true });
  router.get('/ui', (_req, res) => res.redirect(301, '/ui/'));
  router.get('/ui/', (_req, res) => send(res, assets.get('index.html')!));
  router.get('/ui/runs/:run', (req, res) => {
    parseRunId(req.params.run);
    send(res, assets.get('run.html')!);
  });
  router.get('/ui/assets/:name', (req, res, next) => {
    const asset = assets.get(req.params.name);
    if (asset && !req.params.name.endsWith('.html')) send(res, asset);
    else next();
  });
  return router;
}
