import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CreatedToken, TrajgateClient } from '@trajgate/sdk';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, sendSyntheticRun } from '../scripts/lib/ui-run.js';
import { startTestServer } from './helpers/gateway.js';

/*
 * The run pages in a real browser: Debian's chromium driven by playwright-core, against a gateway with access
 * control on and a run this test trains. The screenshot lands in .tmp/test-artifacts/.
 */

const ARTIFACTS = path.resolve(import.meta.dirname, '../.tmp/test-artifacts');
const RUN = 'ui-run';
const OTHER = 'other-run';
const SHAPE = { steps: 400, checkpointEvery: 10, evalEvery: 20, params: 256, seed: 18 };

interface PageCounts {
  loss: Record<string, number>;
  lossMarkers: number;
  change: Record<string, number>;
  changeMarkers: number;
  estimate: Record<string, number>;
}

/** The little of the page's globals the waits read (functions given to waitForFunction run in the page). */
interface PageGlobal {
  trajgateUi?: { ready: boolean; counts(): PageCounts };
  document: {
    getElementById(id: string): { classList: { contains(name: string): boolean }; textContent: string | null } | null;
  };
}

/** In the page: ids of form controls without a label. */
const UNLABELLED_CONTROLS = `[...document.querySelectorAll('input, select, textarea')]
  .filter((e) => !e.labels?.length && !e.getAttribute('aria-label')).map((e) => e.id)`;

/** In the page: the focused element's id and whether it draws a focus outline. */
const FOCUSED = `(() => {
  const style = getComputedStyle(document.activeElement);
  return { id: document.activeElement.id, ring: style.outlineStyle !== 'none' && style.outlineWidth !== '0px' };
})()`;

/** In the page: WCAG contrast ratio of text against its nearest opaque background, for sample elements. */
const CONTRAST = `(() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) ?? []).slice(0, 4).map(Number);
  const channel = (v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (e) => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || c[3] === 1) return c;
    }
    return [255, 255, 255];
  };
  const out = {};
  for (const sel of ['h1', '.note', '#status', '.card p', '.card h2', 'a', '#kept td', 'button', 'label', '.kv dt']) {
    const e = document.querySelector(sel);
    if (!e) continue;
    const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(background(e))];
    out[sel] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return out;
})()`;

