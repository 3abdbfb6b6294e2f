// The event log of an app: every retained event, newest first, narrowed by
// type, time window and a CEL filter; and one event with its body and each
// of its deliveries.

import { h, replace, time, badge, toast } from './dom.js';
import { call, events, paths, links } from './api.js';
import { rfc3339, fromRFC3339 } from './when.js';
import { fieldErrors, invalid } from './errors.js';

const PAGE = 20;
const PREVIEW = 120;

export async function showEvents(view, app) {
  const catalog = await events(view.signal);
  // The filters live in the route's query, so Back from an event and a
  // shared link show the same list.
  const hash = location.hash;
  const params = new URLSearchParams(hash.includes('?') ? hash.slice(hash.indexOf('?') + 1) : '');

  const type = h('select', { id: 'e-event', name: 'event', value: params.get('event') || '' },
    h('option', { value: '' }, 'any'), catalog.map((e) => h('option', { value: e }, e)));
  const since = h('input', { id: 'e-since', name: 'since', type: 'datetime-local', step: '1', value: fromRFC3339(params.get('since')) });
  const until = h('input', { id: 'e-until', name: 'until', type: 'datetime-local', step: '1', value: fromRFC3339(params.get('until')) });
  const filter = h('input', {
    id: 'e-filter', name: 'filter', class: 'mono', autocomplete: 'off', spellcheck: 'false', maxlength: '4096',
    placeholder: 'data.status == "failed"', value: params.get('filter') || '',
  });
  const filterHint = h('p', { class: 'hint', id: 'e-filter-hint' },
    'A CEL expression over event and data, as in a webhook\'s filter; guard optional fields with has(data.x).');
  filter.setAttribute('aria-describedby', filterHint.id);
  const slot = (control) => {
    const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
    return { control, error };
  };
  const fields = { event: slot(type), since: slot(since), until: slot(until), filter: slot(filter) };
  fields.filter.error.classList.add('code-error');
  const general = h('p', { class: 'alert', role: 'alert', id: 'e-error', hidden: true });
  const errors = fieldErrors(fields, general);

  const tbody = h('tbody');
  const table = h('table', { class: 'list events', id: 'events', hidden: true },
    h('caption', { class: 'visually-hidden' }, 'Events, newest first'),
    h('thead', {}, h('tr', {}, ['Event', 'Received', 'Deliveries', 'Body'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const empty = h('p', { class: 'muted', id: 'e-empty', hidden: true }, 'No events match.');
  const partial = h('p', { class: 'notice', id: 'e-partial', hidden: true },
    'Scan stopped early; load more to continue.');
  const status = h('p', { role: 'status', class: 'visually-hidden' });
  const more = h('button', { type: 'button', id: 'e-more', hidden: true }, 'Load more');
  let applied = {}, cursor = null, seq = 0;

  const row = (e) => h('tr', { dataset: { id: e.id, event: e.event } },
    h('th', { scope: 'row', 'data-label': 'Event' }, h('a', { href: links.event(app, e.id) }, e.event)),
    h('td', { 'data-label': 'Received' }, time(e.receivedAt)),
    h('td', { 'data-label': 'Deliveries' }, String(e.deliveries)),
    h('td', { 'data-label': 'Body', class: 'preview mono' }, preview(e.body)));

  const load = async (next) => {
    const mine = ++seq;
    const query = { ...applied, limit: PAGE };
    if (next) query.cursor = next;
    more.disabled = true;
    let page;
    try {
      page = await call('GET', paths.appEvents(app, query), undefined, view.signal);
    } catch (err) {
      if (err.name === 'AbortError' || mine !== seq) return;
      if (!next) {
        tbody.replaceChildren();
        table.hidden = empty.hidden = partial.hidden = more.hidden = true;
      }
      errors.show(err, 'Could not load the events: ');
      return;
    } finally {
      more.disabled = false;
    }
    if (mine !== seq) return; // a newer load won
    if (!next) tbody.replaceChildren();
    tbody.append(...page.data.map(row));
    cursor = page.nextCursor || null;
    more.hidden = !cursor;
    // A filtered page examines a bounded number of events: fewer rows
    // than asked for does not mean nothing older matches.
    partial.hidden = !(page.partial && cursor);
    table.hidden = tbody.children.length === 0;
    empty.hidden = !table.hidden || !!cursor;
    status.textContent = `${tbody.children.length} events shown${partial.hidden ? '' : '; scan stopped early, load more to continue'}.`;
  };

  const apply = () => {
    errors.clear();
    const q = {};
    if (type.value) q.event = type.value;
    for (const [name, input] of [['since', since], ['until', until]]) {
      const iso = rfc3339(input.value);
      if (iso === null) return errors.show(invalid(name, 'pick a date and time, or leave it empty'));
      if (iso) q[name] = iso;
    }
    if (filter.value.trim()) q.filter = filter.value.trim();
    applied = q;
    // The address shows these filters without a new history entry or a
    // new render.
    history.replaceState(null, '', links.events(app, q));
    return load(null);
  };
  more.addEventListener('click', () => load(cursor));

  const form = h('form', { class: 'event-filters', id: 'e-filters', onsubmit: (e) => { e.preventDefault(); apply(); } },
    h('div', { class: 'field' }, h('label', { for: type.id }, 'Event'), type, fields.event.error),
    h('div', { class: 'field' }, h('label', { for: since.id }, 'Received since'), since, fields.since.error),
    h('div', { class: 'field' }, h('label', { for: until.id }, 'until'), until, fields.until.error),
    h('div', { class: 'field wide' }, h('label', { for: filter.id }, 'Filter'), filter, filterHint, fields.filter.error),
    h('p', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'e-apply' }, 'Apply'), ' ',
      h('button', { type: 'button', id: 'e-clear', onclick: () => {
        type.value = since.value = until.value = filter.value = '';
        apply();
      } }, 'Clear')));
  type.addEventListener('change', apply);

  view.page(`Events of ${app}`, [['Apps', links.home()], [app, links.app(app)], ['Events']],
    h('p', { class: 'hint' }, 'Every retained event the service posted for this app, newest first, with the deliveries it made.'),
    form, general, table, empty, partial, status, h('p', {}, more));
  await apply();
}

// preview is the start of a body, as text.
function preview(body) {
  const head = [...body.slice(0, PREVIEW + 1)];
  return head.length > PREVIEW ? `${head.slice(0, PREVIEW).join('')}…` : body;
}

export async function showEvent(view, app, eid) {
  const [first, { data: hooks }] = await Promise.all([
    call('GET', paths.appEvent(app, eid), undefined, view.signal),
    call('GET', paths.hooks(app), undefined, view.signal),
  ]);
  const names = new Map(hooks.map((w) => [w.id, w.name]));
  const deliveries = h('div');

  const load = async () => {
    fill(await call('GET', paths.appEvent(app, eid), undefined, view.signal));
  };
  const fill = (ev) => {
    replace(deliveries, deliveryList(app, ev, names));
    // Follow deliveries on their way until they settle.
    if (ev.deliveries.some((d) => d.status === 'pending')) {
      view.later(() => load().catch((err) => {
        if (err.name !== 'AbortError') toast(`Could not load: ${err.message}`);
      }), 1500);
    }
  };

  view.page(`Event ${first.event}`, [['Apps', links.home()], [app, links.app(app)], ['Events', links.events(app)], ['Event']],
    h('dl', { class: 'summary' },
      item('Event', first.event),
      item('Received', time(first.receivedAt)),
      item('Event id', h('code', { id: 'event-id' }, first.id), h('span', { class: 'hint' }, ' (the webhook-id header)'))),
    h('h2', {}, 'Body'),
    h('pre', { class: 'code', id: 'event-body', tabindex: '0', 'aria-label': 'Event body' }, first.body),
    h('h2', {}, 'Deliveries'),
    deliveries);
  fill(first);
}

function deliveryList(app, ev, names) {
  if (!ev.deliveries.length) {
    return h('p', { class: 'muted', id: 'no-deliveries' }, 'No deliveries: no webhook of the app took this event when it arrived. Replay it from a webhook\'s page.');
  }
  return h('table', { class: 'list', id: 'event-deliveries' },
    h('caption', { class: 'visually-hidden' }, 'Deliveries of this event'),
    h('thead', {}, h('tr', {}, ['Webhook', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, ev.deliveries.map((d) => h('tr', { dataset: { id: d.id, webhook: d.webhookId, status: d.status } },
      h('th', { scope: 'row', 'data-label': 'Webhook' },
        h('a', { href: links.delivery(app, d.webhookId, d.id) }, names.get(d.webhookId) ?? d.webhookId)),
      h('td', { 'data-label': 'Status' }, badge(d.status))))));
}

function item(label, ...value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}
