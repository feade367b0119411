// A form generated from a JSON Schema (a human node's answer): string, number, integer,
// boolean, enum and objects of those; required fields; minimum/maximum, minLength/maxLength.
// The page checks those before sending; the server checks the whole schema, and its errors
// ("at `/field`: …") are shown beside the field they name.

import { el } from './api.js';

let seq = 0;

function label(name, schema) {
  return schema.title || name;
}

/** One field: returns {node, read() -> {value, present}, setError(msg)}. */
function field(name, schema, required, pointer) {
  const id = `f${++seq}`;
  const errId = `${id}-err`;
  const err = el('span', { class: 'field-error', id: errId, 'aria-live': 'polite' });
  const req = required ? el('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null;
  const help = schema.description ? el('span', { class: 'help' }, schema.description) : null;
  const common = { id, name, 'aria-describedby': errId, 'aria-required': required ? 'true' : null };
  let input;
  let read;
  if (schema.type === 'object' && schema.properties) {
    const sub = objectFields(schema, pointer);
    const fs = el('fieldset', { class: 'sub' }, el('legend', {}, label(name, schema), req), sub.nodes, err);
    return {
      node: fs, pointer, children: sub.fields,
      read: () => ({ value: sub.read(), present: true }),
      setError: (m) => { err.textContent = m || ''; },
      check: () => sub.check(),
    };
  }
  if (Array.isArray(schema.enum)) {
    input = el('select', common,
      required ? null : el('option', { value: '' }, '—'),
      schema.enum.map((v, i) => el('option', { value: String(i) }, String(v))));
    read = () => (input.value === '' ? { present: false } : { value: schema.enum[Number(input.value)], present: true });
  } else if (schema.type === 'boolean' && required) {
    // A required yes/no is two choices and no default: not answering is not a "no".
    const yes = el('input', { type: 'radio', name: id, id: `${id}-yes`, value: 'true', 'aria-describedby': errId });
    const no = el('input', { type: 'radio', name: id, id: `${id}-no`, value: 'false', 'aria-describedby': errId });
    if (schema.default === true) yes.checked = true;
    if (schema.default === false) no.checked = true;
    read = () => (yes.checked ? { value: true, present: true } : no.checked ? { value: false, present: true } : { present: false });
    const fs = el('fieldset', { class: 'sub yesno' },
      el('legend', {}, label(name, schema), req), help,
      el('span', { class: 'field check' }, yes, el('label', { for: `${id}-yes` }, 'Yes')),
      el('span', { class: 'field check' }, no, el('label', { for: `${id}-no` }, 'No')), err);
    const check = () => {
      const ok = read().present;
      err.textContent = ok ? '' : 'Required: choose Yes or No.';
      return ok;
    };
    const set = (v) => { yes.checked = v === true; no.checked = v === false; };
    return { node: fs, pointer, read, set, setError: (m) => { err.textContent = m || ''; }, check };
  } else if (schema.type === 'boolean') {
    input = el('input', { ...common, type: 'checkbox' });
    if (schema.default === true) input.checked = true;
    read = () => ({ value: input.checked, present: true });
    const row = el('div', { class: 'field check' }, input, el('label', { for: id }, label(name, schema), req), help, err);
    return { node: row, pointer, read, setError: (m) => setErr(input, err, m), check: () => true };
  } else if (schema.type === 'number' || schema.type === 'integer') {
    input = el('input', {
      ...common, type: 'number', inputmode: schema.type === 'integer' ? 'numeric' : 'decimal',
      step: schema.type === 'integer' ? '1' : 'any', min: schema.minimum, max: schema.maximum,
    });
    read = () => {
      const raw = input.value.trim();
      if (raw === '') return { present: false };
      return { value: Number(raw), present: true, raw };
    };
  } else if (schema.type === 'string' && (schema.maxLength === undefined || schema.maxLength > 120)) {
    input = el('textarea', { ...common, rows: 3, maxlength: schema.maxLength });
    read = () => (input.value === '' ? { present: false } : { value: input.value, present: true });
  } else {
    input = el('input', { ...common, type: 'text', maxlength: schema.maxLength });
    read = () => (input.value === '' ? { present: false } : { value: input.value, present: true });
  }
  const node = el('div', { class: 'field' }, el('label', { for: id }, label(name, schema), req), help, input, err);
  const check = () => {
    const r = read();
    let msg = '';
    if (!r.present) {
      if (required) msg = 'Required.';
    } else if (schema.type === 'number' || schema.type === 'integer') {
      if (!Number.isFinite(r.value)) msg = 'Enter a number.';
      else if (schema.type === 'integer' && !Number.isInteger(r.value)) msg = 'Enter a whole number.';
      else if (schema.minimum !== undefined && r.value < schema.minimum) msg = `Must be at least ${schema.minimum}.`;
      else if (schema.maximum !== undefined && r.value > schema.maximum) msg = `Must be at most ${schema.maximum}.`;
      else if (schema.exclusiveMinimum !== undefined && r.value <= schema.exclusiveMinimum) msg = `Must be more than ${schema.exclusiveMinimum}.`;
      else if (schema.exclusiveMaximum !== undefined && r.value >= schema.exclusiveMaximum) msg = `Must be less than ${schema.exclusiveMaximum}.`;
    } else if (schema.type === 'string') {
      if (schema.minLength !== undefined && r.value.length < schema.minLength) msg = `At least ${schema.minLength} characters.`;
      else if (schema.maxLength !== undefined && r.value.length > schema.maxLength) msg = `At most ${schema.maxLength} characters.`;
    }
    setErr(input, err, msg);
    return !msg;
  };
  return { node, pointer, read, setError: (m) => setErr(input, err, m), check };
}

function setErr(input, err, msg) {
  err.textContent = msg || '';
  if (msg) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function objectFields(schema, pointer) {
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, s]) =>
    ({ name, ...field(name, s || {}, required.has(name), `${pointer}/${name}`) }));
  return {
    fields,
    nodes: fields.map((f) => f.node),
    read() {
      const out = {};
      for (const f of fields) {
        const r = f.read();
        if (r.present) out[f.name] = r.value;
      }
      return out;
    },
    check() {
      let ok = true;
      for (const f of fields) ok = f.check() && ok;
      return ok;
    },
  };
}

