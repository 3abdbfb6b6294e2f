// The first two levels: pick an app, then list its webhooks.

import { h, replace, time, badge } from './dom.js';
import { call, paths, links } from './api.js';

export async function showApps(view) {
  const { data: apps } = await call('GET', paths.apps(), undefined, view.signal);
  const input = h('input', { id: 'app-id', name: 'app', required: true, autocomplete: 'off', spellcheck: 'false' });
  const open = (e) => {
    e.preventDefault();
    const app = input.value.trim();
    if (app) view.go(links.app(app));
    else input.focus();
  };
  view.page('Apps', [['Apps']],
    h('form', { class: 'inline', onsubmit: open },
      h('label', { for: 'app-id' }, 'App id'),
      input,
      h('button', { type: 'submit' }, 'Open')),
    h('p', { class: 'hint' }, 'The app id is the data.appId of the events your service posts. Open any app to add its first webhook.'),
    h('h2', {}, 'Apps with webhooks'),
    apps.length
      ? h('ul', { class: 'apps' }, apps.map((app) => h('li', {}, h('a', { href: links.app(app) }, app))))
      : h('p', { class: 'muted' }, 'No app has webhooks yet.'),
    h('p', { class: 'hint' }, 'The API behind this console is described in ', h('a', { href: '../openapi.json' }, 'openapi.json'), '.'));
}

export async function showApp(view, app) {
  const { data: hooks } = await call('GET', paths.hooks(app), undefined, view.signal);
  const actions = h('p', { class: 'actions' }, h('a', { class: 'button primary', href: links.create(app) }, 'New webhook'), ' ',
    h('a', { class: 'button', href: links.events(app), id: 'events-link' }, 'Events'));
  if (!hooks.length) {
    view.page(`Webhooks of ${app}`, [['Apps', links.home()], [app]], actions,
      h('p', { class: 'muted', id: 'no-webhooks' }, 'This app has no webhooks yet.'));
    return;
  }
  const rows = hooks.map((hook) => {
    const last = h('td', { 'data-label': 'Last delivery' }, h('span', { class: 'muted' }, '…'));
    lastDelivery(view, app, hook, last);
    return h('tr', { dataset: { id: hook.id } },
      h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href: links.hook(app, hook.id) }, hook.name)),
      h('td', { 'data-label': 'URL', class: 'url' }, hook.url),
      h('td', { 'data-label': 'Events' }, hook.events.join(', ')),
      h('td', { 'data-label': 'Secret' }, hook.hasSecret ? 'set' : 'none'),
      h('td', { 'data-label': 'Enabled' }, enabledText(hook)),
      last);
  });
  view.page(`Webhooks of ${app}`, [['Apps', links.home()], [app]], actions,
    h('table', { class: 'list' },
      h('caption', { class: 'visually-hidden' }, `Webhooks of ${app}`),
      h('thead', {}, h('tr', {}, ['Name', 'URL', 'Events', 'Secret', 'Enabled', 'Last delivery'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows)));
}

// enabledText says whether a webhook delivers and, if the sender turned it
// off, why.
export function enabledText(hook) {
  if (hook.enabled) return 'yes';
  const why = { gone: 'endpoint answered 410 Gone', failing: 'kept failing' }[hook.disabledReason];
  return why ? `no (${why})` : 'no';
}

async function lastDelivery(view, app, hook, cell) {
  try {
    const { data } = await call('GET', paths.deliveries(app, hook.id, { limit: 1 }), undefined, view.signal);
    replace(cell, data.length ? [badge(data[0].status), ' ', time(data[0].sentAt || data[0].createdAt)] : h('span', { class: 'muted' }, 'none yet'));
  } catch (err) {
    if (err.name !== 'AbortError') replace(cell, h('span', { class: 'muted' }, 'unknown'));
  }
}
