// The 24-hour chart: deliveries per hour, succeeded and failed stacked,
// drawn as inline SVG from GET .../stats (no third-party service).

import { h, s } from './dom.js';

const W = 480, H = 132, LEFT = 30, BOTTOM = 18, TOP = 6;
const hourFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
let charts = 0;

export function chart(stats) {
  const hours = stats.data;
  const total = (b) => b.succeeded + b.failed + b.pending;
  const max = niceMax(Math.max(1, ...hours.map(total)));
  const sum = (key) => hours.reduce((n, b) => n + b[key], 0);
  const slot = (W - LEFT) / hours.length;
  const y = (n) => TOP + (H - TOP - BOTTOM) * (1 - n / max);
  const id = `chart-${++charts}`;
  const summary = `${sum('succeeded')} succeeded, ${sum('failed')} failed, ${sum('pending')} pending in the last ${hours.length} hours`
    + (stats.truncated ? ' (only the newest 10,000 counted)' : '');

  const bars = hours.map((b, i) => {
    const x = LEFT + i * slot + 1;
    const width = Math.max(1, slot - 2);
    let level = 0;
    const rects = [['succeeded', b.succeeded], ['failed', b.failed], ['pending', b.pending]].filter(([, n]) => n > 0).map(([kind, n]) => {
      const r = s('rect', { class: `bar-${kind}`, x, width, y: y(level + n), height: Math.max(0.5, y(level) - y(level + n)) });
      level += n;
      return r;
    });
    const label = `${hourFormat.format(new Date(b.start))}: ${b.succeeded} succeeded, ${b.failed} failed` + (b.pending ? `, ${b.pending} pending` : '');
    return s('g', {}, s('title', {}, label), s('rect', { class: 'bar-slot', x, width, y: TOP, height: H - TOP - BOTTOM }), rects);
  });
  const ticks = hours.map((b, i) => [b, i]).filter(([b]) => new Date(b.start).getHours() % 6 === 0)
    .map(([b, i]) => s('text', { class: 'tick', x: LEFT + i * slot + slot / 2, y: H - 4, 'text-anchor': 'middle' }, hourFormat.format(new Date(b.start))));

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-t`, class: 'chart-svg' },
    s('title', { id: `${id}-t` }, `Deliveries per hour: ${summary}`),
    s('line', { class: 'axis', x1: LEFT, x2: W, y1: y(0), y2: y(0) }),
    s('text', { class: 'tick', x: LEFT - 4, y: y(max) + 8, 'text-anchor': 'end' }, String(max)),
    s('text', { class: 'tick', x: LEFT - 4, y: y(0), 'text-anchor': 'end' }, '0'),
    bars, ticks);
  return h('figure', { class: 'chart' }, svg,
    h('figcaption', {},
      h('span', { class: 'key key-succeeded' }, 'succeeded'), ' ',
      h('span', { class: 'key key-failed' }, 'failed'), ' ',
      h('span', { class: 'key key-pending' }, 'pending'), ' · ', summary));
}

// niceMax rounds the top of the scale up to 1, 2 or 5 times a power of ten.
function niceMax(n) {
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= n);
}