function allFields(list) {
  return list.flatMap((f) => [f, ...(f.children ? allFields(f.children) : [])]);
}

/**
 * A form for `schema`; `submit(value)` sends it and may throw an ApiError whose
 * `body.details.errors` are the server's schema errors.
 */
export function schemaForm(schema, submit, submitLabel = 'Send answer') {
  const s = schema && schema.type === 'object' ? schema : { type: 'object', properties: { answer: schema || { type: 'string' } }, required: ['answer'] };
  const wrapped = s !== schema;
  const obj = objectFields(s, '');
  const formError = el('p', { class: 'form-error', role: 'alert' });
  // An approval (a required yes/no at the top, such as `approved`) is answered with two
  // explicit buttons rather than a field and a "send".
  const decision = wrapped ? null : obj.fields.find((f) => f.set && /approv|accept|allow|confirm|ok$/i.test(f.name))
    || (obj.fields.filter((f) => f.set).length === 1 ? obj.fields.find((f) => f.set) : null);
  if (decision) decision.node.hidden = true;
  const button = el('button', { type: 'submit' }, submitLabel);
  const approve = el('button', { type: 'submit', value: 'yes', class: 'approve' }, 'Approve');
  const reject = el('button', { type: 'submit', value: 'no', class: 'danger' }, 'Reject');
  const form = el('form', { class: 'schema-form', novalidate: true }, obj.nodes, formError,
    decision ? el('div', { class: 'actions' }, approve, reject) : button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formError.textContent = '';
    if (decision) {
      const by = ev.submitter;
      if (by !== approve && by !== reject) {
        formError.textContent = 'Choose Approve or Reject.';
        return;
      }
      decision.set(by === approve);
    }
    if (!obj.check()) {
      formError.textContent = 'Some fields need a correction (see beside them).';
      return;
    }
    const value = wrapped ? obj.read().answer : obj.read();
    for (const b of [button, approve, reject]) b.disabled = true;
    try {
      await submit(value);
    } catch (e) {
      const errors = (e.body && e.body.details && e.body.details.errors) || [];
      const fields = allFields(obj.fields);
      const left = [];
      for (const msg of errors) {
        const m = /^at `([^`]*)`: (.*)$/s.exec(msg);
        const f = m && fields.find((x) => x.pointer === (wrapped ? '/answer' + m[1] : m[1]));
        if (f) f.setError(m[2]);
        else {
          const req = /"([^"]+)" is a required property/.exec(msg);
          const g = req && fields.find((x) => x.name === req[1]);
          if (g) g.setError('Required.');
          else left.push(msg);
        }
      }
      formError.textContent = left.length ? left.join(' ') : (errors.length ? 'The server refused the answer (see beside the fields).' : e.message);
    } finally {
      for (const b of [button, approve, reject]) b.disabled = false;
    }
  });
  return form;
}
