// The run page's charts (uPlot, loaded as the global `uPlot`): phases shaded, checkpoints as markers with
// their classes and reasons on hover, and a simulated decision drawn over them.
import { el, formatNumber } from './api.js';

const COLORS = {
  train: '#1d4ed8',
  val: '#c2410c',
  kept: '#17803d',
  discarded: '#6b7280',
  sim: '#b45309',
  norm: '#7c3aed',
  logged: '#a78bfa',
  score: '#0f766e',
  threshold: '#b91c1c',
  gap: '#1d4ed8',
  band: 'rgba(29, 78, 216, 0.15)',
  observed: '#c2410c',
  indicator: '#6b7280',
};
const HEIGHT = 260;
const HOVER_RADIUS = 9;

/** Index of the last x ≤ step in ascending `xs`, or -1. */
function lastAtOrBefore(xs, step) {
  let lo = 0;
  let hi = xs.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= step) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** Two step-ordered tables [x, ...ys] merged into one: each row keeps its values, the other table's are null. */
function mergeTables(a, b) {
  const x = [];
  const ys = [...a.slice(1), ...b.slice(1)].map(() => []);
  const na = a.length - 1;
  let i = 0;
  let j = 0;
  while (i < a[0].length || j < b[0].length) {
    const takeA = j >= b[0].length || (i < a[0].length && a[0][i] <= b[0][j]);
    x.push(takeA ? a[0][i] : b[0][j]);
    for (let s = 0; s < ys.length; s++) {
      const mine = takeA ? s < na : s >= na;
      ys[s].push(mine ? (takeA ? a[s + 1][i] : b[s - na + 1][j]) : null);
    }
    if (takeA) i++;
    else j++;
  }
  return [x, ...ys];
}

/** Shades each phase from its first step to the next phase's first step, with its name. */
function phasePlugin(boundaries) {
  return {
    hooks: {
      drawClear: [
        (u) => {
          const { ctx, bbox } = u;
          ctx.save();
          ctx.beginPath();
          ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
          ctx.clip();
          ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
          boundaries.forEach((b, i) => {
            const end = boundaries[i + 1]?.fromStep ?? b.toStep;
            const x0 = u.valToPos(b.fromStep, 'x', true);
            const x1 = u.valToPos(end, 'x', true);
            ctx.fillStyle = i % 2 === 0 ? 'rgba(29, 78, 216, 0.07)' : 'rgba(124, 58, 237, 0.05)';
            ctx.fillRect(x0, bbox.top, Math.max(1, x1 - x0), bbox.height);
            ctx.fillStyle = '#4b5563';
            ctx.fillText(b.phase, Math.max(x0, bbox.left) + 4 * devicePixelRatio, bbox.top + 14 * devicePixelRatio);
          });
          ctx.restore();
        },
      ],
    },
  };
}

/**
 * Checkpoint markers at (step, yOf(marker)) on scale `scale`: filled when kept, hollow when discarded, ringed
 * when the simulation in `overlay.simKept` keeps them. Hovering one shows its record in `tooltip`.
 */
function markerPlugin(markers, scale, overlay, tooltip) {
  const position = (u, m, canvas) => {
    const y = m.y ?? u.scales[scale].min;
    return [u.valToPos(m.step, 'x', canvas), u.valToPos(y, scale, canvas)];
  };
  return {
    hooks: {
      draw: [
        (u) => {
          const { ctx, bbox } = u;
          const r = 4 * devicePixelRatio;
          ctx.save();
          ctx.beginPath();
          ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
          ctx.clip();
          ctx.lineWidth = 1.5 * devicePixelRatio;
          for (const m of markers) {
            const [x, y] = position(u, m, true);
            ctx.beginPath();
            ctx.arc(x, y, r, 0, 2 * Math.PI);
            if (m.cp.status === 'kept') {
              ctx.fillStyle = COLORS.kept;
              ctx.fill();
              ctx.strokeStyle = '#ffffff';
            } else {
              ctx.fillStyle = '#ffffff';
              ctx.fill();
              ctx.strokeStyle = COLORS.discarded;
            }
            ctx.stroke();
            if (overlay.simKept?.has(m.step)) {
              ctx.beginPath();
              ctx.arc(x, y, r + 3 * devicePixelRatio, 0, 2 * Math.PI);
              ctx.strokeStyle = COLORS.sim;
              ctx.stroke();
            }
          }
          ctx.restore();
        },
      ],
      ready: [
        (u) => {
          u.over.addEventListener('mousemove', (event) => {
            const rect = u.over.getBoundingClientRect();
            const px = event.clientX - rect.left;
            const py = event.clientY - rect.top;
            let best = null;
            let bestD = HOVER_RADIUS;
            for (const m of markers) {
              const [x, y] = position(u, m, false);
              const d = Math.hypot(x - px, y - py);
              if (d <= bestD) {
                best = m;
                bestD = d;
              }
            }
            if (best) showTooltip(tooltip, best, overlay, event.clientX, event.clientY);
            else tooltip.hidden = true;
          });
          u.over.addEventListener('mouseleave', () => {
            tooltip.hidden = true;
          });
        },
      ],
    },
    /** Where a checkpoint's marker is on the page (client pixels), for tests and tools. */
    markerClientPoint(u, step) {
      const m = markers.find((k) => k.step === step);
      if (!m) return null;
      const rect = u.over.getBoundingClientRect();
      const [x, y] = position(u, m, false);
      return { x: rect.left + x, y: rect.top + y };
    },
  };
}

