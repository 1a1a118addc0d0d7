// GET /ui/runs/{run}: the run's trajectory, retention decisions and estimate, kept current by polling.
import {
  ApiError,
  allPages,
  api,
  authHeaders,
  el,
  formatBytes,
  formatGap,
  formatNumber,
  showError,
  withToken,
} from './api.js';
import { changeChart, estimateChart, lossChart, plottedCounts, resizeAll } from './charts.js';

const runId = decodeURIComponent(location.pathname.slice('/ui/runs/'.length));
const base = `/v1/runs/${encodeURIComponent(runId)}`;
const query = new URLSearchParams(location.search);
const pollSeconds = Math.max(1, Number(query.get('poll')) || 5);
/**
 * Metric points per request. Smaller pages let the gateway answer the page's other requests in between (it
 * serialises a page in one go), so the estimate chart and the tables come before the whole series.
 */
const metricsPage = String(Math.min(100_000, Math.max(1000, Number(query.get('metricsPage')) || 20_000)));
const $ = (id) => document.getElementById(id);
const status = $('status');
const tooltip = $('tooltip');

/** What the page shows, as the API last answered. */
const state = {
  summary: null,
  trajectory: null,
  checkpoints: null,
  metrics: null,
  estimate: null,
  history: null,
  policy: null,
};
/** The simulation drawn over the markers: the steps it keeps, or null. */
const overlay = { simKept: null };
const charts = {};

/** The run's policy with every default filled in: named and built-in ones from the API, inline over `default`. */
async function loadPolicy(ref) {
  if (ref && 'policy' in ref) {
    const builtIn = await api('/v1/policies/default');
    const resolved = { ...builtIn.resolved };
    for (const [key, value] of Object.entries(ref.policy)) {
      const plain = value !== null && typeof value === 'object' && resolved[key] && typeof resolved[key] === 'object';
      resolved[key] = plain ? { ...resolved[key], ...value } : value;
    }
    return { label: 'inline (set on this run)', stored: ref.policy, resolved };
  }
  const name = ref?.name ?? 'default';
  const record = await api(`/v1/policies/${encodeURIComponent(name)}`);
  return {
    label: record.builtIn ? `${name} (built in)` : `named "${name}"`,
    stored: record.policy,
    resolved: record.resolved,
  };
}

const loaders = {
  trajectory: () => api(`${base}/trajectory`),
  checkpoints: () => allPages(`${base}/checkpoints`, { limit: '1000' }),
  metrics: () => allPages(`${base}/metrics`, { limit: metricsPage }),
  estimate: () => api(`${base}/estimate`),
  history: () => api(`${base}/estimate/history`).then((h) => h.items),
  policy: () => loadPolicy(state.summary.policy),
};

function policyRows(p) {
  const b = p.budget;
  const rows = [
    ['name', state.policy.label],
    [
      'budget',
      b.maxCheckpoints === null && b.maxBytes === null
        ? 'none'
        : [
            b.maxCheckpoints !== null ? `${b.maxCheckpoints} checkpoints` : null,
            b.maxBytes !== null ? formatBytes(b.maxBytes) : null,
          ]
            .filter(Boolean)
            .join(', '),
    ],
    ['latest', String(p.latest)],
    ['phase', `${p.phase.count} phases (${p.phase.by}), ${p.phase.perPhase} per phase`],
    ['change', `at most ${p.change.max}, score ≥ ${p.change.zThreshold}`],
    ['best', p.best ? `${p.best.count} by ${p.best.mode} ${p.best.metric}` : 'off'],
    ['every', p.every === null ? 'off' : `multiples of ${p.every}`],
    ['grace', `${p.graceSeconds} s`],
  ];
  if (p.hold) rows.push(['hold', `${Math.round(p.hold.share * 100)}% of the budget for ${p.hold.seconds} s`]);
  return rows;
}

function renderSummary() {
  const s = state.summary;
  const c = s.checkpoints;
  $('title').textContent = s.id;
  $('crumb').textContent = s.id;
  document.title = `trajgate · ${s.id}`;
  $('sum-checkpoints').textContent =
    `${c.kept} kept of ${c.count} uploaded${c.latestStep === null ? '' : ` · latest step ${c.latestStep}`}`;
  const share = c.bytesUploaded > 0 ? c.bytesKept / c.bytesUploaded : 0;
  $('sum-bytes').textContent =
    `${formatBytes(c.bytesKept)} of ${formatBytes(c.bytesUploaded)} (${(100 * share).toFixed(1)}%)`;
  $('sum-bytes-bar').style.width = `${(100 * share).toFixed(1)}%`;
}

