// The visual builder: a canvas (React Flow) and a YAML view (CodeMirror) over one text. Every
// canvas edit is a splice of that text (source.js); a YAML edit that parses redraws the canvas.
// Positions live in a layout document beside the workflow (PUT /workflows/{name}/layout),
// never in it.

import { memo, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  ReactFlow, ReactFlowProvider, Background, Controls, MiniMap, Handle, Position, MarkerType,
  applyNodeChanges, applyEdgeChanges, useReactFlow,
} from '@xyflow/react';
import { api } from 'console:api';
import * as G from './graph.js';
import { editing, loadEditing } from './editing.js';
import { layout, NODE_W, NODE_H, PAD, HEADER } from './layout.js';
import { fieldsOf, nodeTypes, widgetOf, resolve } from './schema.js';
import { lineDiff, hunks } from './diff.js';
import { exportText } from './server.js';

// The text edits (source.js) live in the lazy part: S.x is its export x once loaded.
const S = new Proxy({}, {
  get(_, k) {
    const m = editing();
    if (!m) throw new Error('the editor is still loading: try again in a moment');
    return m.S[k];
  },
});

const SINKS = new Set(['finish', 'fail', 'handover']);
const BIG = 60;

function clip(s, n = 60) {
  s = String(s ?? '');
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function detailOf(n) {
  const w = n.with && typeof n.with === 'object' ? n.with : {};
  switch (n.type) {
    case 'tool': return n.tool;
    case 'agent': return [n.agent, w.model || w.profile].filter(Boolean).join(' · ');
    case 'condition': return n.when;
    case 'switch': return `${Array.isArray(n.cases) ? n.cases.length : 0} case(s)${n.default ? ' + default' : ''}`;
    case 'set': return n.vars && typeof n.vars === 'object' ? Object.keys(n.vars).join(', ') : '';
    case 'transform': return n.expr;
    case 'loop': return n.for_each !== undefined ? `for each ${typeof n.for_each === 'string' ? n.for_each : 'item'}` : n.until ? `until ${n.until}` : '';
    case 'parallel': return Array.isArray(n.branches) ? n.branches.join(', ') : '';
    case 'merge': return `wait: ${n.wait || 'all'}`;
    case 'human': return n.prompt;
    case 'wait': return n.duration_ms !== undefined ? `${n.duration_ms} ms` : n.until;
    case 'workflow': return n.workflow;
    case 'code': return n.language;
    case 'handover': return w.reason;
    case 'fail': return w.code;
    default: return '';
  }
}

function defaultsOf(type, id, tools) {
  const tool = tools.includes('http_request') ? 'http_request' : tools[0] || 'http_request';
  const base = { id, type };
  switch (type) {
    case 'tool': return { ...base, tool, with: {} };
    case 'agent': return { ...base, agent: 'simple', with: { prompt: '{{ input.message }}' } };
    case 'condition': return { ...base, when: 'input.ok' };
    case 'switch': return { ...base, cases: [] };
    case 'set': return { ...base, vars: { value: '${ input }' } };
    case 'transform': return { ...base, expr: 'input' };
    case 'loop': return { ...base, for_each: 'input.items', body: { nodes: [{ id: 'done', type: 'finish', output: '${ item }' }] } };
    case 'parallel': return { ...base, branches: [] };
    case 'merge': return { ...base, wait: 'all' };
    case 'human': return { ...base, prompt: 'Approve?', schema: { type: 'object', required: ['approve'], properties: { approve: { type: 'boolean' } } } };
    case 'wait': return { ...base, duration_ms: 1000 };
    case 'workflow': return { ...base, workflow: 'child' };
    case 'code': return { ...base, language: 'javascript', source: 'export default function (args, state) {\n  return {};\n}\n' };
    case 'finish': return { ...base, output: {} };
    case 'handover': return { ...base, with: { reason: 'a person should answer' } };
    case 'fail': return { ...base, with: { code: 'FAILED', message: 'the workflow failed' } };
    default: return base;
  }
}

// ---- nodes on the canvas ------------------------------------------------------------------

const StepNode = memo(function StepNode({ data }) {
  return (
    <div className={`hb-node t-${data.type}${data.problems ? ' has-problems' : ''}`} title={data.problemText || undefined}>
      <Handle type="target" position={Position.Top} />
      <div className="hb-node-head"><span className="hb-type">{data.type}</span>{data.problems ? <span className="hb-problems" aria-label={`${data.problems} problem(s)`}>{data.problems}</span> : null}</div>
      <div className="hb-node-id">{data.id}</div>
      {data.detail ? <div className="hb-node-detail">{clip(data.detail)}</div> : null}
      {/* a sink's handle is hidden and takes no connection; an edge that leaves one anyway (a problem) is still drawn */}
      {SINKS.has(data.type) ? <Handle type="source" position={Position.Bottom} isConnectable={false} className="hb-sink-handle" /> : <Handle type="source" position={Position.Bottom} />}
    </div>
  );
});

const LoopNode = memo(function LoopNode({ data }) {
  return (
    <div className={`hb-loop${data.problems ? ' has-problems' : ''}`} title={data.problemText || undefined}>
      <Handle type="target" position={Position.Top} />
      <div className="hb-loop-head">
        <span className="hb-type">loop</span> <span className="hb-node-id">{data.id}</span>
        {data.problems ? <span className="hb-problems" aria-label={`${data.problems} problem(s)`}>{data.problems}</span> : null}
        {data.detail ? <div className="hb-node-detail">{clip(data.detail, 48)}</div> : null}
      </div>
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
});

const NODE_TYPES_RF = { step: StepNode, loop: LoopNode };

// ---- form fields --------------------------------------------------------------------------

function useDraft(value, commit, delay = 300) {
  const [draft, setDraft] = useState(value);
  const focused = useRef(false);
  const timer = useRef(null);
  const last = useRef(value);
  useEffect(() => {
    if (!focused.current) setDraft(value);
    last.current = value;
  }, [value]);
  useEffect(() => () => clearTimeout(timer.current), []);
  const flush = (v) => {
    clearTimeout(timer.current);
    if (v !== last.current) commit(v);
  };
  return {
    draft,
    onChange: (v) => {
      setDraft(v);
      clearTimeout(timer.current);
      if (delay >= 0) timer.current = setTimeout(() => flush(v), delay);
    },
    onFocus: () => { focused.current = true; },
    onBlur: (v) => { focused.current = false; flush(v); },
  };
}

function FieldShell({ id, label, context, required, help, problems, children, wide }) {
  const helpId = help ? `${id}-help` : undefined;
  const errId = problems && problems.length ? `${id}-err` : undefined;
  return (
    <div className={`field${wide ? ' wide' : ''}`}>
      <label htmlFor={id}>{context ? <span className="sr-only">{context} </span> : null}{label}{required ? <span className="req" aria-hidden="true"> *</span> : null}</label>
      {children({ 'aria-describedby': [helpId, errId].filter(Boolean).join(' ') || undefined, 'aria-invalid': errId ? 'true' : undefined, 'aria-required': required ? 'true' : undefined })}
      {help ? <p className="help" id={helpId}>{help}</p> : null}
      {errId ? <p className="field-error" id={errId}>{problems.join(' · ')}</p> : null}
    </div>
  );
}

function TextInput({ id, value, onCommit, multiline, list, rows, inputMode, ...aria }) {
  const d = useDraft(value ?? '', onCommit);
  const props = {
    id, value: d.draft, ...aria,
    onChange: (e) => d.onChange(e.target.value),
    onFocus: d.onFocus,
    onBlur: (e) => d.onBlur(e.target.value),
  };
  if (multiline) return <textarea rows={rows || Math.min(10, Math.max(2, String(d.draft).split('\n').length))} spellCheck="false" {...props} />;
  return <input type="text" autoComplete="off" spellCheck="false" list={list} inputMode={inputMode} {...props} />;
}

function YamlInput(props) {
  if (!editing()) return <textarea id={props.id} className="yaml-field" disabled value="Loading…" rows={2} />;
  return <YamlInputLoaded {...props} />;
}

function YamlInputLoaded({ id, value, onCommit, setError, ...aria }) {
  const shown = value === undefined ? '' : S.yamlOf(value);
  const commit = (s) => {
    if (s.trim() === '') { setError(null); onCommit(undefined); return; }
    const r = S.parseYamlValue(s);
    if (r.error) { setError(`not YAML: ${r.error}`); return; }
    setError(null);
    onCommit(r.value);
  };
  const d = useDraft(shown, commit, 700);
  return (
    <textarea
      id={id} className="yaml-field" spellCheck="false" value={d.draft} {...aria}
      rows={Math.min(12, Math.max(2, d.draft.split('\n').length))}
      onChange={(e) => d.onChange(e.target.value)} onFocus={d.onFocus} onBlur={(e) => d.onBlur(e.target.value)}
    />
  );
}

function Field({ schema, fkey, path, widget, value, required, description, problemsAt, onSet, ids, tools, idPrefix }) {
  const [localError, setLocalError] = useState(null);
  const id = `${idPrefix}-${path.join('-')}`;
  const problems = [...(problemsAt(path) || []), ...(localError ? [localError] : [])];
  const set = (v) => onSet(path, v);
  const shell = (child, wide) => (
    <FieldShell id={id} label={fkey} context={path.length > 1 ? path.slice(0, -1).join(' ') : null} required={required} help={description} problems={problems} wide={wide}>{child}</FieldShell>
  );
  switch (widget.kind) {
    case 'enum':
      return shell((aria) => (
        <select id={id} value={value === undefined ? '' : String(value)} {...aria} onChange={(e) => {
          const o = widget.options.find((x) => String(x) === e.target.value);
          set(e.target.value === '' ? undefined : o);
        }}>
          <option value="">(not set)</option>
          {widget.options.map((o) => <option key={String(o)} value={String(o)}>{String(o)}</option>)}
        </select>
      ));
    case 'boolean':
      return shell((aria) => (
        <select id={id} value={value === undefined ? '' : String(value)} {...aria} onChange={(e) => set(e.target.value === '' ? undefined : e.target.value === 'true')}>
          <option value="">(not set)</option><option value="true">true</option><option value="false">false</option>
        </select>
      ));
    case 'number':
      return shell((aria) => (
        <TextInput id={id} inputMode="numeric" value={value === undefined ? '' : String(value)} {...aria} onCommit={(s) => {
          if (s.trim() === '') { setLocalError(null); set(undefined); return; }
          const n = Number(s);
          if (!Number.isFinite(n) || (widget.integer && !Number.isInteger(n))) { setLocalError(widget.integer ? 'a whole number' : 'a number'); return; }
          setLocalError(null);
          set(n);
        }} />
      ));
    case 'string':
    case 'text':
      if (typeof value !== 'string' && value !== undefined) break;
      return shell((aria) => (
        <TextInput id={id} value={value ?? ''} multiline={widget.kind === 'text' || (typeof value === 'string' && value.includes('\n'))}
          rows={fkey === 'source' ? 8 : undefined} list={fkey === 'tool' ? 'hb-tools' : undefined} {...aria}
          onCommit={(s) => set(s === '' ? undefined : s)} />
      ), widget.kind === 'text');
    case 'list':
      if (value !== undefined && !Array.isArray(value)) break;
      return shell((aria) => (
        <TextInput id={id} value={(value || []).join(', ')} {...aria}
          onCommit={(s) => { const l = s.split(',').map((x) => x.trim()).filter(Boolean); set(l.length ? l : undefined); }} />
      ));
    case 'on_error': {
      const mode = value === undefined ? '' : typeof value === 'string' ? value : 'goto';
      return shell((aria) => (
        <div className="hb-inline">
          <select id={id} value={mode} {...aria} onChange={(e) => {
            const m = e.target.value;
            if (m === '') set(undefined);
            else if (m === 'goto') set({ goto: ids[0] || '' });
            else set(m);
          }}>
            <option value="">(not set: fail)</option><option value="fail">fail</option><option value="continue">continue</option><option value="goto">go to a node</option>
          </select>
          {mode === 'goto' ? (
            <select aria-label="on_error goes to" value={value.goto || ''} onChange={(e) => set({ goto: e.target.value })}>
              {ids.map((x) => <option key={x} value={x}>{x}</option>)}
            </select>
          ) : null}
        </div>
      ));
    }
    case 'object':
      if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) break;
      return (
        <fieldset className="sub">
          <legend>{fkey}{required ? <span className="req" aria-hidden="true"> *</span> : null}</legend>
          {description ? <p className="help">{description}</p> : null}
          {(problemsAt(path) || []).length ? <p className="field-error">{problemsAt(path).join(' · ')}</p> : null}
          {Object.entries(widget.schema.properties).map(([k, s]) => (
            <Field key={k} schema={schema} fkey={k} path={[...path, k]} widget={widgetOf(schema, k, s)} value={value ? value[k] : undefined}
              required={(widget.schema.required || []).includes(k)} description={resolve(schema, s).description}
              problemsAt={problemsAt} onSet={onSet} ids={ids} tools={tools} idPrefix={idPrefix} />
          ))}
        </fieldset>
      );
    default:
      break;
  }
  return shell((aria) => <YamlInput id={id} value={value} onCommit={set} setError={setLocalError} {...aria} />, true);
}

function NodeForm({ node, schema, onSet, onRename, onDelete, onConnect, ids, tools, problemsAt, problems }) {
  const v = node.value;
  const fields = useMemo(() => (schema ? fieldsOf(schema, v.type) : []), [schema, v.type]);
  const [idErr, setIdErr] = useState(null);
  const [target, setTarget] = useState('');
  const others = ids.filter((x) => x !== v.id);
  const prefix = `hb-${node.key.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  return (
    <form className="hb-form" onSubmit={(e) => e.preventDefault()} aria-labelledby={`${prefix}-title`}>
      <h2 id={`${prefix}-title`}>{v.type} node <code>{node.key}</code></h2>
      {problems.length ? <ul className="hb-problem-list">{problems.map((p, i) => <li key={i} className="error">{p}</li>)}</ul> : null}
      <FieldShell id={`${prefix}-id`} label="id" required help="Unique in its graph; edges, cases and branches that name it follow a rename." problems={idErr ? [idErr] : problemsAt(['id'])}>
        {(aria) => <TextInput id={`${prefix}-id`} value={v.id} {...aria} onCommit={(s) => {
          if (!/^[A-Za-z0-9_-]{1,128}$/.test(s)) { setIdErr('letters, digits, _ and - only'); return; }
          if (others.includes(s)) { setIdErr(`${s} is taken`); return; }
          setIdErr(null);
          onRename(s);
        }} />}
      </FieldShell>
      {!schema ? <p className="muted">The form needs the workflow schema (GET /api/v1/schema/workflow); edit the YAML meanwhile.</p> : null}
      {fields.map((f) => (
        <Field key={f.key} schema={schema} fkey={f.key} path={[f.key]} widget={f.widget} value={v[f.key]} required={f.required}
          description={f.description} problemsAt={problemsAt} onSet={onSet} ids={others} tools={tools} idPrefix={prefix} />
      ))}
      {v.type === 'loop' ? <p className="muted">The loop's body is the box on the canvas: select the loop (or a node in it) and add nodes from the palette to put them in its body.</p> : null}
      {!SINKS.has(v.type) && others.length ? (
        <div className="field">
          <label htmlFor={`${prefix}-connect`}>Connect to</label>
          <div className="hb-inline">
            <select id={`${prefix}-connect`} value={target} onChange={(e) => setTarget(e.target.value)}>
              <option value="">(choose a node)</option>
              {others.map((x) => <option key={x} value={x}>{x}</option>)}
            </select>
            <button type="button" disabled={!target} onClick={() => { onConnect(target); setTarget(''); }}>Add edge</button>
          </div>
        </div>
      ) : null}
      <button type="button" className="danger" onClick={onDelete}>Delete node</button>
    </form>
  );
}

function EdgeForm({ edge, onWhen, onDelete, onDefault, problems }) {
  const kinds = { edge: 'Edge', case: 'Switch case', default: 'Switch default', branch: 'Parallel branch', goto: 'On error, go to' };
  const id = `hb-edge-when`;
  return (
    <form className="hb-form" onSubmit={(e) => e.preventDefault()} aria-labelledby="hb-edge-title">
      <h2 id="hb-edge-title">{kinds[edge.kind]}: <code>{edge.source}</code> → <code>{edge.target}</code></h2>
      {problems.length ? <ul className="hb-problem-list">{problems.map((p, i) => <li key={i} className="error">{p}</li>)}</ul> : null}
      {edge.kind === 'edge' || edge.kind === 'case' ? (
        <FieldShell id={id} label="when" required={edge.kind === 'case'} help="A JMESPath expression over the state; the edge is live when it holds." problems={[]}>
          {(aria) => <TextInput key={edge.id} id={id} value={edge.label} multiline rows={2} {...aria} onCommit={onWhen} />}
        </FieldShell>
      ) : null}
      <div className="hb-inline">
        {edge.kind === 'case' ? <button type="button" onClick={onDefault}>Make it the default</button> : null}
        <button type="button" className="danger" onClick={onDelete}>Delete edge</button>
      </div>
    </form>
  );
}

function WorkflowForm({ value, schema, onSet, problemsAt, loose, onPick, version, storedVersion }) {
  const props = schema ? schema.properties : null;
  const rows = ['name', 'description', 'input', 'defaults', 'expose'];
  return (
    <form className="hb-form" onSubmit={(e) => e.preventDefault()} aria-labelledby="hb-wf-title">
      <h2 id="hb-wf-title">Workflow</h2>
      <p className="muted">Version {String(value.version ?? '—')}{storedVersion ? ` (saving stores version ${storedVersion + 1})` : ''}. Select a node or an edge to edit it.</p>
      {loose.length ? (
        <ul className="hb-problem-list">{loose.map((d, i) => (
          <li key={i} className="error">{d.target ? <button type="button" className="link" onClick={() => onPick(d.target)}>{d.text}</button> : d.text}</li>
        ))}</ul>
      ) : null}
      {props ? rows.filter((k) => props[k]).map((k) => (
        <Field key={k} schema={schema} fkey={k} path={[k]} widget={widgetOf(schema, k, props[k])} value={value[k]} required={(schema.required || []).includes(k)}
          description={resolve(schema, props[k]).description} problemsAt={problemsAt} onSet={onSet} ids={[]} tools={[]} idPrefix="hb-wf" />
      )) : null}
      <p className="muted">{version}</p>
    </form>
  );
}

// ---- the YAML view ------------------------------------------------------------------------

function YamlView({ text, onChange, onUndo, onRedo, lint, reveal, ready }) {
  const host = useRef(null);
  const ed = useRef(null);
  const cbs = useRef({ onChange, onUndo, onRedo });
  cbs.current = { onChange, onUndo, onRedo };
  // made once the canvas is drawn (the canvas first: a big workflow opens sooner)
  useEffect(() => {
    if (!ready) return undefined;
    ed.current = editing().yamlEditor(host.current, text, {
      label: 'Workflow YAML',
      onChange: (t) => cbs.current.onChange(t),
      onUndo: () => cbs.current.onUndo(),
      onRedo: () => cbs.current.onRedo(),
    });
    window.__hbEditor = ed.current;
    return () => { ed.current.destroy(); ed.current = null; window.__hbEditor = null; };
  }, [ready]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => { if (ed.current) ed.current.set(text); }, [text, ready]);
  useEffect(() => { if (ed.current) ed.current.diagnostics(lint(ed.current)); }, [lint, ready]);
  useEffect(() => { if (ed.current && reveal) ed.current.reveal(reveal.from, reveal.to); }, [reveal, ready]);
  return <div className="hb-cm nokey" ref={host} />;
}

// ---- the save dialog ----------------------------------------------------------------------

function SaveDialog({ plan, onCancel, onConfirm, busy, error }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (plan && !d.open) d.showModal();
    if (!plan && d.open) d.close();
  }, [plan]);
  const hs = plan ? hunks(lineDiff(plan.before, plan.after)) : [];
  return (
    <dialog ref={ref} className="hb-dialog" aria-labelledby="hb-save-title" onCancel={(e) => { e.preventDefault(); onCancel(); }}>
      {plan ? (
        <>
          <h2 id="hb-save-title">Save {plan.name} version {plan.version}</h2>
          <p>{plan.before ? `What changes from version ${plan.from}` : 'A new workflow: every line is new.'} ({hs.length} hunk{hs.length === 1 ? '' : 's'}). It is stored without being activated.</p>
          <div className="hb-diff" role="region" aria-label="Line diff" tabIndex={0}>
            {hs.map((h, i) => (
              <div key={i} className="hb-hunk">
                <div className="hb-hunk-head">@@ -{h.a} +{h.b} @@</div>
                {h.lines.map((l, j) => (
                  <div key={j} className={`hb-line ${l.op === '+' ? 'add' : l.op === '-' ? 'del' : ''}`}>
                    <span className="hb-ln">{l.op === '+' ? '' : l.a}</span><span className="hb-ln">{l.op === '-' ? '' : l.b}</span>
                    <span className="hb-op" aria-hidden="true">{l.op}</span><span className="sr-only">{l.op === '+' ? 'added: ' : l.op === '-' ? 'removed: ' : ''}</span>{l.text}
                  </div>
                ))}
              </div>
            ))}
          </div>
          {error ? <p className="error" role="alert">{error}</p> : null}
          <div className="hb-inline hb-dialog-actions">
            <button type="button" className="secondary" onClick={onCancel}>Cancel</button>
            <button type="button" onClick={onConfirm} disabled={busy}>Save version {plan.version}</button>
          </div>
        </>
      ) : null}
    </dialog>
  );
}

// ---- the builder --------------------------------------------------------------------------

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function ptrSegs(pointer) {
  return pointer ? pointer.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')).map((s) => (/^\d+$/.test(s) ? Number(s) : s)) : [];
}

function Inner(props) {
  const { initialText, initialValue, initialLayout, schema, tools, isJson, started } = props;
  const rf = useReactFlow();
  const [text, setTextState] = useState(initialText);
  const textRef = useRef(initialText);
  const hist = useRef({ past: [], future: [], tag: null, at: 0 });
  const [histLen, setHistLen] = useState([0, 0]);
  const [saved, setSaved] = useState({ text: initialText, version: props.storedVersion, active: props.storedActive, name: props.name });
  const [status, setStatus] = useState('');
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(null); // {kind: 'node'|'edge', key}
  const positions = useRef({ ...((initialLayout && initialLayout.nodes) || {}) });
  const [layoutTick, setLayoutTick] = useState(0);
  const [diags, setDiags] = useState({ text: null, list: [] });
  const [plan, setPlan] = useState(null);
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState(null);
  const [reveal, setReveal] = useState(null);
  const lastGood = useRef(null);
  const [drawn, setDrawn] = useState(false);
  // the first draw of a stored workflow comes from its definition (the same value as JSON);
  // the text is parsed once the canvas is on screen
  const [textParsed, setTextParsed] = useState(!initialValue);
  const [lib, setLib] = useState(editing());
  useEffect(() => { loadEditing().then(setLib, (e) => setError(`The editor did not load: ${e.message}`)); }, []);
  useEffect(() => { if (drawn && lib) setTextParsed(true); }, [drawn, lib]);

  // the model: the last text that parsed into a workflow
  const model = useMemo(() => {
    if (!textParsed && text === initialText) {
      lastGood.current = { value: initialValue, graph: G.graphOf(initialValue), text };
      return { ...lastGood.current, ok: true };
    }
    const v = S.valueOf(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      lastGood.current = { value: v, graph: S.graphOf(v), text };
      return { ...lastGood.current, ok: true };
    }
    return lastGood.current ? { ...lastGood.current, ok: false } : { value: {}, graph: { nodes: [], edges: [] }, text, ok: false };
  }, [text, textParsed]); // eslint-disable-line react-hooks/exhaustive-deps
  const yamlErrors = useMemo(() => (textParsed ? S.parsed(text).errors : []), [text, textParsed]);
  const modelRef = useRef(model);
  modelRef.current = model;

  const commit = useCallback((next, tag = null) => {
    const cur = textRef.current;
    if (next === cur) return;
    const h = hist.current;
    const now = Date.now();
    if (!(tag && h.tag === tag && now - h.at < 1500)) h.past.push(cur);
    if (h.past.length > 500) h.past.shift();
    h.future = [];
    h.tag = tag;
    h.at = now;
    textRef.current = next;
    setTextState(next);
    setHistLen([h.past.length, 0]);
    setError(null);
  }, []);
  const edit = useCallback((fn, tag) => {
    try {
      commit(fn(textRef.current), tag);
      return true;
    } catch (e) {
      setError(String(e.message || e));
      return false;
    }
  }, [commit]);
  const undo = useCallback(() => {
    const h = hist.current;
    if (!h.past.length) return;
    h.future.push(textRef.current);
    const t = h.past.pop();
    h.tag = null;
    textRef.current = t;
    setTextState(t);
    setHistLen([h.past.length, h.future.length]);
    setStatus('Undone.');
  }, []);
  const redo = useCallback(() => {
    const h = hist.current;
    if (!h.future.length) return;
    h.past.push(textRef.current);
    const t = h.future.pop();
    h.tag = null;
    textRef.current = t;
    setTextState(t);
    setHistLen([h.past.length, h.future.length]);
    setStatus('Redone.');
  }, []);

  useEffect(() => {
    const onKey = (e) => {
      if (!(e.ctrlKey || e.metaKey)) return;
      const t = e.target;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
      const k = e.key.toLowerCase();
      if (k === 'z' && !e.shiftKey) { e.preventDefault(); undo(); }
      else if ((k === 'z' && e.shiftKey) || k === 'y') { e.preventDefault(); redo(); }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [undo, redo]);

  const dirty = text !== saved.text;
  useEffect(() => {
    if (!dirty) return undefined;
    const h = (e) => { e.preventDefault(); e.returnValue = ''; };
    window.addEventListener('beforeunload', h);
    return () => window.removeEventListener('beforeunload', h);
  }, [dirty]);

  // diagnostics from the real validator, 300 ms after the last change
  useEffect(() => {
    let gone = false;
    const t = setTimeout(async () => {
      try {
        const r = await api('POST', '/workflows/validate', text, { quiet: true, type: isJson ? 'application/json' : 'application/yaml' });
        if (!gone && textRef.current === text) setDiags({ text, list: r.diagnostics || [], valid: r.valid });
      } catch (e) {
        // A text that does not parse is a 422 with the parser's diagnostics (line, column).
        const found = e.status === 422 && e.body && e.body.details && e.body.details.diagnostics;
        if (!gone && textRef.current === text) {
          setDiags(found ? { text, list: found, valid: false } : { text, list: [], error: e.status === 404 ? null : e.message });
        }
      }
    }, 300);
    return () => { gone = true; clearTimeout(t); };
  }, [text, isJson]);

  // where each diagnostic belongs: a node, an edge, a field of a node, or the workflow
  const placed = useMemo(() => {
    const byNode = new Map();
    const byEdge = new Map();
    const byField = new Map(); // `${nodeKey}|${field path}` → messages
    const loose = [];
    const nodeByKey = new Map(model.graph.nodes.map((n) => [n.key, n]));
    const list = diags.text === text ? diags.list : diags.list;
    for (const d of list) {
      const msg = `${d.code}: ${d.message}`;
      let target = G.targetOfPointer(model.value, d.path);
      if (!target && d.node && nodeByKey.has(d.node)) target = { node: d.node };
      if (target && target.node && nodeByKey.has(target.node)) {
        (byNode.get(target.node) || byNode.set(target.node, []).get(target.node)).push(msg);
        const n = nodeByKey.get(target.node);
        const base = [...n.gpath, 'nodes', n.index];
        const segs = ptrSegs(d.path);
        if (segs.length > base.length && base.every((s, i) => String(segs[i]) === String(s))) {
          const f = segs.slice(base.length);
          for (let k = 1; k <= f.length; k += 1) {
            const key = `${target.node}|${f.slice(0, k).join('.')}`;
            if (k === f.length || k === 1) (byField.get(key) || byField.set(key, []).get(key)).push(d.message);
          }
        }
        loose.push({ text: `${target.node}: ${msg}`, target: { kind: 'node', key: target.node } });
      } else if (target && target.edge) {
        (byEdge.get(target.edge) || byEdge.set(target.edge, []).get(target.edge)).push(msg);
        loose.push({ text: `edge: ${msg}`, target: { kind: 'edge', key: target.edge } });
      } else {
        loose.push({ text: msg + (d.line ? ` (line ${d.line})` : ''), target: null });
        const segs = ptrSegs(d.path);
        if (segs.length) {
          const key = `|${segs.join('.')}`;
          (byField.get(key) || byField.set(key, []).get(key)).push(d.message);
        }
      }
    }
    for (const e of yamlErrors) loose.push({ text: `YAML: ${e.message.split('\n')[0]}`, target: null });
    return { byNode, byEdge, byField, loose };
  }, [diags, model, text, yamlErrors]);

  const lint = useCallback((ed) => {
    const out = [];
    for (const d of diags.list) {
      let from = 0;
      let to = 0;
      const r = d.path !== undefined && model.ok ? S.rangeAt(text, ptrSegs(d.path)) : null;
      if (d.line) {
        from = ed.lineStart(d.line) + Math.max(0, (d.column || 1) - 1);
        to = r && r[0] === from ? r[1] : from;
        if (to === from) {
          const line = ed.view.state.doc.lineAt(Math.min(from, ed.view.state.doc.length));
          to = line.to;
        }
      } else if (r) {
        [from, to] = r;
      }
      out.push({ from, to, severity: d.severity === 'warning' ? 'warning' : 'error', message: `${d.code}: ${d.message}` });
    }
    for (const e of yamlErrors) out.push({ from: e.pos[0], to: Math.max(e.pos[1], e.pos[0] + 1), severity: 'error', message: e.message.split('\n')[0] });
    return out;
  }, [diags, yamlErrors, model.ok, text]);

  // positions and the canvas's nodes and edges
  const lay = useMemo(() => {
    const l = layout(model.graph.nodes, model.graph.edges, positions.current);
    for (const [k, p] of l.pos) positions.current[k] = p;
    return l;
    // layoutTick: a drag inside a loop resizes it
  }, [model, layoutTick]); // eslint-disable-line react-hooks/exhaustive-deps

  const layRef = useRef(null);
  layRef.current = lay;
  const cache = useRef(new Map());
  const builtNodes = useMemo(() => {
    const next = new Map();
    const out = model.graph.nodes.map((n) => {
      const probs = placed.byNode.get(n.key);
      const data = { id: n.id, type: n.type, detail: detailOf(n.value), problems: probs ? probs.length : 0, problemText: probs ? probs.join('\n') : '' };
      const p = lay.pos.get(n.key);
      const size = n.type === 'loop' ? lay.size.get(n.key) : null;
      const sel = !!(selected && selected.kind === 'node' && selected.key === n.key);
      const sig = JSON.stringify([data, p.x, p.y, size, sel, n.parentKey]);
      const old = cache.current.get(n.key);
      let node;
      if (old && old.sig === sig) node = old.node;
      else {
        node = {
          id: n.key,
          type: n.type === 'loop' ? 'loop' : 'step',
          position: { x: p.x, y: p.y },
          data,
          selected: sel,
          ariaLabel: `${n.type} node ${n.key}${probs ? `, ${probs.length} problem(s)` : ''}`,
          ...(n.parentKey ? { parentId: n.parentKey, expandParent: true } : {}),
          ...(size ? { width: size.w, height: size.h, style: { width: size.w, height: size.h } } : { width: NODE_W, height: NODE_H }),
        };
      }
      next.set(n.key, { sig, node });
      return node;
    });
    cache.current = next;
    return out;
  }, [model, lay, placed, selected]);

  const builtEdges = useMemo(() => model.graph.edges.map((e) => {
    const probs = placed.byEdge.get(e.id);
    return {
      id: e.id,
      source: e.source,
      target: e.target,
      label: e.label || undefined,
      type: 'smoothstep',
      markerEnd: { type: MarkerType.ArrowClosed, width: 16, height: 16 },
      className: `k-${e.kind}${probs ? ' has-problems' : ''}`,
      selected: !!(selected && selected.kind === 'edge' && selected.key === e.id),
      zIndex: e.source.includes('/') ? 1 : 0,
      ariaLabel: `${e.kind} from ${e.source} to ${e.target}${e.label ? ` when ${e.label}` : ''}`,
      labelBgPadding: [4, 2],
      labelBgBorderRadius: 4,
    };
  }), [model, placed, selected]);

  const [nodes, setNodes] = useState(builtNodes);
  const [edges, setEdges] = useState(builtEdges);
  useEffect(() => setNodes(builtNodes), [builtNodes]);
  useEffect(() => setEdges(builtEdges), [builtEdges]);

  const onNodesChange = useCallback((changes) => {
    const keep = changes.filter((c) => c.type !== 'remove');
    let resize = false;
    for (const c of keep) {
      if (c.type === 'position' && c.position) {
        positions.current[c.id] = { x: Math.round(c.position.x), y: Math.round(c.position.y) };
        if (c.dragging === false && c.id.includes('/')) resize = true;
      }
    }
    setNodes((nds) => applyNodeChanges(keep, nds));
    if (resize) setLayoutTick((x) => x + 1);
  }, []);
  const onEdgesChange = useCallback((changes) => {
    setEdges((eds) => applyEdgeChanges(changes.filter((c) => c.type !== 'remove'), eds));
  }, []);
  const onNodeDragStop = useCallback((_, node, dragged) => {
    for (const n of dragged || [node]) positions.current[n.id] = { x: Math.round(n.position.x), y: Math.round(n.position.y) };
    // a loop that grew (expandParent) keeps its new size: the body's positions decide it
    setLayoutTick((x) => x + 1);
  }, []);

  const onSelectionChange = useCallback(({ nodes: ns, edges: es }) => {
    setSelected((cur) => {
      let next = null;
      if (ns.length === 1 && !es.length) next = { kind: 'node', key: ns[0].id };
      else if (es.length === 1 && !ns.length) next = { kind: 'edge', key: es[0].id };
      else if (ns.length || es.length) return cur;
      if ((cur && next && cur.kind === next.kind && cur.key === next.key) || (!cur && !next)) return cur;
      return next;
    });
  }, []);

  const nodeByKey = useMemo(() => new Map(model.graph.nodes.map((n) => [n.key, n])), [model]);
  const edgeById = useMemo(() => new Map(model.graph.edges.map((e) => [e.id, e])), [model]);

  const isValidConnection = useCallback((c) => {
    const a = nodeByKey.get(c.source);
    const b = nodeByKey.get(c.target);
    return !!(a && b && a.key !== b.key && (a.parentKey || '') === (b.parentKey || '') && !SINKS.has(a.type));
  }, [nodeByKey]);

  const onConnect = useCallback((c) => {
    const a = nodeByKey.get(c.source);
    const b = nodeByKey.get(c.target);
    if (!a || !b || (a.parentKey || '') !== (b.parentKey || '')) return;
    if (edit((t) => S.connect(t, a.gpath, a.id, b.id))) setStatus(`Connected ${a.key} to ${b.key}.`);
  }, [nodeByKey, edit]);

  const deleteThings = useCallback((nodeKeys, edgeIds) => {
    edit((t) => {
      const keys = [...nodeKeys].sort((x, y) => y.split('/').length - x.split('/').length);
      const gone = new Set();
      for (const k of keys) {
        if ([...gone].some((g) => k.startsWith(g + '/'))) continue;
        const g = S.graphOf(S.valueOf(t));
        const n = g.nodes.find((x) => x.key === k);
        if (!n) continue;
        t = S.deleteNode(t, n.gpath, n.id);
        gone.add(k);
        delete positions.current[k];
      }
      for (const id of edgeIds) {
        const old = edgeById.get(id);
        if (!old || gone.has(old.source) || gone.has(old.target)) continue;
        const g = S.graphOf(S.valueOf(t));
        const e = g.edges.find((x) => x.kind === old.kind && x.source === old.source && x.target === old.target);
        if (e) t = S.deleteEdge(t, e);
      }
      return t;
    });
    setSelected(null);
    setStatus(`Deleted ${[nodeKeys.length ? `${nodeKeys.length} node(s)` : '', edgeIds.length ? `${edgeIds.length} edge(s)` : ''].filter(Boolean).join(' and ')}.`);
  }, [edit, edgeById]);

  const onBeforeDelete = useCallback(async ({ nodes: ns, edges: es }) => {
    deleteThings(ns.map((n) => n.id), es.map((e) => e.id));
    return false;
  }, [deleteThings]);

  // adding a node: into the selected loop's body (or the body the selected node is in), else the top level
  const addNode = useCallback((type, at) => {
    const m = modelRef.current;
    if (!m.ok) { setError('The YAML does not parse: fix it first.'); return; }
    let loop = null;
    if (at && at.loop) loop = nodeByKey.get(at.loop);
    else if (!at && selected && selected.kind === 'node') {
      const s = nodeByKey.get(selected.key);
      if (s && s.type === 'loop') loop = s;
      else if (s && s.parentKey) loop = nodeByKey.get(s.parentKey);
    }
    const gpath = loop ? [...loop.gpath, 'nodes', loop.index, 'body'] : [];
    const id = G.freshId(m.value, gpath, type);
    const key = (loop ? loop.key + '/' : '') + id;
    let pos;
    if (at && at.pos) pos = at.pos;
    else if (loop) {
      const kids = m.graph.nodes.filter((n) => n.parentKey === loop.key).map((n) => positions.current[n.key]).filter(Boolean);
      pos = { x: PAD, y: kids.length ? Math.max(...kids.map((p) => p.y)) + NODE_H + 40 : HEADER };
    } else {
      const box = document.querySelector('.hb-canvas');
      const r = box ? box.getBoundingClientRect() : { left: 0, top: 0, width: 400, height: 400 };
      const c = rf.screenToFlowPosition({ x: r.left + r.width / 2, y: r.top + r.height / 3 });
      // the free spot nearest the middle of the view
      const boxes = m.graph.nodes.filter((x) => !x.parentKey).map((x) => ({ p: positions.current[x.key], s: (layRef.current && layRef.current.size.get(x.key)) || { w: NODE_W, h: NODE_H } })).filter((b) => b.p);
      const free = (q) => !boxes.some((b) => q.x < b.p.x + b.s.w + 24 && q.x + NODE_W + 24 > b.p.x && q.y < b.p.y + b.s.h + 24 && q.y + NODE_H + 24 > b.p.y);
      const start = { x: Math.round(c.x - NODE_W / 2), y: Math.round(c.y - NODE_H / 2) };
      const cands = [];
      for (let dy = -4; dy <= 4; dy += 1) for (let dx = -3; dx <= 3; dx += 1) cands.push({ x: start.x + dx * (NODE_W + 32), y: start.y + dy * (NODE_H + 40), d: Math.abs(dx) * 1.2 + Math.abs(dy) });
      cands.sort((a, b) => a.d - b.d);
      const spot = cands.find(free) || start;
      pos = { x: spot.x, y: spot.y };
    }
    const node = defaultsOf(type, id, tools);
    if (type === 'loop') positions.current[`${key}/done`] = { x: PAD, y: HEADER };
    if (edit((t) => S.addNode(t, gpath, node))) {
      positions.current[key] = pos;
      setSelected({ kind: 'node', key });
      setStatus(`Added ${type} node ${key}.`);
    }
  }, [nodeByKey, selected, edit, tools, rf]);

  const onDrop = useCallback((e) => {
    const type = e.dataTransfer.getData('application/x-hilo-node');
    if (!type) return;
    e.preventDefault();
    const p = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    // the innermost loop under the drop point takes the node
    let loop = null;
    for (const n of rf.getNodes()) {
      if (n.type !== 'loop') continue;
      const b = rf.getInternalNode(n.id);
      const abs = b.internals.positionAbsolute;
      const w = n.width || n.measured?.width || 0;
      const h = n.height || n.measured?.height || 0;
      if (p.x >= abs.x && p.x <= abs.x + w && p.y >= abs.y && p.y <= abs.y + h) {
        if (!loop || n.id.length > loop.id.length) loop = { id: n.id, abs };
      }
    }
    const pos = loop ? { x: Math.round(p.x - loop.abs.x - NODE_W / 2), y: Math.round(p.y - loop.abs.y - NODE_H / 2) } : { x: Math.round(p.x - NODE_W / 2), y: Math.round(p.y - NODE_H / 2) };
    addNode(type, { loop: loop ? loop.id : null, pos });
  }, [rf, addNode]);

  // edits from the forms
  const selNode = selected && selected.kind === 'node' ? nodeByKey.get(selected.key) : null;
  const selEdge = selected && selected.kind === 'edge' ? edgeById.get(selected.key) : null;

  const keyRef = useRef(null);
  keyRef.current = selNode ? selNode.key : null;
  const nodePath = (key) => {
    const n = modelRef.current.graph.nodes.find((x) => x.key === key);
    return n ? [...n.gpath, 'nodes', n.index] : null;
  };
  const setNodeField = useCallback((key, path, v) => {
    const base = nodePath(key);
    if (!base) return;
    edit((t) => (v === undefined ? S.deleteIn(t, [...base, ...path]) : S.setIn(t, [...base, ...path], v)), `${key}|${path.join('.')}`);
  }, [edit]); // eslint-disable-line react-hooks/exhaustive-deps

  const renameSelected = useCallback((newId) => {
    const n = selNode;
    if (!n) return;
    const newKey = (n.parentKey ? n.parentKey + '/' : '') + newId;
    if (edit((t) => S.renameNode(t, n.gpath, n.id, newId))) {
      for (const k of Object.keys(positions.current)) {
        if (k === n.key || k.startsWith(n.key + '/')) {
          positions.current[newKey + k.slice(n.key.length)] = positions.current[k];
          delete positions.current[k];
        }
      }
      setSelected({ kind: 'node', key: newKey });
      setStatus(`Renamed ${n.key} to ${newKey}.`);
    }
  }, [selNode, edit]);

  const problemsAtNode = useCallback((path) => (selNode ? placed.byField.get(`${selNode.key}|${path.join('.')}`) : null), [selNode, placed]);
  const problemsAtWf = useCallback((path) => placed.byField.get(`|${path.join('.')}`), [placed]);

  // the version the editor text says, and the stored one
  const wfName = typeof model.value.name === 'string' ? model.value.name : '';

  const fitDone = useRef(false);
  const onInit = useCallback((inst) => {
    const vp = initialLayout && initialLayout.viewport;
    if (vp && Number.isFinite(vp.zoom)) inst.setViewport(vp);
    else if (modelRef.current.graph.nodes.length <= BIG) inst.fitView({ padding: 0.15, maxZoom: 1.2 });
    else {
      const first = modelRef.current.graph.nodes[0];
      const p = first ? positions.current[first.key] : { x: 0, y: 0 };
      const box = document.querySelector('.hb-canvas');
      const w = box ? box.clientWidth : 800;
      inst.setViewport({ x: Math.round(w / 2 - (p.x + NODE_W / 2)), y: Math.round(24 - p.y), zoom: 1 });
    }
    fitDone.current = true;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      setDrawn(true);
      performance.mark('hb-rendered');
      window.__hbRendered = { at: performance.now(), since: performance.now() - started, nodes: document.querySelectorAll('.react-flow__node').length, ...window.__hbTimes };
    }));
  }, [initialLayout, started]);

  const layoutDoc = useCallback(() => {
    const keys = new Set(modelRef.current.graph.nodes.map((n) => n.key));
    const nodesOut = {};
    for (const k of Object.keys(positions.current).sort()) if (keys.has(k)) nodesOut[k] = positions.current[k];
    const vp = rf.getViewport();
    return { nodes: nodesOut, viewport: { x: Math.round(vp.x), y: Math.round(vp.y), zoom: Math.round(vp.zoom * 1000) / 1000 } };
  }, [rf]);

  // saving: a new version (the diff first), never activated; then the layout
  const startSave = useCallback(async () => {
    setSaveError(null);
    const m = modelRef.current;
    if (!m.ok) { setError('The YAML does not parse: fix it before saving.'); return; }
    const name = m.value.name;
    if (typeof name !== 'string' || !/^[a-z0-9_-]{1,128}$/.test(name)) { setError('The workflow needs a name of lowercase letters, digits, _ and - before it can be saved.'); return; }
    try {
      // The validator says which version the name has stored (null: a new workflow), so a
      // new name costs no request that fails.
      const probe = await api('POST', '/workflows/validate', textRef.current, { quiet: true, type: isJson ? 'application/json' : 'application/yaml' });
      const max = probe.latest_version || 0;
      const before = max ? (await exportText(name, max)).text : '';
      const cur = textRef.current;
      if (max && before === cur) { setStatus(`Nothing to save: version ${max} is this text.`); return; }
      let version = Number.isInteger(m.value.version) ? m.value.version : 1;
      let after = cur;
      if (max && version <= max) { version = max + 1; after = S.withVersion(cur, version); }
      setPlan({ name, version, from: max, before, after });
    } catch (e) {
      setError(e.message);
    }
  }, []);

  const confirmSave = useCallback(async () => {
    if (!plan) return;
    setSaving(true);
    setSaveError(null);
    try {
      const r = await api('POST', '/workflows?activate=never', plan.after, { type: isJson ? 'application/json' : 'application/yaml' });
      commit(plan.after, null);
      hist.current.tag = null;
      let layoutNote = '';
      try {
        await api('PUT', `/workflows/${encodeURIComponent(plan.name)}/layout`, { layout: layoutDoc() });
      } catch (e) {
        layoutNote = ` The layout was not stored: ${e.message}`;
      }
      setSaved({ text: plan.after, version: r.version, active: r.active, name: plan.name });
      setPlan(null);
      setStatus(`Saved ${plan.name} version ${r.version}${r.outcome === 'unchanged' ? ' (it was stored already)' : ''}; not active yet.${layoutNote}`);
      const want = `workflows/${encodeURIComponent(plan.name)}/edit`;
      if (!location.pathname.endsWith(want)) history.replaceState(null, '', new URL(want, document.baseURI));
    } catch (e) {
      const ds = e.body && e.body.details && e.body.details.diagnostics;
      setSaveError(ds && ds.length ? `The server refused it: ${ds.map((d) => `${d.code}: ${d.message}${d.line ? ` (line ${d.line})` : ''}`).join('; ')}` : e.message);
    } finally {
      setSaving(false);
    }
  }, [plan, commit, isJson, layoutDoc]);

  const activate = useCallback(async () => {
    try {
      await api('POST', `/workflows/${encodeURIComponent(saved.name)}/activate`, { version: saved.version });
      setSaved((s) => ({ ...s, active: true }));
      setStatus(`Version ${saved.version} of ${saved.name} is now active.`);
    } catch (e) {
      setError(e.message);
    }
  }, [saved]);

  const storeLayout = useCallback(async () => {
    if (!saved.name) return;
    try {
      await api('PUT', `/workflows/${encodeURIComponent(saved.name)}/layout`, { layout: layoutDoc() });
      setStatus('Layout stored.');
    } catch (e) {
      setError(e.message);
    }
  }, [saved, layoutDoc]);

  const tidy = useCallback(() => {
    positions.current = {};
    setLayoutTick((x) => x + 1);
    setTimeout(() => rf.fitView({ padding: 0.15, maxZoom: 1.2 }), 50);
    setStatus('Laid out again.');
  }, [rf]);

  const pick = useCallback((target) => {
    setSelected(target);
    if (target.kind === 'node') {
      const n = rf.getInternalNode(target.key);
      if (n) rf.setCenter(n.internals.positionAbsolute.x + NODE_W / 2, n.internals.positionAbsolute.y + NODE_H / 2, { zoom: rf.getZoom(), duration: 200 });
    }
  }, [rf]);

  // the YAML view follows the selection
  useEffect(() => {
    if (!selected || !model.ok || !editing()) return;
    let path = null;
    if (selected.kind === 'node') { const n = nodeByKey.get(selected.key); if (n) path = [...n.gpath, 'nodes', n.index]; }
    else { const e = edgeById.get(selected.key); if (e) path = e.kind === 'edge' ? [...e.gpath, 'edges', e.index] : [...e.gpath, 'nodes', e.nodeIndex]; }
    const r = path ? S.rangeAt(textRef.current, path) : null;
    if (r) setReveal({ from: r[0], to: r[0] });
  }, [selected]); // eslint-disable-line react-hooks/exhaustive-deps

  const problemsCount = diags.list.length + yamlErrors.length;
  const sameAsStored = saved.version && text === saved.text;
  const paletteTypes = schema ? [...nodeTypes(schema).keys()] : G.NODE_TYPES;
  const target = selected && selected.kind === 'node' && selNode ? (selNode.type === 'loop' ? selNode.key : selNode.parentKey) : null;
  const ids = selNode ? model.graph.nodes.filter((n) => (n.parentKey || '') === (selNode.parentKey || '')).map((n) => n.id) : [];

  return (
    <div className="hb">
      <div className="hb-bar">
        <h1 tabIndex={-1}>{props.name ? `Edit ${props.name}` : 'New workflow'}</h1>
        <div className="hb-actions" role="toolbar" aria-label="Builder">
          <button type="button" className="secondary" onClick={undo} disabled={!histLen[0]} aria-keyshortcuts="Control+Z">Undo</button>
          <button type="button" className="secondary" onClick={redo} disabled={!histLen[1]} aria-keyshortcuts="Control+Shift+Z">Redo</button>
          <button type="button" className="secondary" onClick={tidy}>Lay out</button>
          <button type="button" onClick={startSave}>Save…</button>
          <button type="button" className="secondary" onClick={activate} disabled={!saved.version || saved.active || !sameAsStored}>
            {saved.version && saved.active && sameAsStored ? `Version ${saved.version} active` : 'Activate'}
          </button>
          <button type="button" className="secondary" onClick={() => download(`${wfName || 'workflow'}.${isJson ? 'json' : 'yaml'}`, textRef.current, isJson ? 'application/json' : 'application/yaml')}>Export YAML</button>
          <button type="button" className="secondary" onClick={() => download(`${wfName || 'workflow'}.layout.json`, JSON.stringify({ name: wfName, layout: layoutDoc() }, null, 2) + '\n', 'application/json')}>Export layout</button>
          {saved.name ? <button type="button" className="secondary" onClick={storeLayout}>Store layout</button> : null}
        </div>
        <p className="hb-status" role="status" aria-live="polite">
          <span className={dirty ? 'hb-dirty' : 'hb-clean'}>{dirty ? 'Unsaved changes' : saved.version ? `Version ${saved.version}${saved.active ? ' (active)' : ''}` : 'Not saved yet'}</span>
          {' · '}
          <span className={problemsCount ? 'error' : 'ok'}>{problemsCount ? `${problemsCount} problem${problemsCount === 1 ? '' : 's'}` : diags.text === text && diags.valid ? 'valid' : 'checking…'}</span>
          {status ? <> · <span>{status}</span></> : null}
          {error ? <> · <span className="error">{error}</span></> : null}
          {diags.error ? <> · <span className="error">validator: {diags.error}</span></> : null}
        </p>
      </div>
      <div className="hb-palette nokey" role="toolbar" aria-label="Add a node">
        <span className="hb-palette-label">Add{target ? <> to <code>{target}</code></> : null}:</span>
        {paletteTypes.map((t) => (
          <button key={t} type="button" className={`hb-chip t-${t}`} draggable onDragStart={(e) => { e.dataTransfer.setData('application/x-hilo-node', t); e.dataTransfer.effectAllowed = 'copy'; }}
            onClick={() => addNode(t)} aria-label={`Add a ${t} node${target ? ` to ${target}` : ''}`}>{t}</button>
        ))}
      </div>
      <div className="hb-main">
        <section className="hb-canvas" aria-label="Canvas" onDragOver={(e) => { if (e.dataTransfer.types.includes('application/x-hilo-node')) { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; } }} onDrop={onDrop}>
          <ReactFlow
            nodes={nodes}
            edges={edges}
            nodeTypes={NODE_TYPES_RF}
            onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange}
            onNodeDragStop={onNodeDragStop}
            onSelectionChange={onSelectionChange}
            onConnect={onConnect}
            isValidConnection={isValidConnection}
            onBeforeDelete={onBeforeDelete}
            onInit={onInit}
            onPaneClick={() => setSelected(null)}
            deleteKeyCode={['Delete', 'Backspace']}
            onlyRenderVisibleElements={model.graph.nodes.length > BIG}
            minZoom={0.05}
            maxZoom={2}
            colorMode="system"
            elevateNodesOnSelect={false}
            elevateEdgesOnSelect
          >
            <Background gap={16} size={1} />
            <Controls showInteractive={false} />
            {model.graph.nodes.length <= BIG ? <MiniMap pannable zoomable ariaLabel="Overview of the canvas" /> : null}
          </ReactFlow>
        </section>
        <aside className="hb-side nokey">
          <section className="hb-panel" aria-label="Properties">
            {selNode ? (
              <NodeForm key={selNode.key} node={selNode} schema={schema} tools={tools} ids={ids}
                problems={placed.byNode.get(selNode.key) || []} problemsAt={problemsAtNode}
                onSet={(path, v) => setNodeField(selNode.key, path, v)} onRename={renameSelected}
                onDelete={() => deleteThings([selNode.key], [])}
                onConnect={(to) => edit((t) => S.connect(t, selNode.gpath, selNode.id, to))} />
            ) : selEdge ? (
              <EdgeForm edge={selEdge} problems={placed.byEdge.get(selEdge.id) || []}
                onWhen={(w) => edit((t) => S.setEdgeWhen(t, selEdge, w), `${selEdge.id}|when`)}
                onDefault={() => { if (edit((t) => S.caseToDefault(t, selEdge))) setSelected(null); }}
                onDelete={() => deleteThings([], [selEdge.id])} />
            ) : (
              <WorkflowForm value={model.value} schema={schema} loose={placed.loose} onPick={pick}
                problemsAt={problemsAtWf} storedVersion={saved.version}
                onSet={(path, v) => edit((t) => (v === undefined ? S.deleteIn(t, path) : S.setIn(t, path, v)), `wf|${path.join('.')}`)}
                version={`${model.graph.nodes.length} node(s), ${model.graph.edges.length} edge(s).`} />
            )}
            <datalist id="hb-tools">{tools.map((t) => <option key={t} value={t} />)}</datalist>
          </section>
          <section className="hb-yaml" aria-labelledby="hb-yaml-title">
            <h2 id="hb-yaml-title">YAML{model.ok ? '' : ' (does not parse: the canvas shows the last text that did)'}</h2>
            <YamlView text={text} onChange={(t) => commit(t, 'yaml')} onUndo={undo} onRedo={redo} lint={lint} reveal={reveal} ready={drawn && !!lib} />
          </section>
        </aside>
      </div>
      <SaveDialog plan={plan} busy={saving} error={saveError} onCancel={() => setPlan(null)} onConfirm={confirmSave} />
    </div>
  );
}

export function Builder(props) {
  return (
    <ReactFlowProvider>
      <Inner {...props} />
    </ReactFlowProvider>
  );
}
