// Create and edit a webhook. A failed save keeps every value the user
// typed and shows the API's error next to the field it names.

import { h, toast } from './dom.js';
import { call, events, paths, links, ApiError } from './api.js';
import { optionFields } from './options.js';

export async function showForm(view, app, id) {
  const [catalog, hook] = await Promise.all([
    events(view.signal),
    id ? call('GET', paths.hook(app, id), undefined, view.signal) : null,
  ]);
  const f = fields(catalog, hook);
  const save = h('button', { type: 'submit', class: 'primary' }, id ? 'Save changes' : 'Create webhook');
  const formError = h('p', { class: 'alert', role: 'alert', hidden: true });
  const cancel = id ? links.hook(app, id) : links.app(app);

  const form = h('form', { class: 'stack', novalidate: true }, formError,
    f.name.row, f.url.row, f.events.row, f.secret.row, f.enabled.row,
    h('h3', {}, 'Delivery options'), ...f.options.rows(),
    h('p', { class: 'actions' }, save, ' ', h('a', { class: 'button', href: cancel }, 'Cancel')));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(f, formError);
    const body = f.value();
    if (body.error) return showError(f, formError, body.error);
    save.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const saved = id
        ? await call('PATCH', paths.hook(app, id), body, view.signal)
        : await call('POST', paths.hooks(app), body, view.signal);
      toast(id ? 'Webhook saved.' : 'Webhook created.');
      view.go(links.hook(app, saved.id));
    } catch (err) {
      if (err.name === 'AbortError') return;
      showError(f, formError, err);
    } finally {
      save.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  const crumbs = [['Apps', links.home()], [app, links.app(app)]];
  if (hook) crumbs.push([hook.name, links.hook(app, id)], ['Edit']);
  else crumbs.push(['New webhook']);
  view.page(hook ? `Edit ${hook.name}` : 'New webhook', crumbs, form);
}

// field wraps a control with its label (null when the control labels
// itself), hint and error, tied together by ids so screen readers read the
// hint and the error with the control.
function field(key, label, control, hint) {
  const error = h('p', { class: 'field-error', id: `f-${key}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `f-${key}-hint` }, hint) : null;
  const described = [hintEl && hintEl.id, error.id].filter(Boolean).join(' ');
  const focusable = control.matches('input, select, textarea') ? control : control.querySelector('input, button');
  focusable.setAttribute('aria-describedby', described);
  const row = label === null || control.matches('fieldset')
    ? h('div', { class: 'field' }, control, hintEl, error)
    : h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl, error);
  return { row, error, focusable, control };
}

function fields(catalog, hook) {
  const name = h('input', { id: 'f-name', name: 'name', maxlength: '200', autocomplete: 'off', value: hook?.name ?? '' });
  const url = h('input', { id: 'f-url', name: 'url', type: 'url', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://example.com/webhooks', value: hook?.url ?? '' });
  const boxes = catalog.map((ev) => h('input', { type: 'checkbox', id: `f-ev-${ev}`, name: 'events', value: ev, checked: hook ? hook.events.includes(ev) : false }));
  const eventSet = h('fieldset', { id: 'f-events' }, h('legend', {}, 'Events'),
    h('div', { class: 'checks' }, boxes.map((box) => h('label', { class: 'check', for: box.id }, box, ' ', box.value))));
  const secret = secretControl(hook);
  const enabled = h('input', { type: 'checkbox', id: 'f-enabled', name: 'enabled', checked: hook ? hook.enabled : true });
  const enabledBox = h('label', { class: 'check', for: 'f-enabled' }, enabled, ' Enabled (deliver events)');

  const f = {
    name: field('name', 'Name', name),
    url: field('url', 'URL', url, 'Where each event is POSTed: http or https.'),
    events: field('events', 'Events', eventSet, 'One or more. Test events use the first one ticked, in this order.'),
    secret: field('secret', 'Signing secret', secret.fieldset, 'Write-only: it is never shown again, so copy it to the receiver before saving.'),
    enabled: field('enabled', null, h('div', { class: 'check-row' }, enabledBox,
      hook && !hook.enabled && hook.disabledReason ? h('span', { class: 'hint' }, ` (turned off by the sender: ${hook.disabledReason})`) : null)),
  };
  f.options = optionFields(hook, field);
  for (const key of f.options.keys) f[key] = f.options[key];
  f.value = () => {
    const body = {
      name: name.value,
      url: url.value.trim(),
      events: boxes.filter((b) => b.checked).map((b) => b.value),
      enabled: enabled.checked,
    };
    const s = secret.value();
    if (s.error) return { error: new ApiError(400, s.error) };
    if (s.secret !== undefined) body.secret = s.secret;
    const optionError = f.options.apply(body);
    if (optionError) return { error: new ApiError(400, optionError) };
    return body;
  };
  return f;
}

// secretControl is the write-only secret: set, keep, change or remove,
// and a generator for a strong one.
function secretControl(hook) {
  const modes = hook?.hasSecret
    ? [['keep', 'Keep the current secret'], ['change', 'Change it'], ['remove', 'Remove it (stop signing)']]
    : [['keep', 'No secret (requests are not signed)'], ['set', 'Set a secret']];
  const radios = modes.map(([value]) => h('input', { type: 'radio', name: 'secret-mode', id: `f-secret-${value}`, value, checked: value === 'keep' }));
  const input = h('input', { id: 'f-secret', name: 'secret', autocomplete: 'off', spellcheck: 'false', class: 'mono', disabled: true });
  const generate = h('button', { type: 'button', disabled: true, onclick: () => {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    input.value = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    input.focus();
  } }, 'Generate');
  const sync = () => {
    const mode = radios.find((r) => r.checked).value;
    const typing = mode === 'set' || mode === 'change';
    input.disabled = generate.disabled = !typing;
  };
  radios.forEach((r) => r.addEventListener('change', sync));
  const fieldset = h('fieldset', { id: 'f-secret-group' }, h('legend', {}, 'Signing secret'),
    h('div', { class: 'checks' }, radios.map((r, i) => h('label', { class: 'check', for: r.id }, r, ' ', modes[i][1]))),
    h('div', { class: 'secret-input' },
      h('label', { for: 'f-secret', class: 'visually-hidden' }, 'New signing secret'),
      input, ' ', generate));
  return {
    fieldset,
    value() {
      const mode = radios.find((r) => r.checked).value;
      if (mode === 'remove') return { secret: '' };
      if (mode === 'keep') return {};
      if (!input.value) return { error: 'secret: type a secret or press Generate, or keep the current setting' };
      return { secret: input.value };
    },
  };
}

function clearErrors(f, formError) {
  formError.hidden = true;
  for (const key of ['name', 'url', 'events', 'secret', 'enabled', ...f.options.keys]) {
    f[key].error.hidden = true;
    f[key].error.textContent = '';
    f[key].focusable.removeAttribute('aria-invalid');
  }
}

// showError puts the error next to the field it names (the API's messages
// start with it), or above the form, and moves focus there.
function showError(f, formError, err) {
  const target = f[err.field];
  if (target && target.error) {
    target.error.textContent = err.detail;
    target.error.hidden = false;
    target.focusable.setAttribute('aria-invalid', 'true');
    target.focusable.focus();
    return;
  }
  formError.textContent = `Not saved: ${err.message}`;
  formError.hidden = false;
  formError.setAttribute('tabindex', '-1');
  formError.focus();
}
