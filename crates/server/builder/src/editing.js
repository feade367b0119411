// Loads the lazy part (lazy.js: the YAML library, the text edits, CodeMirror) once.

let mod = null;
let promise = null;

export function loadEditing() {
  if (!promise) promise = import('./lazy.js').then((m) => { mod = m; return m; });
  return promise;
}

/** The lazy part when it is loaded, else null. */
export function editing() {
  return mod;
}