function renderEstimate() {
  const e = state.estimate;
  const observed = e.observedGap ? ` · observed ${formatNumber(e.observedGap.gap)} at step ${e.observedGap.step}` : '';
  $('sum-estimate').textContent = `${formatGap(e)} · ${e.trend.direction}${observed}`;
  $('estimate-warnings').replaceChildren(...e.warnings.map((w) => el('li', {}, w.message)));
}

function renderPolicy() {
  const p = state.policy.resolved;
  $('sum-policy').textContent = state.policy.label;
  $('policy').replaceChildren(...policyRows(p).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  $('policy-json').textContent = JSON.stringify(p, null, 2);
  const simCount = $('sim-max-checkpoints');
  if (!simCount.value && p.budget.maxCheckpoints !== null) simCount.placeholder = `now ${p.budget.maxCheckpoints}`;
}

const EXTENSIONS = { safetensors: 'safetensors', native: 'tgckpt' };

/** The files of sharded steps whose list the user opened, by step (a checkpoint list does not carry them). */
const shardFiles = new Map();
/** Served beside a sharded step's files: the Hugging Face index naming them. */
const SHARD_INDEX = 'model.safetensors.index.json';

function downloadLink(cp) {
  if (!cp.contentAvailable) return 'bytes deleted';
  // A sharded step (its files sent to …/shards/{file}) has no single /content: its row's blob is its index.
  if (cp.blobKey.endsWith('.index')) return shardLinks(cp.step);
  const href = `${base}/checkpoints/${cp.step}/content`;
  const name = `${runId}-${cp.step}.${EXTENSIONS[cp.format] ?? 'bin'}`;
  return el('a', { href, download: name, 'data-step': cp.step }, 'download');
}

/** A button that lists a sharded step's files; once listed, a download link per file and for the index. */
function shardLinks(step) {
  const files = shardFiles.get(step);
  if (!files) return el('button', { type: 'button', 'data-files': step }, 'list files');
  return el(
    'ul',
    { class: 'files' },
    ...files.map((file) =>
      el(
        'li',
        {},
        el(
          'a',
          { href: `${base}/checkpoints/${step}/shards/${encodeURIComponent(file)}`, download: file, 'data-step': step },
          file,
        ),
      ),
    ),
  );
}

async function listShardFiles(event) {
  const button = event.target.closest('button[data-files]');
  if (!button) return;
  const step = Number(button.dataset.files);
  button.disabled = true;
  button.textContent = 'listing…';
  try {
    const checkpoint = await api(`${base}/checkpoints/${step}`);
    shardFiles.set(step, [SHARD_INDEX, ...(checkpoint.shards ?? []).map((s) => s.file)]);
    renderTables();
  } catch (err) {
    button.textContent = `failed: ${err.message}`;
  }
}

/**
 * With a token, a plain link cannot send it: the download is fetched with the token and saved from memory
 * (for checkpoints too large for that, use `trajgate checkpoints download`).
 */
async function authorisedDownload(event) {
  const link = event.target.closest('a[download]');
  if (!link || !authHeaders().authorization) return;
  event.preventDefault();
  const previous = link.textContent;
  link.textContent = 'downloading…';
  try {
    const res = await fetch(link.href, { headers: authHeaders() });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new ApiError(res.status, body?.error?.code ?? `http_${res.status}`, body?.error?.message ?? res.statusText);
    }
    const url = URL.createObjectURL(await res.blob());
    const save = el('a', { href: url, download: link.getAttribute('download') });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    link.textContent = previous;
  } catch (err) {
    link.textContent = `failed: ${err.message}`;
  }
}

function renderTables() {
  const kept = state.checkpoints.filter((cp) => cp.status === 'kept');
  $('kept').tBodies[0].replaceChildren(
    ...kept.map((cp) =>
      el(
        'tr',
        {},
        el('td', { class: 'num' }, cp.step),
        el('td', {}, cp.classes.join(', ')),
        el('td', { class: 'num' }, formatBytes(cp.bytes)),
        el('td', {}, el('ul', { class: 'sim-diff' }, ...cp.reasons.map((r) => el('li', {}, r)))),
        el('td', {}, downloadLink(cp)),
      ),
    ),
  );
  if ($('all-details').open) renderAllTable();
}

function renderAllTable() {
  const traj = new Map(state.trajectory.items.map((t) => [t.step, t]));
  $('all').tBodies[0].replaceChildren(
    ...state.checkpoints.map((cp) => {
      const t = traj.get(cp.step);
      return el(
        'tr',
        {},
        el('td', { class: 'num' }, cp.step),
        el(
          'td',
          { class: `status-${cp.status}` },
          cp.status + (cp.classes.length ? ` (${cp.classes.join(', ')})` : ''),
        ),
        el('td', {}, t?.phase ?? '—'),
        el('td', { class: 'num' }, t ? formatNumber(t.changeScore, 2) : '—'),
        el('td', {}, cp.reasons.join(' / ')),
      );
    }),
  );
}

