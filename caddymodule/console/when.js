// Times in forms: datetime-local inputs hold the reader's local time, the
// API takes RFC 3339 in UTC.

// localInput formats a time for a datetime-local input, in local time.
export function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// rfc3339 turns a datetime-local value into the API's form: "" for an
// empty input, null for one that is not a time.
export function rfc3339(value) {
  if (!value) return '';
  const d = new Date(value);
  if (isNaN(d)) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// fromRFC3339 is the datetime-local value of an API time ("" if none).
export function fromRFC3339(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !isNaN(d) ? localInput(d) : '';
}
