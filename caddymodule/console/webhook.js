// One webhook: its properties, test and delete, the 24-hour chart, the
// delivery history (filtered, paged), replay and recovery (recover.js).

import { h, replace, time, badge, toast } from './dom.js';
import { call, events, paths, links } from './api.js';
import { enabledText } from './apps.js';
import { chart } from './chart.js';
import { replaySection, recoverSection } from './recover.js';

const PAGE = 20;

export async function showWebhook(view, app, id) {
  const [hook, catalog] = await Promise.all([
    call('GET', paths.hook(app, id), undefined, view.signal),
    events(view.signal),
  ]);
  const history = historySection(view, app, hook, catalog);

  const test = h('button', { type: 'button', id: 'send-test' }, 'Send test event');
  test.addEventListener('click', async () => {
    test.disabled = true;
    try {
      await call('POST', paths.test(app, id), undefined, view.signal);
      toast(`Test ${hook.events[0]} event sent.`);
      history.refresh();
    } catch (err) {
      if (err.name !== 'AbortError') toast(`Test not sent: ${err.message}`);
    } finally {
      test.disabled = false;
    }
  });

  view.page(hook.name, [['Apps', links.home()], [app, links.app(app)], [hook.name]],
    h('dl', { class: 'summary' },
      item('URL', h('span', { class: 'url' }, hook.url)),
      item('Events', hook.events.join(', ')),
      item('Signing secret', hook.hasSecret ? 'set' : 'none'),
      item('Enabled', enabledText(hook)),
      item('Updated', time(hook.updatedAt))),
    h('p', { class: 'actions' },
      h('a', { class: 'button', href: links.edit(app, id), id: 'edit' }, 'Edit'), ' ',
      test, ' ',
      h('button', { type: 'button', class: 'danger', id: 'delete', onclick: () => confirmDelete(view, app, hook) }, 'Delete…')),
    h('section', { 'aria-labelledby': 'chart-h' }, h('h2', { id: 'chart-h' }, 'Last 24 hours'), history.chart),
    history.section,
    replaySection(view, app, id, history),
    recoverSection(view, app, id, history));
  history.refresh();
}

function item(label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

// historySection is the paged, filtered history table and the chart; it
// reloads itself while a delivery shown is pending.
function historySection(view, app, hook, catalog) {
  const status = h('select', { id: 'h-status', name: 'status' },
    h('option', { value: '' }, 'any'), ['pending', 'succeeded', 'failed', 'skipped'].map((s) => h('option', { value: s }, s)));
  const event = h('select', { id: 'h-event', name: 'event' },
    h('option', { value: '' }, 'any'), catalog.map((e) => h('option', { value: e }, e)));
  const refreshButton = h('button', { type: 'submit', id: 'h-refresh' }, 'Refresh');
  const tbody = h('tbody');
  const table = h('table', { class: 'list history', id: 'history' },
    h('caption', { class: 'visually-hidden' }, 'Deliveries, newest first'),
    h('thead', {}, h('tr', {}, ['Event', 'Status', 'Code', 'Sent at', 'Attempts'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const empty = h('p', { class: 'muted', hidden: true }, 'No deliveries match.');
  const more = h('button', { type: 'button', id: 'h-more', hidden: true }, 'Load more');
  const chartBox = h('div', { class: 'chart-box' }, h('p', { class: 'muted' }, 'Loading…'));
  let cursor = null, paged = false, seq = 0;

  const row = (d) => h('tr', { dataset: { id: d.id, status: d.status } },
    h('th', { scope: 'row', 'data-label': 'Event' }, h('a', { href: links.delivery(app, hook.id, d.id) }, d.event)),
    h('td', { 'data-label': 'Status' }, badge(d.status)),
    h('td', { 'data-label': 'Code' }, d.responseStatusCode ? String(d.responseStatusCode) : (d.lastError ? h('span', { title: d.lastError }, 'error') : '—')),
    h('td', { 'data-label': 'Sent at' }, time(d.sentAt)),
    h('td', { 'data-label': 'Attempts' }, String(d.attempts)));

  const load = async (next) => {
    const mine = ++seq;
    const query = { limit: PAGE };
    if (status.value) query.status = status.value;
    if (event.value) query.event = event.value;
    if (next) query.cursor = next;
    const page = await call('GET', paths.deliveries(app, hook.id, query), undefined, view.signal);
    if (mine !== seq) return; // a newer load won
    if (!next) tbody.replaceChildren();
    tbody.append(...page.data.map(row));
    cursor = page.nextCursor || null;
    more.hidden = !cursor;
    empty.hidden = tbody.children.length > 0;
    table.hidden = !empty.hidden;
    // Follow pending deliveries while the user is on the first page.
    if (!paged && page.data.some((d) => d.status === 'pending')) view.later(() => refresh(), 1500);
  };
  const loadChart = async () => {
    const stats = await call('GET', paths.stats(app, hook.id, 24), undefined, view.signal);
    replace(chartBox, chart(stats));
  };
  const quiet = (p) => p.catch((err) => {
    if (err.name !== 'AbortError') toast(`Could not load: ${err.message}`);
  });
  const refresh = () => {
    paged = false;
    quiet(load());
    quiet(loadChart());
  };
  more.addEventListener('click', () => {
    paged = true;
    quiet(load(cursor));
  });

  const filters = h('form', { class: 'inline filters', onsubmit: (e) => { e.preventDefault(); refresh(); } },
    h('label', { for: 'h-status' }, 'Status'), status,
    h('label', { for: 'h-event' }, 'Event'), event,
    refreshButton);
  status.addEventListener('change', refresh);
  event.addEventListener('change', refresh);

  const section = h('section', { 'aria-labelledby': 'history-h' },
    h('h2', { id: 'history-h' }, 'Delivery history'), filters, table, empty, h('p', {}, more));
  return { section, chart: chartBox, refresh };
}

// confirmDelete asks in a modal dialog (keyboard friendly: Escape
// cancels, focus starts on Cancel) before deleting.
function confirmDelete(view, app, hook) {
  const cancel = h('button', { type: 'button', autofocus: true, id: 'delete-cancel' }, 'Cancel');
  const yes = h('button', { type: 'button', class: 'danger', id: 'delete-confirm' }, 'Delete webhook');
  const dialog = h('dialog', { 'aria-labelledby': 'delete-h', class: 'confirm' },
    h('h2', { id: 'delete-h' }, `Delete ${hook.name}?`),
    h('p', {}, 'The webhook and its delivery history are deleted. Events are no longer sent to ', h('span', { class: 'url' }, hook.url), '. This cannot be undone.'),
    h('p', { class: 'actions' }, yes, ' ', cancel));
  const close = () => { dialog.close(); dialog.remove(); };
  cancel.addEventListener('click', close);
  dialog.addEventListener('cancel', () => dialog.remove());
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await call('DELETE', paths.hook(app, hook.id), undefined, view.signal);
      close();
      toast(`Deleted ${hook.name}.`);
      view.go(links.app(app));
    } catch (err) {
      close();
      if (err.name !== 'AbortError') toast(`Not deleted: ${err.message}`);
    }
  });
  document.body.append(dialog);
  dialog.showModal();
}
