// @ts-check
/**
 * The JSON API: fetch with cookies, RFC 9457 problems as values (never thrown), and a silent refresh of the
 * session when the short-lived access token has expired.
 */

/** @typedef {{field: string, code?: string, message: string, message_en?: string}} FieldError */
/** @typedef {{status: number, code: string, detail?: string, detail_en?: string, errors: FieldError[], current_version?: number}} Problem */
/** @typedef {{ok: true, status: number, data: any} | {ok: false, status: number, problem: Problem}} ApiResult */

/** Paths that must never trigger a refresh (they are the login itself). */
const NO_REFRESH = ['/api/auth/login', '/api/auth/refresh', '/api/auth/logout'];

/** @type {Promise<boolean> | null} One refresh at a time: refresh tokens are single use. */
let refreshing = null;
/** @type {((p: Problem) => void) | null} */
let onExpired = null;

/** Called when the session is over (refresh refused): the app shows the login form. @param {(p: Problem) => void} fn */
export function onSessionExpired(fn) {
  onExpired = fn;
}

/**
 * One request, no retry. @param {string} path @param {{method?: string, body?: unknown}} [options]
 * @returns {Promise<ApiResult>}
 */
async function once(path, { method = 'GET', body } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json, application/problem+json' };
  const json = body === undefined ? undefined : JSON.stringify(body);
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  // fetch rejects only when the network fails (offline, DNS, dropped link).
  const res = await fetch(path, { method, credentials: 'same-origin', headers, body: json }).catch(() => null);
  if (!res) return { ok: false, status: 0, problem: { status: 0, code: 'network_error', errors: [] } };
  const data = await res.json().catch(() => null); // 204 and non-JSON bodies give null
  if (res.ok) return { ok: true, status: res.status, data };
  const p = data && typeof data === 'object' ? data : {};
  const text = (/** @type {unknown} */ v) => (typeof v === 'string' && v ? v : undefined);
  /** @type {Problem} */
  const problem = {
    status: res.status,
    code: text(p.code) ?? `http_${res.status}`,
    detail: text(p.detail),
    detail_en: text(p.detail_en),
    errors: Array.isArray(p.errors) ? p.errors : [],
  };
  if (typeof p.current_version === 'number') problem.current_version = p.current_version;
  return { ok: false, status: res.status, problem };
}

/**
 * Swaps the refresh cookie for new tokens; concurrent callers share one attempt. Other tabs of the app share the
 * cookie: a refresh token presented twice ends the whole session (the server takes it for a stolen copy), so tabs
 * take turns, and a tab whose turn comes after another's refresh finds its session live again and stops there.
 * @returns {Promise<boolean>}
 */
export function refresh() {
  if (refreshing) return refreshing;
  /** @returns {Promise<boolean>} */
  const swap = () => once('/api/auth/refresh', { method: 'POST' }).then((r) => r.ok);
  // (The DOM types give `request` with an async callback a promise of a promise; it resolves to the value.)
  const attempt = navigator.locks
    ? /** @type {Promise<boolean>} */ (/** @type {unknown} */ (navigator.locks.request('th-refresh', async () => (await once('/api/auth/me')).ok || swap())))
    : swap();
  const shared = attempt.finally(() => {
    refreshing = null;
  });
  refreshing = shared;
  return shared;
}

/**
 * Calls the API. On a 401 (expired access token) refreshes the session once and retries; when the session is
 * over, tells the app (login form) and returns the 401.
 * @param {string} path @param {{method?: string, body?: unknown}} [options] @returns {Promise<ApiResult>}
 */
export async function api(path, options = {}) {
  const r = await once(path, options);
  if (r.ok || r.status !== 401 || NO_REFRESH.includes(path)) return r;
  if (await refresh()) {
    const again = await once(path, options);
    if (again.ok || again.status !== 401) return again;
    onExpired?.(again.problem);
    return again;
  }
  onExpired?.(r.problem);
  return r;
}

/** @param {Record<string, string | number | null | undefined>} params @returns {string} `?a=1&b=2` or '' */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
