// The per-webhook options of the webhook form: extra headers, the CEL
// filter and the delivery settings. Sensitive header values are write-only
// like the secret: the form shows that one is set, never what it is, and
// keeps it unless a new value is typed.

import { h } from './dom.js';

export function optionFields(hook, field) {
  const headers = headersControl(hook);
  const filter = h('textarea', { id: 'f-filter', name: 'filter', rows: '2', spellcheck: 'false', class: 'mono',
    placeholder: 'data.status == "failed"' }, hook?.filter ?? '');
  const retry = h('input', { id: 'f-retry', name: 'retrySchedule', autocomplete: 'off', spellcheck: 'false', placeholder: 'app default',
    value: hook?.retrySchedule ? (hook.retrySchedule.length ? hook.retrySchedule.join(' ') : 'none') : '' });
  const timeout = h('input', { id: 'f-timeout', name: 'timeout', autocomplete: 'off', placeholder: 'app default', value: hook?.timeout ?? '' });
  const inflight = h('input', { id: 'f-maxinflight', name: 'maxInFlight', type: 'number', min: '1', max: '256', placeholder: 'app default', value: hook?.maxInFlight ?? '' });
  const rate = h('input', { id: 'f-ratelimit', name: 'rateLimit', type: 'number', min: '1', placeholder: 'no limit', value: hook?.rateLimit ?? '' });
  const f = {
    headers: field('headers', 'Headers', headers.fieldset, 'Sent with every delivery. Values of names such as Authorization or X-Api-Key are write-only: they are never shown again.'),
    filter: field('filter', 'Filter', filter, 'Optional CEL expression over event and data; only events for which it is true are delivered. Guard optional fields with has(data.x).'),
    retrySchedule: field('retrySchedule', 'Retry schedule', retry, 'Waits before each retry, such as "10s 5m 1h"; "none" for a single attempt; empty for the app\'s.'),
    timeout: field('timeout', 'Timeout', timeout, 'Per attempt, such as "5s"; empty for the app\'s.'),
    maxInFlight: field('maxInFlight', 'Max in flight', inflight, 'Concurrent attempts (1 to 256); empty for the app\'s.'),
    rateLimit: field('rateLimit', 'Rate limit', rate, 'At most this many attempts a second, evenly spaced; empty for none.'),
  };
  f.rows = () => [f.headers.row, f.filter.row, f.retrySchedule.row, f.timeout.row, f.maxInFlight.row, f.rateLimit.row];
  f.keys = ['headers', 'filter', 'retrySchedule', 'timeout', 'maxInFlight', 'rateLimit'];
  // apply adds the options to a create or PATCH body; on edit an empty
  // setting is null, which returns it to the app's default.
  f.apply = (body) => {
    const edit = Boolean(hook);
    const hs = headers.value();
    if (hs.error) return hs.error;
    if (hs.patch) body.headers = hs.patch;
    const expr = filter.value.trim();
    if (expr || (edit && hook.filter)) body.filter = expr;
    const words = retry.value.trim().split(/[\s,]+/).filter(Boolean);
    if (words.length === 1 && words[0] === 'none') body.retrySchedule = [];
    else if (words.length) body.retrySchedule = words;
    else if (edit) body.retrySchedule = null;
    if (timeout.value.trim()) body.timeout = timeout.value.trim();
    else if (edit) body.timeout = null;
    for (const [key, input] of [['maxInFlight', inflight], ['rateLimit', rate]]) {
      if (input.value !== '') body[key] = Number(input.value);
      else if (edit) body[key] = null;
    }
    return '';
  };
  return f;
}

// headersControl edits the header list as rows of name and value.
function headersControl(hook) {
  const list = h('div', { class: 'header-rows' });
  const rows = [];
  const original = new Set([...Object.keys(hook?.headers ?? {}), ...(hook?.sensitiveHeaders ?? [])]);
  const addRow = (name = '', value = '', sensitive = false) => {
    const n = rows.length;
    const nameInput = h('input', { id: `f-header-name-${n}`, class: 'mono header-name', autocomplete: 'off', spellcheck: 'false', placeholder: 'X-Api-Key', value: name });
    const valueInput = h('input', { id: `f-header-value-${n}`, class: 'mono header-value', autocomplete: 'off', spellcheck: 'false',
      placeholder: sensitive ? 'set (write-only): type to replace' : 'value', value: sensitive ? '' : value });
    const row = { nameInput, valueInput, sensitive, original: name, removed: false };
    const remove = h('button', { type: 'button', class: 'header-remove', 'aria-label': `Remove header ${name || n + 1}`, onclick: () => {
      row.removed = true;
      el.remove();
    } }, 'Remove');
    const el = h('div', { class: 'header-row' },
      h('label', { for: nameInput.id, class: 'visually-hidden' }, `Header ${n + 1} name`), nameInput, ' ',
      h('label', { for: valueInput.id, class: 'visually-hidden' }, `Header ${n + 1} value`), valueInput, ' ', remove);
    rows.push(row);
    list.append(el);
    return row;
  };
  for (const [name, value] of Object.entries(hook?.headers ?? {})) addRow(name, value);
  for (const name of hook?.sensitiveHeaders ?? []) addRow(name, '', true);
  const add = h('button', { type: 'button', id: 'f-header-add', onclick: () => addRow().nameInput.focus() }, 'Add header');
  const fieldset = h('fieldset', { id: 'f-headers' }, h('legend', {}, 'Headers'), list, add);
  return {
    fieldset,
    // value is the merge patch: set what is typed, null what was removed
    // or renamed, leave out a sensitive value left empty (kept).
    value() {
      const patch = {};
      const kept = new Set();
      for (const r of rows) {
        const name = r.nameInput.value.trim();
        if (r.removed || !name) continue;
        if (r.sensitive && name === r.original && r.valueInput.value === '') {
          kept.add(name.toLowerCase());
          continue;
        }
        if (r.valueInput.value === '' && !r.sensitive) {
          return { error: `headers: type a value for ${name}, or remove it` };
        }
        if (r.sensitive && name !== r.original && r.valueInput.value === '') {
          return { error: `headers: type the value of ${name} again to rename it` };
        }
        patch[name] = r.valueInput.value;
        kept.add(name.toLowerCase());
      }
      for (const name of original) {
        if (!kept.has(name.toLowerCase())) patch[name] = null;
      }
      return { patch: Object.keys(patch).length ? patch : undefined };
    },
  };
}
