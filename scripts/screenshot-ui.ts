/**
 * Regenerates the README's screenshot of the run page (docs/run-page.png): starts a gateway on embedded
 * defaults with access control on, runs `npm run demo` against it (real MNIST training through the SDK),
 * opens the demo run's page in Debian's headless chromium with an operator token, simulates a tighter
 * budget, hovers the marker of a checkpoint kept for a change, and saves the page down to the simulation.
 *
 *   npx tsx scripts/screenshot-ui.ts [--out docs/run-page.png] [--budget 5]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startEmbeddedGateway } from './lib/embedded-gateway.js';
import { launchChromium } from './lib/ui-run.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'docs/run-page.png' },
    budget: { type: 'string', default: '5' },
  },
});
const root = path.resolve(import.meta.dirname, '..');

function runDemo(url: string, token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', '--url', url, '--token', token], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the demo exited with code ${code}`))));
  });
}

async function main(): Promise<void> {
  const gateway = await startEmbeddedGateway('screenshot', ['demo-*']);
  const browser = await launchChromium();
  try {
    // The demo sets its run's policy, an operator's action; the page's simulation needs an operator too.
    const operator = await gateway.admin.createToken({ name: 'screenshot', role: 'operator', runs: ['demo-*'] });
    await runDemo(gateway.url, operator.token);
    const run = (await gateway.admin.listRuns()).find((r) => r.id.startsWith('demo-'));
    if (!run) throw new Error('the demo left no run');
    const checkpoints = await gateway.admin.listCheckpoints(run.id);
    const marked =
      checkpoints.find((c) => c.status === 'kept' && c.classes.includes('change')) ??
      checkpoints.find((c) => c.status === 'kept');

    const context = await browser.newContext({ viewport: { width: 1280, height: 2200 } });
    await context.addInitScript({
      content: `sessionStorage.setItem('trajgate.token', ${JSON.stringify(operator.token)})`,
    });
    const page = await context.newPage();
    page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
    await page.goto(`${gateway.url}/ui/runs/${run.id}`);
    // Functions given to waitForFunction run in the page (the page's CSP refuses string predicates).
    await page.waitForFunction(() => performance.getEntriesByName('trajgate:charts').length > 0, null, {
      timeout: 60_000,
    });
    await page.getByLabel('Most checkpoints kept').fill(values.budget);
    await page.getByRole('button', { name: 'Simulate' }).click();
    await page.locator('#sim-summary').waitFor();
    if (marked) {
      const point = (await page.evaluate(`window.trajgateUi.markerClientPoint('loss', ${marked.step})`)) as {
        x: number;
        y: number;
      } | null;
      if (point) {
        await page.mouse.move(point.x, point.y);
        await page.locator('#tooltip').waitFor({ state: 'visible' });
      }
    }
    const panel = await page.locator('section.panel.two').boundingBox();
    if (!panel) throw new Error('the policy panel is not on the page');
    const out = path.resolve(root, values.out);
    await page.screenshot({
      path: out,
      clip: { x: 0, y: 0, width: 1280, height: Math.ceil(panel.y + panel.height + 16) },
    });
    console.log(`wrote ${path.relative(root, out)}: run ${run.id}, ${checkpoints.length} checkpoints`);
  } finally {
    await browser.close();
    await gateway.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
