// GET /ui/: the runs this token can read, newest first, with their checkpoint counts, bytes and estimate.
import { ApiError, allPages, api, el, formatBytes, formatGap, showError, withToken } from './api.js';

/** Runs shown with their details (each costs two requests); the rest are counted. */
const SHOWN = 100;
const CONCURRENCY = 6;

async function details(run) {
  const [summary, estimate] = await Promise.all([
    api(`/v1/runs/${encodeURIComponent(run.id)}`),
    api(`/v1/runs/${encodeURIComponent(run.id)}/estimate`).catch((err) => {
      if (err instanceof ApiError && err.status < 500) return null;
      throw err;
    }),
  ]);
  return { summary, estimate };
}

function row(run, info) {
  const c = info?.summary.checkpoints;
  return el(
    'tr',
    {},
    el('td', {}, el('a', { href: `/ui/runs/${encodeURIComponent(run.id)}` }, run.id)),
    el('td', {}, el('time', { datetime: run.createdAt }, new Date(run.createdAt).toLocaleString())),
    el('td', { class: 'num' }, c ? `${c.kept} / ${c.count}` : '—'),
    el('td', { class: 'num' }, c ? `${formatBytes(c.bytesKept)} / ${formatBytes(c.bytesUploaded)}` : '—'),
    el('td', { class: 'num' }, c?.latestStep ?? '—'),
    el('td', {}, info ? formatGap(info.estimate) : '—'),
  );
}

async function main() {
  const status = document.getElementById('status');
  try {
    const runs = await withToken(() => allPages('/v1/runs', { limit: '1000' }));
    runs.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    const shown = runs.slice(0, SHOWN);
    const infos = new Array(shown.length);
    let next = 0;
    const worker = async () => {
      while (next < shown.length) {
        const i = next++;
        infos[i] = await details(shown[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, shown.length) }, worker));
    const table = document.getElementById('runs');
    table.tBodies[0].replaceChildren(...shown.map((run, i) => row(run, infos[i])));
    table.hidden = runs.length === 0;
    status.textContent =
      runs.length === 0
        ? 'No runs this token can read.'
        : `${runs.length} run${runs.length === 1 ? '' : 's'}${runs.length > SHOWN ? `; the newest ${SHOWN} shown` : ''}.`;
  } catch (err) {
    showError(status, err);
  }
}

main();