/** Each chart (re)drawn from the state; the first one drawn marks `trajgate:first-chart`. */
const chartDrawers = {
  loss: () => lossChart($('chart-loss'), state, overlay, tooltip),
  change: () =>
    changeChart($('chart-change'), { ...state, threshold: state.policy.resolved.change.zThreshold }, overlay, tooltip),
  estimate: () => estimateChart($('chart-estimate'), state),
};

/** Whether a chart has anything to draw. */
const chartHasData = {
  loss: () => state.metrics.length > 0,
  change: () => state.trajectory.items.length > 0,
  estimate: () => state.history.length > 0,
};

function drawChart(name) {
  charts[name]?.u.destroy();
  charts[name] = chartDrawers[name]();
  $(`empty-${name}`).hidden = chartHasData[name]();
  if (!performance.getEntriesByName('trajgate:first-chart').length) performance.mark('trajgate:first-chart');
}

function renderAll() {
  renderSummary();
  renderEstimate();
  renderPolicy();
  renderTables();
  for (const name of Object.keys(chartDrawers)) drawChart(name);
}

/** What each part of the page needs: on the first load, each part is drawn as soon as its data is in. */
const PARTS = [
  [['estimate'], renderEstimate],
  [['policy'], renderPolicy],
  [['checkpoints', 'trajectory'], renderTables],
  [['history', 'trajectory'], () => drawChart('estimate')],
  [['metrics', 'trajectory', 'checkpoints'], () => drawChart('loss')],
  [['metrics', 'trajectory', 'checkpoints', 'policy'], () => drawChart('change')],
];

function redrawMarkers() {
  charts.loss?.u.redraw(false);
  charts.change?.u.redraw(false);
}

async function simulate(event) {
  event.preventDefault();
  const out = $('sim-result');
  const button = event.target.querySelector('button');
  const count = $('sim-max-checkpoints').value.trim();
  const mb = $('sim-max-mb').value.trim();
  const maxCheckpoints = count === '' ? null : Number(count);
  const maxBytes = mb === '' ? null : Math.round(Number(mb) * 1e6);
  if (maxCheckpoints !== null && !(Number.isInteger(maxCheckpoints) && maxCheckpoints >= 1)) {
    out.replaceChildren(el('p', { class: 'error' }, 'Most checkpoints kept must be a whole number of at least 1.'));
    return;
  }
  if (maxBytes !== null && !(maxBytes >= 1)) {
    out.replaceChildren(el('p', { class: 'error' }, 'Most megabytes kept must be a positive number.'));
    return;
  }
  button.disabled = true;
  try {
    const policy = { ...state.policy.resolved, budget: { maxCheckpoints, maxBytes } };
    const decision = await api(`${base}/retention/simulate`, { method: 'POST', json: { policy } });
    showSimulation(decision, { maxCheckpoints, maxBytes });
  } catch (err) {
    const message =
      err instanceof ApiError ? `${err.message} (${err.code}, HTTP ${err.status})` : `Failed: ${err.message}`;
    out.replaceChildren(el('p', { class: 'error', role: 'alert' }, message));
  } finally {
    button.disabled = false;
  }
}

