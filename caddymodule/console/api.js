// The management API client. Every URL is relative to the console's own,
// so the page works behind any route that keeps the /webhooks/ prefix, and
// every request is same-origin (the API refuses cross-origin writes).
// In tenant mode (tenant.js) every request carries the portal token.

import { tenant, forget, expired } from './tenant.js';

const base = new URL('../', location.href);
// Credentials typed into the address bar must not end up in fetch URLs
// (fetch refuses them); the browser sends the cached basic auth anyway.
base.username = '';
base.password = '';
base.hash = '';
base.search = '';

// ApiError is an error answer; field is the input it names, when its
// message starts with one ("url: scheme must be http or https").
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
    const m = /^([A-Za-z][\w.]*): (.+)$/s.exec(message);
    this.field = m ? m[1] : '';
    this.detail = m ? m[2] : message;
  }
}

// call sends a request and returns the decoded answer (null for 204).
export async function call(method, path, body, signal) {
  const init = { method, headers: { Accept: 'application/json' }, signal, cache: 'no-store' };
  if (tenant?.token) init.headers.Authorization = `Bearer ${tenant.token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(new URL(path, base), init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'cannot reach the server; check the connection and retry');
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // An auth layer or proxy answered with something else than our JSON.
  }
  if (!res.ok) {
    let message = data && typeof data.error === 'string' ? data.error : `the server answered ${res.status}`;
    if (res.status === 401 && tenant) {
      forget();
      message = expired;
    } else if (res.status === 401) message = 'not signed in (401); reload the page to sign in again';
    throw new ApiError(res.status, message);
  }
  return data;
}

const enc = encodeURIComponent;

// Paths of the API, relative to /webhooks/.
export const paths = {
  events: () => 'events',
  apps: () => 'apps',
  hooks: (app) => `apps/${enc(app)}/webhooks`,
  hook: (app, id) => `apps/${enc(app)}/webhooks/${enc(id)}`,
  deliveries: (app, id, query) => `apps/${enc(app)}/webhooks/${enc(id)}/deliveries?${new URLSearchParams(query)}`,
  delivery: (app, id, did) => `apps/${enc(app)}/webhooks/${enc(id)}/deliveries/${enc(did)}`,
  resend: (app, id, did) => `apps/${enc(app)}/webhooks/${enc(id)}/deliveries/${enc(did)}/resend`,
  recover: (app, id) => `apps/${enc(app)}/webhooks/${enc(id)}/recover`,
  test: (app, id) => `apps/${enc(app)}/webhooks/${enc(id)}/test`,
  stats: (app, id, hours) => `apps/${enc(app)}/webhooks/${enc(id)}/stats?hours=${hours}`,
  replay: (app, id) => `apps/${enc(app)}/webhooks/${enc(id)}/replay`,
  appEvents: (app, query) => `apps/${enc(app)}/events?${new URLSearchParams(query)}`,
  appEvent: (app, eid) => `apps/${enc(app)}/events/${enc(eid)}`,
};

// Hash routes of the console.
export const links = {
  home: () => '#/',
  app: (app) => `#/apps/${enc(app)}`,
  create: (app) => `#/apps/${enc(app)}/new`,
  hook: (app, id) => `#/apps/${enc(app)}/webhooks/${enc(id)}`,
  edit: (app, id) => `#/apps/${enc(app)}/webhooks/${enc(id)}/edit`,
  delivery: (app, id, did) => `#/apps/${enc(app)}/webhooks/${enc(id)}/deliveries/${enc(did)}`,
  // The event log keeps its filters in the query, so Back restores them.
  events: (app, query) => {
    const q = new URLSearchParams(query).toString();
    return `#/apps/${enc(app)}/events${q ? `?${q}` : ''}`;
  },
  event: (app, eid) => `#/apps/${enc(app)}/events/${enc(eid)}`,
};

let catalog;

// events returns the event catalog, fetched once per page load.
export function events(signal) {
  if (tenant) return Promise.resolve(tenant.events);
  catalog ??= call('GET', paths.events(), undefined, signal).then((r) => r.data).catch((err) => {
    catalog = undefined;
    throw err;
  });
  return catalog;
}
