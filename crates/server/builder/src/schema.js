// The node forms come from the workflow format's JSON Schema (`GET /schema/workflow`, the one
// `hilo schema` prints and the validator uses): for each node type, its properties and which
// are required; each property's widget follows its schema.

export function nodeTypes(schema) {
  const out = new Map();
  const node = schema && schema.definitions && schema.definitions.node;
  for (const a of (node && node.allOf) || []) {
    const ty = a.if && a.if.properties && a.if.properties.type && a.if.properties.type.const;
    if (!ty) continue;
    out.set(ty, { properties: a.then.properties || {}, required: a.then.required || [], oneOf: a.then.oneOf });
  }
  return out;
}

export function resolve(schema, s, depth = 0) {
  while (s && s.$ref && depth < 10) {
    const path = s.$ref.replace(/^#\//, '').split('/');
    let x = schema;
    for (const p of path) x = x && x[p];
    s = x;
    depth += 1;
  }
  return s || {};
}

const LONG = new Set(['prompt', 'source', 'expr', 'when', 'until', 'description', 'goal', 'task', 'system', 'query', 'for_each']);
const COMMON_LAST = ['description', 'timeout_ms', 'retry', 'on_error', 'compensate'];

function types(s) {
  return Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
}

/** The widget of a property: enum, string, text, number, integer, boolean, list, object, on_error or yaml. */
export function widgetOf(schema, key, s0) {
  const s = resolve(schema, s0);
  if (key === 'on_error') return { kind: 'on_error', schema: s };
  if (Array.isArray(s.enum)) return { kind: 'enum', options: s.enum, schema: s };
  const t = types(s);
  if (t.length === 1) {
    if (t[0] === 'string') return { kind: LONG.has(key) ? 'text' : 'string', schema: s };
    if (t[0] === 'integer' || t[0] === 'number') return { kind: 'number', integer: t[0] === 'integer', schema: s };
    if (t[0] === 'boolean') return { kind: 'boolean', schema: s };
    if (t[0] === 'array') {
      const items = resolve(schema, s.items);
      if (types(items).length === 1 && types(items)[0] === 'string') return { kind: 'list', schema: s };
    }
    if (t[0] === 'object' && s.properties && s.additionalProperties === false) return { kind: 'object', schema: s };
  }
  if (t.length === 2 && t.includes('string') && t.includes('array') && key === 'for_each') return { kind: 'text', schema: s };
  return { kind: 'yaml', schema: s };
}

/** The fields of a node type's form, in order: its own, then the common ones. */
export function fieldsOf(schema, type) {
  const t = nodeTypes(schema).get(type);
  if (!t) return [];
  const keys = Object.keys(t.properties).filter((k) => k !== 'id' && k !== 'type' && k !== 'body');
  const own = keys.filter((k) => !COMMON_LAST.includes(k));
  const common = COMMON_LAST.filter((k) => keys.includes(k));
  return [...own, ...common].map((k) => ({ key: k, required: t.required.includes(k), widget: widgetOf(schema, k, t.properties[k]), description: resolve(schema, t.properties[k]).description }));
}