function showSimulation(decision, budget) {
  const t = decision.totals;
  const nowKept = new Set(state.checkpoints.filter((c) => c.status === 'kept').map((c) => c.step));
  const simKept = decision.checkpoints.filter((d) => d.keep);
  const added = simKept.filter((d) => !nowKept.has(d.step)).map((d) => d.step);
  const dropped = [...nowKept].filter((s) => !simKept.some((d) => d.step === s));
  const c = state.summary.checkpoints;
  const budgetText =
    [
      budget.maxCheckpoints !== null ? `${budget.maxCheckpoints} checkpoints` : null,
      budget.maxBytes !== null ? formatBytes(budget.maxBytes) : null,
    ]
      .filter(Boolean)
      .join(' and ') || 'no budget';
  overlay.simKept = new Set(simKept.map((d) => d.step));
  $('sim-key').hidden = false;
  redrawMarkers();
  $('sim-result').replaceChildren(
    el(
      'p',
      { id: 'sim-summary' },
      `With ${budgetText}: would keep ${t.kept} of ${t.checkpoints} checkpoints (now ${c.kept}), ` +
        `${formatBytes(t.bytesKept)} of ${formatBytes(t.bytesUploaded)} (now ${formatBytes(c.bytesKept)}); ` +
        `coverage error mean ${formatNumber(t.coverage.mean)}, max ${formatNumber(t.coverage.max)} of the path length.`,
    ),
    el(
      'ul',
      { class: 'sim-diff' },
      el('li', {}, `would also keep: ${added.length ? added.join(', ') : 'none'}`),
      el('li', {}, `would no longer keep: ${dropped.length ? dropped.join(', ') : 'none'}`),
    ),
    el(
      'table',
      { class: 'data', id: 'sim-table' },
      el('caption', {}, 'Kept by the simulation (ringed on the charts)'),
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          el('th', { scope: 'col', class: 'num' }, 'step'),
          el('th', { scope: 'col' }, 'classes'),
          el('th', { scope: 'col' }, 'why'),
        ),
      ),
      el(
        'tbody',
        {},
        ...simKept.map((d) =>
          el(
            'tr',
            {},
            el('td', { class: 'num' }, d.step),
            el('td', {}, d.classes.join(', ')),
            el('td', {}, d.reasons.join(' / ')),
          ),
        ),
      ),
    ),
  );
}

/** Appends new metric points: those from the last step held on (the last step's may have grown). */
async function pollMetrics() {
  const metrics = state.metrics;
  const lastStep = metrics.length ? metrics[metrics.length - 1].step : null;
  const params = { limit: metricsPage };
  if (lastStep !== null) params.fromStep = String(lastStep);
  const tail = await allPages(`${base}/metrics`, params);
  let held = 0;
  while (held < metrics.length && metrics[metrics.length - 1 - held].step === lastStep) held++;
  if (tail.length === held) return false;
  metrics.splice(metrics.length - held, held, ...tail);
  return true;
}

let polling = false;

async function poll() {
  if (polling || document.visibilityState !== 'visible') return;
  polling = true;
  try {
    const before = JSON.stringify([state.summary.checkpoints, state.summary.policy]);
    state.summary = await api(base);
    const runChanged = JSON.stringify([state.summary.checkpoints, state.summary.policy]) !== before;
    const metricsChanged = await pollMetrics();
    if (!runChanged && !metricsChanged) return;
    const keys = ['trajectory', 'checkpoints', 'estimate', 'history', 'policy'];
    const values = await Promise.all(keys.map((k) => loaders[k]()));
    keys.forEach((k, i) => {
      state[k] = values[i];
    });
    if (runChanged) {
      overlay.simKept = null;
      $('sim-key').hidden = true;
      $('sim-result').replaceChildren();
    }
    renderAll();
    status.textContent = `Updated ${new Date().toLocaleTimeString()}; checking every ${pollSeconds} s.`;
  } catch (err) {
    showError(status, err);
  } finally {
    polling = false;
  }
}

function counts() {
  return {
    loss: plottedCounts(charts.loss.u),
    lossMarkers: charts.loss.markers.length,
    change: plottedCounts(charts.change.u),
    changeMarkers: charts.change.markers.length,
    estimate: plottedCounts(charts.estimate.u),
  };
}

async function main() {
  // Test and tooling hooks: what is plotted, and where a checkpoint's marker is.
  window.trajgateUi = {
    ready: false,
    counts,
    markerClientPoint: (chart, step) => charts[chart].markerLayer.markerClientPoint(charts[chart].u, step),
  };
  try {
    state.summary = await withToken(() => api(base));
    $('content').hidden = false;
    renderSummary();
    const pending = new Set(PARTS);
    const progress = () => {
      for (const part of pending) {
        if (!part[0].every((key) => state[key] !== null)) continue;
        pending.delete(part);
        part[1]();
      }
    };
    await Promise.all(
      Object.entries(loaders).map(async ([key, load]) => {
        state[key] = await load();
        progress();
      }),
    );
    performance.mark('trajgate:charts');
    const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
    status.textContent = `Loaded ${plural(state.checkpoints.length, 'checkpoint')} and ${plural(state.metrics.length, 'metric point')}; checking every ${pollSeconds} s.`;
    window.trajgateUi.ready = true;
    setInterval(poll, pollSeconds * 1000);
  } catch (err) {
    showError(status, err);
  }
}

$('simulate').addEventListener('submit', simulate);
$('kept').addEventListener('click', authorisedDownload);
$('kept').addEventListener('click', listShardFiles);
$('all-details').addEventListener('toggle', () => {
  if ($('all-details').open && state.checkpoints) renderAllTable();
});
window.addEventListener('resize', () => resizeAll(Object.values(charts)));
main();