function showTooltip(tooltip, m, overlay, clientX, clientY) {
  const { cp, traj } = m;
  const head = el(
    'div',
    {},
    el('strong', {}, `step ${cp.step}`),
    ' · ',
    el('span', { class: cp.status === 'kept' ? 'tt-kept' : 'tt-discarded' }, cp.status),
    cp.classes.length ? ` (${cp.classes.join(', ')})` : '',
    cp.pinned ? ' · pinned' : '',
  );
  const facts = traj
    ? el(
        'div',
        {},
        `phase ${traj.phase} · change score ${formatNumber(traj.changeScore, 2)}${traj.changeKind ? ` (${traj.changeKind})` : ''}`,
      )
    : null;
  const sim = overlay.simKept
    ? el('div', {}, `simulation: ${overlay.simKept.has(cp.step) ? 'kept' : 'not kept'}`)
    : null;
  tooltip.replaceChildren(
    ...[head, facts, el('ul', {}, ...cp.reasons.map((r) => el('li', {}, r))), sim].filter(Boolean),
  );
  tooltip.hidden = false;
  const width = tooltip.offsetWidth;
  const left = clientX + 14 + width > window.innerWidth ? clientX - 14 - width : clientX + 14;
  tooltip.style.left = `${Math.max(4, left)}px`;
  tooltip.style.top = `${Math.max(4, clientY + 14)}px`;
}

function widthOf(target) {
  return Math.max(320, target.clientWidth);
}

function baseOptions(target) {
  return {
    width: widthOf(target),
    height: HEIGHT,
    cursor: { sync: { key: 'trajgate-run' }, drag: { x: true, y: false } },
    scales: { x: { time: false } },
    legend: { live: true },
  };
}

function mount(target, opts, data, ariaLabel) {
  target.replaceChildren();
  target.setAttribute('role', 'img');
  target.setAttribute('aria-label', ariaLabel);
  return new uPlot(opts, data, target);
}

/** Checkpoints with their trajectory entries, by step. */
function checkpointMarkers(checkpoints, trajectory, yOf) {
  const bySteps = new Map(trajectory.items.map((t) => [t.step, t]));
  return checkpoints.map((cp) => {
    const traj = bySteps.get(cp.step) ?? null;
    return { step: cp.step, cp, traj, y: yOf(cp, traj) };
  });
}

/** Training and validation loss over steps, checkpoints as markers at their training loss. */
export function lossChart(target, { metrics, trajectory, checkpoints }, overlay, tooltip) {
  const steps = metrics.map((p) => p.step);
  const train = metrics.map((p) => p.trainLoss ?? null);
  const val = metrics.map((p) => p.valLoss ?? null);
  // Markers sit at the trajectory's mean training loss, else at the last training loss logged by their step.
  const carried = [];
  let last = null;
  for (const v of train) {
    last = v ?? last;
    carried.push(last);
  }
  const markers = checkpointMarkers(checkpoints, trajectory, (cp, traj) => {
    if (traj?.trainLoss !== null && traj?.trainLoss !== undefined) return traj.trainLoss;
    const i = lastAtOrBefore(steps, cp.step);
    return i < 0 ? null : carried[i];
  });
  const markerLayer = markerPlugin(markers, 'y', overlay, tooltip);
  const opts = {
    ...baseOptions(target),
    series: [
      { label: 'step' },
      { label: 'training loss', stroke: COLORS.train, width: 1, spanGaps: true, points: { show: false } },
      { label: 'validation loss', stroke: COLORS.val, width: 2, spanGaps: true, points: { show: true, size: 5 } },
    ],
    axes: [{ label: 'step' }, { label: 'loss' }],
    plugins: [phasePlugin(trajectory.phases.boundaries), markerLayer],
  };
  const u = mount(target, opts, [steps, train, val], 'Training and validation loss over steps, with checkpoints');
  return { u, markers, markerLayer };
}

