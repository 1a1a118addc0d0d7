/**
 * The run page's weight and time to first chart for a large run: a gateway on embedded defaults with access
 * control on, a synthetic run of N checkpoints and M metric points sent through the SDK, then the page
 * loaded in Debian's headless chromium several times, each in a fresh tab with the token in its session
 * storage. Prints the bytes of HTML+JS+CSS the page loads (as served, and what gzip would make of them: the
 * gateway does not compress), the bytes of API answers it reads and its slowest requests, and per load the
 * page-time marks: the first chart drawn (each chart is drawn as soon as its data is in), all charts drawn.
 *
 * Loads alternate between the metric page sizes of --page-sizes (the page's `?metricsPage=`), so their
 * ratio is measured under the same load of the machine.
 *
 *   npx tsx scripts/bench-ui.ts [--checkpoints 1000] [--points 100000] [--loads 5] [--page-sizes 20000,100000]
 */
import { gzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { machineLine, quantile } from './lib/bench-env.js';
import { startEmbeddedGateway } from './lib/embedded-gateway.js';
import { launchChromium, sendSyntheticRun } from './lib/ui-run.js';

const { values } = parseArgs({
  options: {
    checkpoints: { type: 'string', default: '1000' },
    points: { type: 'string', default: '100000' },
    loads: { type: 'string', default: '5' },
    'page-sizes': { type: 'string', default: '20000,100000' },
  },
});
const checkpoints = Number(values.checkpoints);
const points = Number(values.points);
const loads = Number(values.loads);
const pageSizes = values['page-sizes'].split(',').map(Number);
if (!Number.isInteger(points / checkpoints)) throw new Error('--points must be a multiple of --checkpoints');

const RUN = 'bench-ui';

interface Load {
  assets: Map<string, Buffer>;
  apiBytes: number;
  apiRequests: number;
  /** Milliseconds from sending each API request to the end of its answer, by path. */
  apiMs: Map<string, number>;
  marks: Record<string, number>;
  pageSize: number;
}

async function main(): Promise<void> {
  console.log(machineLine());
  const gateway = await startEmbeddedGateway('bench-ui', [RUN]);
  const browser = await launchChromium();
  try {
    const t0 = performance.now();
    await sendSyntheticRun(
      gateway.client,
      RUN,
      { steps: points, checkpointEvery: points / checkpoints, evalEvery: 1000, params: 256, seed: 1 },
      (step) => {
        if (step % (points / 10) === 0) console.error(`  sent ${step} of ${points} steps`);
      },
    );
    const summary = await gateway.client.getRun(RUN);
    console.log(
      `run: ${summary.checkpoints.count} checkpoints (${summary.checkpoints.kept} kept), ${points} metric points, ` +
        `sent in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    const results: Load[] = [];
    for (let i = 0; i < loads * pageSizes.length; i++) {
      const pageSize = pageSizes[i % pageSizes.length];
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      await context.addInitScript({
        content: `sessionStorage.setItem('trajgate.token', ${JSON.stringify(gateway.writer.token)})`,
      });
      const page = await context.newPage();
      const load: Load = { assets: new Map(), apiBytes: 0, apiRequests: 0, apiMs: new Map(), marks: {}, pageSize };
      const bodies: Promise<void>[] = [];
      page.on('response', (res) => {
        const type = res.request().resourceType();
        bodies.push(
          res.body().then(
            (body) => {
              if (type === 'fetch') {
                load.apiBytes += body.byteLength;
                load.apiRequests++;
                const timing = res.request().timing();
                load.apiMs.set(new URL(res.url()).pathname, timing.responseEnd - timing.requestStart);
              } else if (['document', 'script', 'stylesheet'].includes(type)) {
                load.assets.set(new URL(res.url()).pathname, body);
              }
            },
            () => undefined,
          ),
        );
      });
      await page.goto(`${gateway.url}/ui/runs/${RUN}?metricsPage=${pageSize}`);
      // Functions given to waitForFunction run in the page (the page's CSP refuses string predicates).
      await page.waitForFunction(() => performance.getEntriesByName('trajgate:charts').length > 0, null, {
        timeout: 300_000,
      });
      load.marks = await page.evaluate(() =>
        Object.fromEntries(
          ['trajgate:first-chart', 'trajgate:charts'].map((m) => [
            m.slice('trajgate:'.length),
            performance.getEntriesByName(m)[0].startTime,
          ]),
        ),
      );
      await Promise.all(bodies);
      results.push(load);
      await context.close();
      const slowest = [...load.apiMs]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([p, ms]) => `${p.replace(`/v1/runs/${RUN}`, '…')} ${ms.toFixed(0)} ms`);
      console.log(
        `load ${i + 1} (${pageSize} points a page): first chart ${load.marks['first-chart'].toFixed(0)} ms, ` +
          `all charts ${load.marks.charts.toFixed(0)} ms (page time from navigation); ` +
          `API: ${load.apiRequests} requests, ${(load.apiBytes / 1e6).toFixed(2)} MB, slowest ${slowest.join(', ')}`,
      );
    }

    const assets = results[0].assets;
    const raw = [...assets.values()].reduce((s, b) => s + b.byteLength, 0);
    const gz = [...assets.values()].reduce((s, b) => s + gzipSync(b).byteLength, 0);
    console.log(
      `page weight (HTML+JS+CSS): ${raw} bytes in ${assets.size} files as served, ${gz} bytes gzipped ` +
        `(${[...assets].map(([p, b]) => `${p.replace('/ui/assets/', '')} ${b.byteLength}`).join(', ')})`,
    );
    const median = (size: number, key: string) =>
      quantile(
        results
          .filter((r) => r.pageSize === size)
          .map((r) => r.marks[key])
          .sort((a, b) => a - b),
        0.5,
      );
    for (const size of pageSizes) {
      console.log(
        `median over ${loads} loads at ${size} points a page: first chart ${median(size, 'first-chart').toFixed(0)} ms, ` +
          `all charts ${median(size, 'charts').toFixed(0)} ms`,
      );
    }
    if (pageSizes.length === 2) {
      const [a, b] = pageSizes;
      const ratio = (key: string) => (median(a, key) / median(b, key)).toFixed(2);
      console.log(`${a} vs ${b} points a page: first chart ×${ratio('first-chart')}, all charts ×${ratio('charts')}`);
    }
  } finally {
    await browser.close();
    await gateway.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
