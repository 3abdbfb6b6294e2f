// DOM helpers. Elements are built from text nodes, never from innerHTML, so
// nothing the API returns (names, URLs, bodies) is ever parsed as markup.

const SVG = 'http://www.w3.org/2000/svg';

// h builds an HTML element: h('a', {href: '#/'}, 'Home').
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

// s builds an SVG element the same way.
export function s(tag, props, ...children) {
  return build(document.createElementNS(SVG, tag), props, children);
}

function build(el, props = {}, children) {
  const late = {};
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    // Properties a user can change are set after the children exist
    // (a select's value needs its options).
    else if (key === 'value' || key === 'checked') late[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  Object.assign(el, late);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// replace swaps the content of el.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// time renders an RFC 3339 time in the reader's locale, keeping the exact
// value in the datetime attribute.
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, dateTime.format(new Date(iso)));
}

// badge shows a delivery status as a word, never by colour alone.
export function badge(status) {
  return h('span', { class: `badge badge-${status}` }, status);
}

let toastTimer;

// toast announces a short message to everyone, screen readers included.
export function toast(message) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.classList.add('shown');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('shown'), 4000);
}
