// Errors of the small forms (filters, replay, recover): the API's messages
// start with the field they name, so each shows next to its input.

// fieldErrors ties fields ({ name: { control, error } }, error an element
// of class field-error) and general, the element for any other error.
export function fieldErrors(fields, general) {
  for (const { control, error } of Object.values(fields)) {
    const described = control.getAttribute('aria-describedby');
    control.setAttribute('aria-describedby', described ? `${described} ${error.id}` : error.id);
  }
  return {
    clear() {
      general.hidden = true;
      general.textContent = '';
      for (const { control, error } of Object.values(fields)) {
        error.hidden = true;
        error.textContent = '';
        control.removeAttribute('aria-invalid');
      }
    },
    // show puts err where it belongs and moves focus there.
    show(err, prefix = '') {
      const target = fields[err.field];
      if (target) {
        target.error.textContent = err.detail;
        target.error.hidden = false;
        target.control.setAttribute('aria-invalid', 'true');
        target.control.focus();
        return;
      }
      general.textContent = prefix + err.message;
      general.hidden = false;
      general.setAttribute('tabindex', '-1');
      general.focus();
    },
  };
}

// invalid is an error of one field found before asking the API.
export function invalid(field, detail) {
  return Object.assign(new Error(`${field}: ${detail}`), { field, detail });
}
