// The console's entry point: a hash router that renders one view at a time
// into <main>. Each view gets a View whose signal aborts its requests and
// whose timers stop when the user navigates away.

import { h, replace } from './dom.js';
import { showApps, showApp } from './apps.js';
import { showForm } from './form.js';
import { showWebhook } from './webhook.js';
import { showDelivery } from './delivery.js';
import { showEvents, showEvent } from './events.js';
import { tenant } from './tenant.js';

const routes = [
  // In tenant mode home is the one app: there is no app picker.
  [/^#?\/?$/, tenant ? (view) => showApp(view, tenant.app) : showApps],
  [/^#\/apps\/([^/]+)$/, showApp],
  [/^#\/apps\/([^/]+)\/new$/, (view, app) => showForm(view, app)],
  [/^#\/apps\/([^/]+)\/webhooks\/([^/]+)$/, showWebhook],
  [/^#\/apps\/([^/]+)\/webhooks\/([^/]+)\/edit$/, (view, app, id) => showForm(view, app, id)],
  [/^#\/apps\/([^/]+)\/webhooks\/([^/]+)\/deliveries\/([^/]+)$/, showDelivery],
  // The event log's filters follow a ?, which showEvents reads itself.
  [/^#\/apps\/([^/?]+)\/events(?:\?.*)?$/, showEvents],
  [/^#\/apps\/([^/]+)\/events\/([^/?]+)$/, showEvent],
];

class View {
  constructor(main, first) {
    this.main = main;
    this.first = first;
    this.controller = new AbortController();
    this.timers = new Set();
  }

  get signal() { return this.controller.signal; }
  get live() { return !this.signal.aborted; }

  close() {
    this.controller.abort();
    for (const t of this.timers) clearTimeout(t);
  }

  // later runs fn after ms unless the view was left.
  later(fn, ms) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.live) fn();
    }, ms);
    this.timers.add(t);
  }

  // page shows a page titled title under the breadcrumbs [label, href]...
  page(title, crumbs, ...content) {
    if (!this.live) return;
    document.title = `${title} · Webhooks`;
    // A tenant sees one app: no crumb leads to the list of apps.
    if (tenant) crumbs = crumbs.filter(([label, href]) => href !== '#/' && !(label === 'Apps' && !href));
    replace(document.getElementById('crumbs'), h('ol', {}, crumbs.map(([label, href]) =>
      h('li', {}, href ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label)))));
    const heading = h('h1', { tabindex: '-1' }, title);
    replace(this.main, heading, ...content);
    // Move focus to the new page so keyboard and screen reader users
    // start there, as after a full page load.
    if (!this.first) heading.focus();
  }

  fail(err) {
    if (!this.live) return;
    this.page('Something went wrong', [['Apps', '#/']],
      h('p', { class: 'alert', role: 'alert' }, err.message),
      h('p', {}, h('button', { type: 'button', onclick: route }, 'Retry')));
  }

  go(hash) { location.hash = hash; }
}

let current;

function route() {
  current?.close();
  const view = new View(document.getElementById('main'), current === undefined);
  current = view;
  if (tenant?.error) {
    view.fail(new Error(tenant.error));
    return;
  }
  const hash = location.hash || '#/';
  for (const [pattern, show] of routes) {
    const m = pattern.exec(hash);
    if (m) {
      let args;
      try {
        args = m.slice(1).map(decodeURIComponent);
      } catch {
        break;
      }
      Promise.resolve().then(() => show(view, ...args)).catch((err) => {
        if (err.name !== 'AbortError') view.fail(err);
      });
      return;
    }
  }
  view.fail(new Error(`No page at ${hash}.`));
}

addEventListener('hashchange', route);
route();
