// One delivery: its request body, every attempt, and resend.

import { h, replace, time, badge, toast } from './dom.js';
import { call, paths, links } from './api.js';

export async function showDelivery(view, app, id, did) {
  const [hook, first] = await Promise.all([
    call('GET', paths.hook(app, id), undefined, view.signal),
    call('GET', paths.delivery(app, id, did), undefined, view.signal),
  ]);
  const body = h('div');
  const resend = h('button', { type: 'button', id: 'resend', class: 'primary' }, 'Resend now');
  const resendHint = h('p', { class: 'hint spaced', id: 'resend-hint' });
  resend.setAttribute('aria-describedby', resendHint.id);

  const load = async () => {
    const d = await call('GET', paths.delivery(app, id, did), undefined, view.signal);
    fill(d);
  };
  const fill = (d) => {
    replace(body, details(d));
    const pending = d.status === 'pending';
    resend.disabled = pending;
    resendHint.textContent = pending
      ? 'Pending: the next attempt is on its way.'
      : 'Sends the same body again now, with the same webhook-id, so receivers can tell it is a repeat.';
    // Follow a pending delivery until it settles.
    if (pending) view.later(() => load().catch(() => {}), 1000);
  };

  resend.addEventListener('click', async () => {
    resend.disabled = true;
    try {
      await call('POST', paths.resend(app, id, did), undefined, view.signal);
      toast('Resend queued.');
      await load();
    } catch (err) {
      if (err.name === 'AbortError') return;
      toast(`Not resent: ${err.message}`);
      resend.disabled = false;
    }
  });

  view.page(`Delivery of ${first.event}`,
    [['Apps', links.home()], [app, links.app(app)], [hook.name, links.hook(app, id)], ['Delivery']],
    h('p', { class: 'actions' }, resend), resendHint, body);
  fill(first);
}

function details(d) {
  const attempts = d.attemptLog || [];
  return [
    h('dl', { class: 'summary' },
      item('Status', h('span', { id: 'delivery-status', dataset: { deliveryStatus: d.status } }, badge(d.status))),
      item('Event', d.event),
      item('Created', time(d.createdAt)),
      item('Event id', h('code', {}, d.eventId), h('span', { class: 'hint' }, ' (the webhook-id header)')),
      item('Attempts', String(d.attempts)),
      d.nextAttemptAt ? item('Next attempt', time(d.nextAttemptAt)) : null),
    h('h2', {}, 'Request body'),
    d.requestBody === null
      ? h('p', { class: 'muted' }, 'Expired: the event is older than the retention period.')
      : h('pre', { class: 'code', id: 'request-body', tabindex: '0', 'aria-label': 'Request body' }, d.requestBody),
    h('h2', {}, 'Attempts'),
    attempts.length
      ? h('ol', { class: 'attempts' }, attempts.map(attempt))
      : h('p', { class: 'muted' }, 'No attempt yet.'),
  ];
}

function item(label, ...value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

function attempt(a) {
  const ok = a.responseStatusCode >= 200 && a.responseStatusCode < 300;
  const outcome = a.responseStatusCode
    ? h('span', { class: ok ? 'ok' : 'bad' }, `HTTP ${a.responseStatusCode}`)
    : h('span', { class: 'bad' }, a.error || 'no response');
  return h('li', {},
    h('p', {}, time(a.sentAt), ' · ', outcome, ` · ${a.durationMs} ms`),
    a.responseStatusCode && a.error ? h('p', { class: 'hint' }, a.error) : null,
    a.responseBody
      ? h('details', { open: true }, h('summary', {}, 'Response body'), h('pre', { class: 'code' }, a.responseBody))
      : h('p', { class: 'muted' }, 'Empty response body.'));
}
