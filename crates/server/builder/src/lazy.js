// The part of the builder a canvas's first draw does not need, loaded beside it: the YAML
// library and the text edits (source.js), and the YAML view (CodeMirror).

export * as S from './source.js';
export { yamlEditor } from './yaml-editor.js';
