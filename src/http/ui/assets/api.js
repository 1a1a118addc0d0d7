// The pages' access to the gateway: /v1 calls with the tab's token, the token form, and DOM helpers.
// Everything shown comes from an API answer to this token; text is set with textContent, never as HTML.

const TOKEN_KEY = 'trajgate.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function authHeaders() {
  const secret = token();
  return secret ? { authorization: `Bearer ${secret}` } : {};
}

/** A /v1 call; a non-2xx answer throws ApiError with the catalogue code and message. */
export async function api(path, options = {}) {
  const init = { method: options.method ?? 'GET', headers: { accept: 'application/json', ...authHeaders() } };
  if (options.json !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(options.json);
  }
  let res = await fetch(path, init);
  // Over the token's request rate: wait as told (the list page asks for details of many runs), 3 times.
  for (let retry = 0; res.status === 429 && retry < 3; retry++) {
    const seconds = Math.min(10, Number(res.headers.get('retry-after')) || 1);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    res = await fetch(path, init);
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new ApiError(res.status, body?.error?.code ?? `http_${res.status}`, body?.error?.message ?? res.statusText);
  }
  return res.json();
}

/** Every item of a paged list: each page after the first is asked for with `after` = the previous page's `next`. */
export async function allPages(path, params) {
  const items = [];
  let after = null;
  for (;;) {
    const query = new URLSearchParams(params);
    if (after !== null) query.set('after', String(after));
    const page = await api(`${path}?${query}`);
    for (const item of page.items) items.push(item);
    if (page.next === null || page.items.length === 0) return items;
    after = page.next;
  }
}

/** Shows the token form until a token is entered; resolves once it is stored. */
function askToken(message) {
  const form = document.getElementById('auth');
  const input = document.getElementById('token');
  document.getElementById('auth-message').textContent = message;
  form.hidden = false;
  input.value = '';
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener(
      'submit',
      (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        form.hidden = true;
        resolve();
      },
      { once: true },
    );
  });
}

/** Runs `load`, asking for a token (again) whenever the gateway answers 401. */
export async function withToken(load) {
  for (;;) {
    try {
      return await load();
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      await askToken(
        token() ? `The gateway refused this token: ${err.message}` : 'This gateway needs an access token to show runs.',
      );
    }
  }
}

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  }
  return node;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toPrecision(3)} ${units[i]}`;
}

export function formatNumber(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

/** "0.123 [0.1, 0.15]" for a calibrated gap, or why there is none. */
export function formatGap(estimate) {
  if (!estimate) return '—';
  if (estimate.gap) {
    const g = estimate.gap;
    return `${formatNumber(g.estimate)} [${formatNumber(g.low)}, ${formatNumber(g.high)}]${estimate.calibrated ? '' : ' (uncalibrated)'}`;
  }
  if (estimate.missing?.length) return `needs ${estimate.missing.join(', ')}`;
  return 'not calibrated yet';
}

export function showError(status, err) {
  status.classList.add('error');
  status.textContent =
    err instanceof ApiError ? `${err.message} (${err.code}, HTTP ${err.status})` : `Failed: ${err?.message ?? err}`;
}