describe('run pages in chromium', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let admin: TrajgateClient;
  let operator: CreatedToken;
  let otherReader: CreatedToken;
  let adminToken: string;
  let browser: Browser;
  const pageErrors: string[] = [];

  before(async () => {
    adminToken = randomBytes(32).toString('base64url');
    server = await startTestServer({ TRAJGATE_AUTH: 'tokens', TRAJGATE_ADMIN_TOKEN: adminToken });
    admin = new TrajgateClient({ url: server.url, token: adminToken });
    operator = await admin.createToken({ name: 'ui-operator', role: 'operator', runs: [RUN] });
    otherReader = await admin.createToken({ name: 'ui-other', role: 'reader', runs: ['other-*'] });
    const [, chromium] = await Promise.all([
      (async () => {
        await sendSyntheticRun(admin, RUN, SHAPE);
        await admin.setRunPolicy(RUN, { policy: { budget: { maxCheckpoints: 8 } } });
        await admin.putRun(OTHER, { plannedSteps: 10 });
      })(),
      launchChromium(),
    ]);
    browser = chromium;
    await mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    assert.deepEqual(pageErrors, [], 'no script errors in any page');
    await browser?.close();
    await server?.close();
  });

  /** A fresh tab (its own session storage) on `path`, signed in with `token` through the page's form. */
  async function openWithToken(urlPath: string, token: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(`${urlPath}: ${err.message}`));
    // The gateway's Content-Security-Policy must allow everything the pages load and run.
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) pageErrors.push(`${urlPath}: ${message.text()}`);
    });
    await page.goto(`${server.url}${urlPath}`);
    const field = page.getByLabel('Access token');
    await field.waitFor({ state: 'visible' });
    await field.fill(token);
    await field.press('Enter');
    return page;
  }

  it('serves the pages and assets without a token, the data only with one', async () => {
    for (const [urlPath, type] of [
      ['/ui/', 'text/html'],
      [`/ui/runs/${RUN}`, 'text/html'],
      ['/ui/assets/run.js', 'text/javascript'],
      ['/ui/assets/uplot.js', 'text/javascript'],
      ['/ui/assets/uplot.css', 'text/css'],
    ]) {
      const res = await fetch(`${server.url}${urlPath}`);
      assert.equal(res.status, 200, urlPath);
      assert.match(res.headers.get('content-type') ?? '', new RegExp(`^${type}`), urlPath);
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    }
    const redirect = await fetch(`${server.url}/ui`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/ui/');
    const missing = await fetch(`${server.url}/ui/assets/run.html`);
    assert.equal(missing.status, 404);
    const bad = await fetch(`${server.url}/ui/runs/bad..id`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_run_id');
    assert.equal((await fetch(`${server.url}/v1/runs/${RUN}`)).status, 401);
  });

  it('plots what the API serves, explains a marker, simulates a budget, downloads and follows the run', async () => {
    const started = performance.now();
    const page = await openWithToken(`/ui/runs/${RUN}?poll=1`, operator.token);
    await page.waitForFunction(() => (globalThis as unknown as PageGlobal).trajgateUi?.ready === true, null, {
      timeout: 30_000,
    });
    const firstChartMs = (await page.evaluate(
      "performance.getEntriesByName('trajgate:first-chart')[0]?.startTime",
    )) as number;
    console.log(`run page: charts ready ${Math.round(performance.now() - started)} ms after opening the tab`);
    console.log(`  first chart at ${Math.round(firstChartMs)} ms of page time (token entered by the test)`);

    // The plotted point counts against the API.
    const [metrics, checkpoints, trajectory, history] = await Promise.all([
      admin.listMetrics(RUN),
      admin.listCheckpoints(RUN),
      admin.getTrajectory(RUN),
      admin.getEstimateHistory(RUN),
    ]);
    const counts = (await page.evaluate('window.trajgateUi.counts()')) as PageCounts;
    console.log(`  plotted: ${JSON.stringify(counts)}`);
    const defined = <T>(xs: T[], f: (x: T) => unknown) => xs.filter((x) => f(x) !== undefined && f(x) !== null).length;
    assert.equal(
      counts.loss['training loss'],
      defined(metrics, (p) => p.trainLoss),
    );
    assert.equal(
      counts.loss['validation loss'],
      defined(metrics, (p) => p.valLoss),
    );
    assert.equal(counts.lossMarkers, checkpoints.length);
    assert.equal(counts.changeMarkers, checkpoints.length);
    assert.equal(counts.change['change score'], trajectory.items.length);
    assert.equal(
      counts.change['update norm per step (checkpoints)'],
      defined(trajectory.items, (t) => t.updateNormPerStep),
    );
    assert.equal(
      counts.change['‖Δw‖ logged'],
      defined(metrics, (p) => p.updateNorm),
    );
    assert.equal(
      counts.estimate['estimated gap'],
      defined(history, (h) => h.gap),
    );
    assert.equal(
      counts.estimate['observed gap'],
      defined(history, (h) => h.observedGap),
    );
    assert.ok(counts.estimate['estimated gap'] > 0, 'the synthetic run is calibrated');
    assert.equal(await page.locator('#kept tbody tr').count(), checkpoints.filter((c) => c.status === 'kept').length);

    // Hovering a kept marker, then a discarded one, shows its status, classes and reasons.
    const kept = checkpoints.find((c) => c.status === 'kept' && c.classes.includes('change')) ?? checkpoints[0];
    const discarded = checkpoints.find((c) => c.status === 'discarded');
    assert.ok(kept.status === 'kept' && discarded);
    for (const [chart, cp] of [
      ['loss', kept],
      ['change', kept],
      ['loss', discarded],
    ] as const) {
      const point = (await page.evaluate(`window.trajgateUi.markerClientPoint('${chart}', ${cp.step})`)) as {
        x: number;
        y: number;
      } | null;
      assert.ok(point, `marker of step ${cp.step} on ${chart}`);
      await page.mouse.move(point.x, point.y);
      const tooltip = page.locator('#tooltip');
      await tooltip.waitFor({ state: 'visible' });
      const text = (await tooltip.textContent()) ?? '';
      assert.match(text, new RegExp(`step ${cp.step} · ${cp.status}`));
      for (const reason of cp.reasons) assert.ok(text.includes(reason), `${chart} tooltip of ${cp.step}: ${text}`);
      await page.mouse.move(1, 1);
      await tooltip.waitFor({ state: 'hidden' });
    }

    // A simulation shows what another budget would keep, the same as the API says, and applies nothing.
    const policy = (await admin.getRun(RUN)).policy;
    assert.ok(policy && 'policy' in policy);
    const base = await admin.getPolicy('default');
    const expected = await admin.simulateRetention(RUN, {
      policy: {
        ...base.resolved,
        ...policy.policy,
        budget: { maxCheckpoints: 4, maxBytes: null },
      },
    });
    await page.getByLabel('Most checkpoints kept').fill('4');
    await page.getByRole('button', { name: 'Simulate' }).click();
    const summary = page.locator('#sim-summary');
    await summary.waitFor();
    assert.match(
      (await summary.textContent()) ?? '',
      new RegExp(`would keep ${expected.totals.kept} of ${checkpoints.length}`),
    );
    const simSteps = (await page.locator('#sim-table tbody tr td:first-child').allInnerTexts()).map(Number);
    assert.deepEqual(
      simSteps,
      expected.checkpoints.filter((d) => d.keep).map((d) => d.step),
    );
    const keptAfter = (await admin.listCheckpoints(RUN, 'kept')).map((c) => c.step);
    assert.deepEqual(
      keptAfter,
      checkpoints.filter((c) => c.status === 'kept').map((c) => c.step),
      'a simulation changes nothing',
    );
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-run-page.png'), fullPage: true });

    // A kept checkpoint's download goes with the tab's token and brings the bytes as uploaded.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator(`#kept a[data-step="${kept.step}"]`).click(),
    ]);
    const saved = await download.path();
    assert.equal(
      createHash('sha256')
        .update(await readFile(saved))
        .digest('hex'),
      kept.sha256,
    );
    assert.equal(download.suggestedFilename(), `${RUN}-${kept.step}.tgckpt`);

    // While the run trains, the page follows it (polling every second here).
    const next = SHAPE.steps + SHAPE.checkpointEvery;
    await admin.logMetrics(RUN, [{ step: next, trainLoss: 0.2, lr: 0.001 }]);
    const tensor = { name: 'w', dtype: 'F32' as const, shape: [SHAPE.params], data: new Uint8Array(SHAPE.params * 4) };
    await admin.uploadCheckpoint(RUN, next, [tensor]);
    await page.waitForFunction(
      (n) => (globalThis as unknown as PageGlobal).trajgateUi?.counts().lossMarkers === n,
      checkpoints.length + 1,
      {
        timeout: 15_000,
      },
    );
    const after = (await page.evaluate('window.trajgateUi.counts()')) as PageCounts;
    assert.equal(after.loss['training loss'], counts.loss['training loss'] + 1);
    assert.equal(await page.locator('#sim-result').textContent(), '', 'a new decision clears the old simulation');
    await page.close();
  });

  it('is usable from the keyboard, every control labelled, text at readable contrast', async () => {
    const page = await openWithToken(`/ui/runs/${RUN}`, operator.token);
    await page.waitForFunction(() => (globalThis as unknown as PageGlobal).trajgateUi?.ready === true, null, {
      timeout: 30_000,
    });
    const unlabelled = await page.evaluate(UNLABELLED_CONTROLS);
    assert.deepEqual(unlabelled, []);
    // Tab from the top reaches the simulation's fields and its button, each with a visible focus ring.
    const reached: string[] = [];
    await page.locator('body').focus();
    for (let i = 0; i < 40 && !reached.includes('simulate-button'); i++) {
      await page.keyboard.press('Tab');
      const focus = (await page.evaluate(FOCUSED)) as { id: string; ring: boolean };
      if (focus.id) {
        reached.push(focus.id);
        assert.ok(focus.ring, `${focus.id} shows its focus`);
      }
    }
    assert.ok(reached.includes('sim-max-checkpoints') && reached.includes('simulate-button'), reached.join(', '));
    const ratios = (await page.evaluate(CONTRAST)) as Record<string, number>;
    for (const [sel, ratio] of Object.entries(ratios)) assert.ok(ratio >= 4.5, `${sel}: contrast ${ratio.toFixed(2)}`);
    assert.ok(Object.keys(ratios).length >= 8, JSON.stringify(ratios));
    await page.close();
  });

  it('shows nothing a token cannot read, and asks again for a refused token', async () => {
    const page = await openWithToken(`/ui/runs/${RUN}`, otherReader.token);
    const status = page.locator('#status');
    await page.waitForFunction(() =>
      (globalThis as unknown as PageGlobal).document.getElementById('status')?.classList.contains('error'),
    );
    assert.match((await status.textContent()) ?? '', /forbidden, HTTP 403/);
    assert.equal(await page.locator('#content').isHidden(), true);
    assert.equal(await page.locator('canvas').count(), 0);
    // Its runs list holds its own run only.
    await page.goto(`${server.url}/ui/`);
    await page.locator('#runs tbody tr').first().waitFor();
    assert.deepEqual(await page.locator('#runs tbody tr td:first-child').allInnerTexts(), [OTHER]);
    await page.close();

    const refused = await openWithToken('/ui/', 'not-a-token');
    await refused.getByLabel('Access token').waitFor({ state: 'visible' });
    await refused.waitForFunction(() =>
      /refused this token/.test(
        (globalThis as unknown as PageGlobal).document.getElementById('auth-message')?.textContent ?? '',
      ),
    );
    assert.equal(await refused.locator('#runs').isHidden(), true);
    await refused.close();
  });

  it('lists a sharded step’s files and downloads each with the tab’s token', async () => {
    const run = 'ui-sharded';
    const file = (name: string, fill: number) => [
      { name, dtype: 'F32' as const, shape: [64], data: new Uint8Array(256).fill(fill) },
    ];
    await admin.uploadShard(run, 5, 'model-00002-of-00002.safetensors', 2, file('b', 2));
    const first = await admin.uploadShard(run, 5, 'model-00001-of-00002.safetensors', 2, file('a', 1));
    assert.equal(first.status, 'committed');
    const page = await openWithToken(`/ui/runs/${run}`, adminToken);
    await page.locator('#kept button[data-files="5"]').click();
    const links = page.locator('#kept ul.files a');
    await links.first().waitFor();
    assert.deepEqual(await links.allInnerTexts(), [
      'model.safetensors.index.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#kept a[download="model-00001-of-00002.safetensors"]').click(),
    ]);
    assert.equal(
      createHash('sha256')
        .update(await readFile(await download.path()))
        .digest('hex'),
      first.sha256,
    );
    assert.equal(download.suggestedFilename(), 'model-00001-of-00002.safetensors');
    await page.close();
  });
});
