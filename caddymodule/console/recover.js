// A webhook's work over a time window: replay the events it never had
// (a new webhook's backfill) and recover its failed or skipped deliveries.

import { h } from './dom.js';
import { call, paths } from './api.js';
import { localInput, rfc3339 } from './when.js';
import { fieldErrors, invalid } from './errors.js';

// replaySection sends the webhook every event of a window it has no
// delivery of.
export function replaySection(view, app, id, history) {
  const since = h('input', { id: 'rp-since', name: 'since', type: 'datetime-local', step: '1', value: localInput(new Date(Date.now() - 24 * 3600e3)) });
  const until = h('input', { id: 'rp-until', name: 'until', type: 'datetime-local', step: '1' });
  const slots = {
    since: { control: since, error: h('p', { class: 'field-error', id: 'rp-since-error', hidden: true }) },
    until: { control: until, error: h('p', { class: 'field-error', id: 'rp-until-error', hidden: true }) },
  };
  const general = h('p', { class: 'alert', role: 'alert', hidden: true });
  const errors = fieldErrors(slots, general);
  const submit = h('button', { type: 'submit', id: 'rp-submit' }, 'Replay');
  const result = h('p', { role: 'status', id: 'rp-result' });
  const onsubmit = async (e) => {
    e.preventDefault();
    errors.clear();
    result.textContent = '';
    const body = { since: rfc3339(since.value) };
    const end = rfc3339(until.value);
    if (!body.since) return errors.show(invalid('since', 'pick a date and time'));
    if (end === null) return errors.show(invalid('until', 'pick a date and time, or leave it empty for now'));
    if (end) body.until = end;
    submit.disabled = true;
    try {
      const { replayed } = await call('POST', paths.replay(app, id), body, view.signal);
      result.dataset.replayed = String(replayed);
      result.textContent = replayed === 0
        ? 'No event replayed: the webhook already has every event of that window it subscribes to.'
        : `${replayed} ${replayed === 1 ? 'event' : 'events'} replayed; the deliveries are on their way.`;
      history.refresh();
    } catch (err) {
      if (err.name !== 'AbortError') errors.show(err, 'Not replayed: ');
    } finally {
      submit.disabled = false;
    }
  };
  return h('section', { 'aria-labelledby': 'replay-h' },
    h('h2', { id: 'replay-h' }, 'Replay since…'),
    h('p', { class: 'hint spaced' }, 'Sends every retained event of the window that this webhook subscribes to and never had, with the event\'s own webhook-id: a new webhook catches up this way. Replaying the same window again sends nothing twice.'),
    h('form', { class: 'inline', onsubmit },
      h('label', { for: since.id }, 'Since'), since,
      h('label', { for: until.id }, 'until'), until,
      submit),
    h('p', { class: 'hint' }, 'Leave “until” empty to replay up to now.'),
    slots.since.error, slots.until.error, general, result);
}

// recoverSection resends every delivery since a time whose status is one
// of those ticked.
export function recoverSection(view, app, id, history) {
  const since = h('input', { id: 'r-since', name: 'since', type: 'datetime-local', step: '1', value: localInput(new Date(Date.now() - 24 * 3600e3)) });
  const choices = [['failed', 'failed'], ['skipped', 'skipped (arrived while disabled)']];
  const boxes = choices.map(([value]) => h('input', { type: 'checkbox', id: `r-status-${value}`, name: 'status', value, checked: value === 'failed' }));
  const group = h('div', { role: 'group', class: 'inline-checks', id: 'r-status', tabindex: '-1', 'aria-labelledby': 'r-status-label' },
    h('span', { class: 'label', id: 'r-status-label' }, 'Status'),
    boxes.map((box, i) => h('label', { class: 'check', for: box.id }, box, ' ', choices[i][1])));
  const slots = {
    since: { control: since, error: h('p', { class: 'field-error', id: 'r-since-error', hidden: true }) },
    status: { control: group, error: h('p', { class: 'field-error', id: 'r-status-error', hidden: true }) },
  };
  const general = h('p', { class: 'alert', role: 'alert', hidden: true });
  const errors = fieldErrors(slots, general);
  const result = h('p', { role: 'status', id: 'r-result' });
  const onsubmit = async (e) => {
    e.preventDefault();
    errors.clear();
    result.textContent = '';
    const when = rfc3339(since.value);
    if (!when) return errors.show(invalid('since', 'pick a date and time'));
    // None ticked is sent as is: the API says what it wants.
    const status = boxes.filter((b) => b.checked).map((b) => b.value);
    try {
      const { recovered } = await call('POST', paths.recover(app, id), { since: when, status }, view.signal);
      const what = status.join(' or ');
      result.dataset.recovered = String(recovered);
      result.textContent = recovered === 1 ? `1 ${what} delivery queued again.` : `${recovered} ${what} deliveries queued again.`;
      history.refresh();
    } catch (err) {
      if (err.name !== 'AbortError') errors.show(err, 'Not recovered: ');
    }
  };
  return h('section', { 'aria-labelledby': 'recover-h' },
    h('h2', { id: 'recover-h' }, 'Recover deliveries'),
    h('form', { class: 'inline', onsubmit },
      h('label', { for: since.id }, 'Resend every delivery since'), since,
      group,
      h('button', { type: 'submit', id: 'r-submit' }, 'Resend')),
    slots.since.error, slots.status.error, general, result);
}