/** Per-step update norm (log scale) between checkpoints and as logged, the change score and its threshold. */
export function changeChart(target, { metrics, trajectory, checkpoints, threshold }, overlay, tooltip) {
  const positive = (v) => (v !== null && v !== undefined && v > 0 ? v : null);
  const items = trajectory.items;
  const logged = metrics.filter((p) => positive(p.updateNorm) !== null);
  const data = mergeTables(
    [items.map((t) => t.step), items.map((t) => positive(t.updateNormPerStep)), items.map((t) => t.changeScore)],
    [logged.map((p) => p.step), logged.map((p) => p.updateNorm)],
  );
  data.push(data[0].map(() => threshold));
  const markers = checkpointMarkers(checkpoints, trajectory, (_cp, traj) => traj?.changeScore ?? null);
  const markerLayer = markerPlugin(markers, 'score', overlay, tooltip);
  const opts = {
    ...baseOptions(target),
    scales: {
      x: { time: false },
      norm: { distr: 3 },
      score: { range: (_u, min, max) => [Math.min(0, min), Math.max(max, threshold) * 1.1] },
    },
    series: [
      { label: 'step' },
      {
        label: 'update norm per step (checkpoints)',
        scale: 'norm',
        stroke: COLORS.norm,
        width: 2,
        spanGaps: true,
        points: { show: false },
      },
      {
        label: 'change score',
        scale: 'score',
        stroke: COLORS.score,
        width: 1,
        spanGaps: true,
        points: { show: false },
      },
      { label: '‖Δw‖ logged', scale: 'norm', stroke: COLORS.logged, width: 1, spanGaps: true, points: { show: false } },
      {
        label: `threshold ${threshold}`,
        scale: 'score',
        stroke: COLORS.threshold,
        width: 1,
        dash: [6, 4],
        points: { show: false },
      },
    ],
    axes: [
      { label: 'step' },
      // Decades only (uPlot passes null for the rest), as 1e-4 rather than a 0 from rounding.
      {
        scale: 'norm',
        label: 'update norm per step',
        size: 56,
        values: (_u, splits) =>
          splits.map((v) => (v === null ? '' : v >= 1e-3 && v < 1e4 ? String(v) : v.toExponential(0))),
      },
      { scale: 'score', label: 'change score', side: 1, grid: { show: false } },
    ],
    plugins: [phasePlugin(trajectory.phases.boundaries), markerLayer],
  };
  const u = mount(target, opts, data, 'Per-step update norm and change score with its threshold, with checkpoints');
  return { u, markers, markerLayer };
}

/** The calibrated gap over steps with its interval, the observed gaps, and the served indicator. */
export function estimateChart(target, { history, trajectory }) {
  const steps = history.map((h) => h.step);
  const opts = {
    ...baseOptions(target),
    scales: { x: { time: false }, ind: {} },
    series: [
      { label: 'step' },
      { label: 'estimated gap', stroke: COLORS.gap, width: 2, spanGaps: true, points: { show: false } },
      { label: 'low (95%)', stroke: COLORS.band, width: 1, spanGaps: true, points: { show: false } },
      { label: 'high (95%)', stroke: COLORS.band, width: 1, spanGaps: true, points: { show: false } },
      {
        label: 'observed gap',
        stroke: COLORS.observed,
        paths: () => null,
        points: { show: true, size: 7, fill: COLORS.observed },
      },
      {
        label: 'served indicator',
        scale: 'ind',
        stroke: COLORS.indicator,
        width: 1,
        dash: [3, 3],
        spanGaps: true,
        points: { show: false },
      },
    ],
    bands: [{ series: [3, 2], fill: COLORS.band }],
    axes: [
      { label: 'step' },
      { label: 'loss gap' },
      { scale: 'ind', label: 'indicator', side: 1, grid: { show: false } },
    ],
    plugins: [phasePlugin(trajectory.phases.boundaries)],
  };
  const data = [
    steps,
    history.map((h) => h.gap?.estimate ?? null),
    history.map((h) => h.gap?.low ?? null),
    history.map((h) => h.gap?.high ?? null),
    history.map((h) => h.observedGap ?? null),
    history.map((h) => h.served ?? null),
  ];
  return {
    u: mount(target, opts, data, 'Generalization gap estimate over steps with its interval and the observed gaps'),
  };
}

/** Non-null values of each series, by label: what the chart plots. */
export function plottedCounts(u) {
  const counts = {};
  u.series.forEach((s, i) => {
    if (i > 0) counts[s.label] = u.data[i].reduce((n, v) => (v === null || v === undefined ? n : n + 1), 0);
  });
  return counts;
}

export function resizeAll(charts) {
  for (const chart of charts) chart.u.setSize({ width: widthOf(chart.u.root.parentElement), height: HEIGHT });
}
