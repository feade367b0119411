// The sandbox's prelude: a module whose default export engine.rs calls in every call's fresh
// context before the script, with the call's clock, seed and (optionally) the host function.
// It is compiled to bytecode once per process and read into each context (see engine.rs). It
// makes the language deterministic and closes what the engine would otherwise expose, then
// hands engine.rs its helpers (`freeze`, `output`, `isHostError`), which the script
// never sees. Everything it needs later is captured here, before any script code runs, so
// nothing the script changes (JSON, Object, prototypes) affects the helpers.
export default function setup(now, s0, s1, s2, s3, loadDate, native) {
  const G = globalThis;
  const O = Object;
  const defineProperty = O.defineProperty;
  const freeze = O.freeze;
  const values = O.values;
  const setPrototypeOf = O.setPrototypeOf;
  const apply = Reflect.apply;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const E = Error;
  const hidden = (obj, name, value) =>
    defineProperty(obj, name, { value, writable: true, enumerable: false, configurable: true });

  // No user code inside the engine's stack building: `Error.prepareStackTrace` would be called
  // with CallSites whose getFunction() hands out whatever function is on the stack (native ones
  // included), and a `stackTraceLimit` object's valueOf would run mid-throw. Both become plain
  // data properties: assigning them works and does nothing.
  defineProperty(E, "prepareStackTrace", { value: undefined, writable: true, enumerable: false, configurable: false });
  defineProperty(E, "stackTraceLimit", { value: 10, writable: true, enumerable: false, configurable: false });

  // Math.random: xoshiro128** from the call's seed (four 32-bit words derived in Rust by
  // splitmix64), 53 bits per number.
  let a = s0 >>> 0, b = s1 >>> 0, c = s2 >>> 0, d = s3 >>> 0;
  const imul = Math.imul;
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  const next = () => {
    const r = imul(rotl(imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = rotl(d, 11);
    return r;
  };
  hidden(Math, "random", {
    random() {
      return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
    },
  }.random);

  // Date: the deterministic one (prelude_date.js) replaces the real one when the script first
  // reads the global `Date` (most scripts never do, and loading and installing it costs as much
  // as the rest of the prelude); until then no Date object can exist, since only the
  // constructor makes one.
  const RealDate = G.Date;
  let date;
  defineProperty(G, "Date", {
    get() {
      if (date === undefined) {
        date = loadDate()(RealDate, now, apply, defineProperty, setPrototypeOf);
        hidden(G, "Date", date);
      }
      return date;
    },
    set(v) {
      hidden(G, "Date", v);
    },
    enumerable: false,
    configurable: true,
  });

  // `tools`, only with a host. Its errors are told apart by identity, which a script cannot
  // forge.
  let isHostError = () => false;
  if (native !== undefined) {
    const hostErrors = new WeakSet();
    const has = WeakSet.prototype.has;
    const add = WeakSet.prototype.add;
    isHostError = (e) => apply(has, hostErrors, [e]);
    const call = async function call(name, args) {
      const text = args === undefined ? undefined : stringify(args);
      const r = native("" + name, text);
      if (r[0] === "ok") return parse(r[1]);
      const e = new E(r[2]);
      defineProperty(e, "code", { value: r[1], writable: true, enumerable: true, configurable: true });
      apply(add, hostErrors, [e]);
      throw e;
    };
    defineProperty(G, "tools", { value: freeze({ call }), writable: false, enumerable: false, configurable: false });
  }

  // The state: a fresh JSON.parse result, so plain objects and arrays, no cycles; iterative, so
  // any depth the parser accepted is frozen without recursion.
  const deepFreeze = (root) => {
    const stack = [root];
    while (stack.length > 0) {
      const v = stack.pop();
      if (v !== null && typeof v === "object") {
        freeze(v);
        const vs = values(v);
        for (let i = 0; i < vs.length; i++) stack.push(vs[i]);
      }
    }
    return root;
  };

  // The result's JSON text, or its length when longer than `max` characters (then it is larger
  // than `max` bytes too), so engine.rs copies nothing too large.
  const output = (v, max) => {
    const s = stringify(v);
    if (s === undefined) return undefined;
    return s.length > max ? s.length : s;
  };

  return freeze({ freeze: deepFreeze, output, isHostError });
}
