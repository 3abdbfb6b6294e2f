// Tenant mode: served by webhook_portal under /webhooks/portal/, the console
// manages one app for that app's owner, signed in with an app-scoped token
// instead of the operator's credentials. The token arrives in the URL
// fragment (#token=...), which browsers never send to a server, so no log
// or Referer sees it; it is kept in sessionStorage for this tab only and
// taken out of the address bar at once.

const storageKey = 'webhooks-portal-token';

// memory holds the token where sessionStorage is refused.
let memory = '';

// tenant is null in the operator's console; in the portal it is
// { token, app, expiresAt, events } or { error } when the page cannot start.
export const tenant = location.pathname.includes('/webhooks/portal/') ? await start() : null;

async function start() {
  const m = /^#token=([^&]*)/.exec(location.hash);
  if (m) {
    try {
      sessionStorage.setItem(storageKey, decodeURIComponent(m[1]));
    } catch {
      // Storage refused (a sandboxed frame): the token lives in memory.
      memory = decodeURIComponent(m[1]);
    }
    history.replaceState(null, '', location.pathname + location.search + '#/');
  }
  const token = memory || read();
  if (!token) return { error: 'This page opens from a sign-in link of the service it belongs to; open that link again.' };
  // The service's colours and font, if it set any.
  document.head.append(Object.assign(document.createElement('link'), { rel: 'stylesheet', href: 'theme.css' }));
  let res;
  try {
    res = await fetch(new URL('session', location.href), {
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' }, cache: 'no-store',
    });
  } catch {
    return { error: 'Cannot reach the server; check the connection and reload the page.' };
  }
  if (res.status === 401) {
    forget();
    return { error: expired };
  }
  if (!res.ok) return { error: `The server answered ${res.status}; reload the page to try again.` };
  const session = await res.json();
  return { token, app: session.appId, expiresAt: session.expiresAt, events: session.events };
}

function read() {
  try {
    return sessionStorage.getItem(storageKey) || '';
  } catch {
    return '';
  }
}

// forget drops a token the server no longer accepts.
export function forget() {
  memory = '';
  try {
    sessionStorage.removeItem(storageKey);
  } catch {
    // Nothing was stored.
  }
}

// expired is what the page says once its token stops working.
export const expired = 'This link has expired or was revoked; open the webhook settings again from the service to get a new one.';
