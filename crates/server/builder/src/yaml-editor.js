// The YAML view: CodeMirror 6 with the YAML language, highlighting by CSS variables (so dark
// mode follows the console's), the validator's diagnostics as lint marks, and the builder's
// own undo (one history for the canvas and the text).

import { EditorState, Annotation } from '@codemirror/state';
import { EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection } from '@codemirror/view';
import { defaultKeymap } from '@codemirror/commands';
import { yaml } from '@codemirror/lang-yaml';
import { syntaxHighlighting, HighlightStyle, bracketMatching, indentOnInput } from '@codemirror/language';
import { setDiagnostics, lintGutter } from '@codemirror/lint';
import { tags as t } from '@lezer/highlight';

const External = Annotation.define();

const highlight = HighlightStyle.define([
  { tag: [t.propertyName, t.definition(t.propertyName)], color: 'var(--hb-yaml-key)' },
  { tag: [t.string, t.special(t.string)], color: 'var(--hb-yaml-string)' },
  { tag: [t.number, t.bool, t.null, t.atom], color: 'var(--hb-yaml-atom)' },
  { tag: [t.comment, t.lineComment, t.blockComment], color: 'var(--hb-yaml-comment)', fontStyle: 'italic' },
  { tag: [t.punctuation, t.separator, t.squareBracket, t.brace, t.meta], color: 'var(--hb-yaml-punct)' },
  { tag: [t.keyword, t.typeName, t.labelName], color: 'var(--hb-yaml-keyword)' },
]);

const theme = EditorView.theme({
  '&': { height: '100%', fontSize: '13px', backgroundColor: 'var(--bg, #fff)', color: 'var(--fg, #1b1f24)' },
  '.cm-scroller': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace', lineHeight: '1.5' },
  '.cm-gutters': { backgroundColor: 'var(--panel, #f6f8fa)', color: 'var(--muted, #57606a)', borderRight: '1px solid var(--line, #d0d7de)' },
  '.cm-activeLine': { backgroundColor: 'var(--hb-active-line)' },
  '.cm-activeLineGutter': { backgroundColor: 'var(--hb-active-line)' },
  '&.cm-focused': { outline: '3px solid #f59e0b', outlineOffset: '-3px' },
  '.cm-cursor': { borderLeftColor: 'var(--fg, #1b1f24)' },
  '&.cm-focused .cm-selectionBackground, .cm-selectionBackground': { backgroundColor: 'var(--hb-selection)' },
});

/**
 * Mounts the editor in `parent`: `onChange(text)` on every edit typed in it, `onUndo`/`onRedo`
 * for Mod-z / Mod-Shift-z / Mod-y. Returns {set(text), diagnostics(list), focusLine(n), destroy()}.
 */
export function yamlEditor(parent, text, { onChange, onUndo, onRedo, label }) {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightActiveLine(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        lintGutter(),
        yaml(),
        syntaxHighlighting(highlight),
        theme,
        EditorState.tabSize.of(2),
        EditorView.contentAttributes.of({ 'aria-label': label }),
        keymap.of([
          { key: 'Mod-z', run: () => { onUndo(); return true; }, preventDefault: true },
          { key: 'Mod-Shift-z', run: () => { onRedo(); return true; }, preventDefault: true },
          { key: 'Mod-y', run: () => { onRedo(); return true; }, preventDefault: true },
          ...defaultKeymap,
        ]),
        EditorView.updateListener.of((u) => {
          if (!u.docChanged) return;
          if (u.transactions.some((tr) => tr.annotation(External))) return;
          onChange(u.state.doc.toString());
        }),
      ],
    }),
  });
  // the scroller is a region the keyboard can reach (axe: scrollable-region-focusable)
  view.scrollDOM.tabIndex = 0;
  return {
    view,
    /** Puts `next` in the editor as one minimal change (the common head and tail kept). */
    set(next) {
      const cur = view.state.doc.toString();
      if (cur === next) return;
      let from = 0;
      while (from < cur.length && from < next.length && cur[from] === next[from]) from += 1;
      let tail = 0;
      while (tail < cur.length - from && tail < next.length - from && cur[cur.length - 1 - tail] === next[next.length - 1 - tail]) tail += 1;
      view.dispatch({ changes: { from, to: cur.length - tail, insert: next.slice(from, next.length - tail) }, annotations: External.of(true) });
    },
    diagnostics(list) {
      const len = view.state.doc.length;
      const clean = list.map((d) => ({ ...d, from: Math.min(d.from, len), to: Math.min(Math.max(d.to, d.from), len) }));
      view.dispatch(setDiagnostics(view.state, clean));
    },
    /** Scrolls to `pos` and selects it. */
    reveal(from, to = from) {
      const len = view.state.doc.length;
      view.dispatch({ selection: { anchor: Math.min(from, len), head: Math.min(to, len) }, scrollIntoView: true });
    },
    lineStart(line) {
      const n = Math.max(1, Math.min(line, view.state.doc.lines));
      return view.state.doc.line(n).from;
    },
    destroy() { view.destroy(); },
  };
}
