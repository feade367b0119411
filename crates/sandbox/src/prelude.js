// The sandbox's prelude: a module whose default export engine.rs calls once per worker, in the
// context it then saves with the whole heap (see engine.rs), with the Rust functions it needs:
// `Math.random` (the running call's dice), the loaders of the two modules it may need later
// (prelude_date.js, prelude_large.js), the deadline check and the host function (which
// answers only in a call that has a host). It is compiled to bytecode once per process. It
// makes the language deterministic and closes what the engine would otherwise expose, then
// hands engine.rs its helpers (`begin`, `freeze`, `output`, `isHostError`), which the script
// never sees; `begin` gives it each call's clock, the longest array its heap could hold, and
// `tools` when the call has a host. Everything it needs later is captured here, before any
// script code runs, so nothing the script changes (JSON, Object, prototypes) affects the
// helpers.
let used = false;
export default function setup(random, loadDate, loadLarge, expired, native) {
  // Once, before the heap is saved: a script that imports this module ("<sandbox>") finds it
  // spent.
  if (used) throw new TypeError("the sandbox's prelude has run");
  used = true;
  // Set by `begin` at the start of every call.
  let now = 0;
  let longest = 0;
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

  // Math.random: `random`, made in Rust (engine.rs, `Dice`): xoshiro128** from the call's seed.
  hidden(Math, "random", random);

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

  // Both of the following run a large case through prelude_large.js, loaded then.
  let large;
  const slow = () => (large ??= loadLarge()(engine, expired, apply, defineProperty));
  const isObject = (v) => v !== null && (typeof v === "object" || typeof v === "function");
  const SP = String.prototype;
  const AP = Array.prototype;
  const concatString = SP.concat;
  const engine = {
    startsWith: SP.startsWith,
    indexOf: SP.indexOf,
    lastIndexOf: SP.lastIndexOf,
    includes: SP.includes,
    split: SP.split,
    replace: SP.replace,
    replaceAll: SP.replaceAll,
  };

  // String searches for a string: QuickJS's C compares the pattern at every position, n·m
  // steps that nothing interrupts, so `'a'.repeat(2e6).indexOf('a'.repeat(1e6) + 'b')` would
  // hold a worker for hours past any deadline. A search of up to WORK steps goes to the engine
  // as before, a larger one to prelude_large.js, which asks `expired` between steps of bounded
  // size. Coercions happen once and in the language's order; what is not a search for a string
  // (a RegExp or another object with its own matcher, a missing `this`) goes to the engine.
  const WORK = 1 << 22;
  const search = (name, self, a, b) => {
    const native = engine[name];
    if (self === undefined || self === null) return apply(native, self, [a, b]);
    if (name !== "indexOf" && name !== "lastIndexOf" && (isObject(a) || (name === "split" && a === undefined))) {
      return apply(native, self, [a, b]);
    }
    // ToString through the engine's own `concat` (a template literal is `"".concat(x)` in
    // QuickJS, which would call a script's String.prototype.concat: one returning
    // `{ length: 0, toString: () => x }` would send any search to the engine).
    const s = apply(concatString, "", [self]), t = apply(concatString, "", [a]);
    if (s.length * t.length <= WORK) return apply(native, s, [t, b]);
    return slow()[name](s, t, b);
  };
  // One method each, installed without a loop or computed names. Each keeps the language's
  // `length`.
  const S = {
    indexOf(a, b = undefined) { return search("indexOf", this, a, b); },
    lastIndexOf(a, b = undefined) { return search("lastIndexOf", this, a, b); },
    includes(a, b = undefined) { return search("includes", this, a, b); },
    split(a, b) { return search("split", this, a, b); },
    replace(a, b) { return search("replace", this, a, b); },
    replaceAll(a, b) { return search("replaceAll", this, a, b); },
  };
  // Assigned, not defined: the properties stay writable and non-enumerable.
  SP.indexOf = S.indexOf;
  SP.lastIndexOf = S.lastIndexOf;
  SP.includes = S.includes;
  SP.split = S.split;
  SP.replace = S.replace;
  SP.replaceAll = S.replaceAll;

  // Array methods whose C loop visits every index up to `length` without the deadline ever
  // interrupting it: `Array.prototype.join.call({ length: 2 ** 53 - 1 })` would never end.
  // Over more than `longest` indices (the most array elements the call's heap could hold: a
  // dense array that long does not fit, so what this refuses is a sparse array or an
  // array-like that only claims the length; 2^21 indices, ~50 ms of that loop, for 32 MB) they
  // throw a RangeError instead. (`length` is read here and again by the engine.) `flat` and
  // `flatMap` recurse into nested arrays, each of which could be that long, so they are the
  // language's algorithm in JavaScript (in prelude_large.js), which the deadline interrupts.
  const trunc = Math.trunc;
  const isArray = Array.isArray;
  const spreadable = Symbol.isConcatSpreadable;
  const lengthOf = (o) => {
    const v = +O(o).length;
    return v !== v || v <= 0 ? 0 : v > 9007199254740991 ? 9007199254740991 : trunc(v);
  };
  const refuse = (name, length) => {
    throw new RangeError(`Array.prototype.${name} over ${length} indices: longer than any array the call's heap could hold (${longest}), and the engine could not interrupt it`);
  };
  const guard = (name, self) => {
    if (self !== undefined && self !== null) {
      const length = lengthOf(self);
      if (length > longest) refuse(name, length);
    }
  };
  const copyWithin = AP.copyWithin, join = AP.join, reverse = AP.reverse, shift = AP.shift;
  const sort = AP.sort, splice = AP.splice, toLocaleString = AP.toLocaleString, unshift = AP.unshift;
  const concat = AP.concat;
  const A = {
    copyWithin(a, b) { guard("copyWithin", this); return apply(copyWithin, this, arguments); },
    join(a) { guard("join", this); return apply(join, this, arguments); },
    reverse() { guard("reverse", this); return apply(reverse, this, arguments); },
    shift() { guard("shift", this); return apply(shift, this, arguments); },
    sort(a) { guard("sort", this); return apply(sort, this, arguments); },
    splice(a, b) { guard("splice", this); return apply(splice, this, arguments); },
    toLocaleString() { guard("toLocaleString", this); return apply(toLocaleString, this, arguments); },
    unshift(a) { guard("unshift", this); return apply(unshift, this, arguments); },
    concat(item) {
      if (this !== undefined && this !== null) {
        let total = 0;
        for (let i = -1; i < arguments.length; i++) {
          const e = i < 0 ? O(this) : arguments[i];
          if (!isObject(e)) continue;
          const flag = e[spreadable];
          if (flag !== undefined ? !!flag : isArray(e)) total += lengthOf(e);
          if (total > longest) refuse("concat", total);
        }
      }
      return apply(concat, this, arguments);
    },
    flat(depth = undefined) { return slow().flat(this, depth); },
    flatMap(callback, thisArg = undefined) { return slow().flatMap(this, callback, thisArg); },
  };
  AP.copyWithin = A.copyWithin;
  AP.join = A.join;
  AP.reverse = A.reverse;
  AP.shift = A.shift;
  AP.sort = A.sort;
  AP.splice = A.splice;
  AP.toLocaleString = A.toLocaleString;
  AP.unshift = A.unshift;
  AP.concat = A.concat;
  AP.flat = A.flat;
  AP.flatMap = A.flatMap;

  // `tools`, defined by `begin` for a call with a host. Its errors are told apart by identity,
  // which a script cannot forge.
  const hostErrors = new WeakSet();
  const has = WeakSet.prototype.has;
  const add = WeakSet.prototype.add;
  const isHostError = (e) => apply(has, hostErrors, [e]);
  const call = async function call(name, args) {
    const text = args === undefined ? undefined : stringify(args);
    const r = native("" + name, text);
    if (r[0] === "ok") return parse(r[1]);
    const e = new E(r[2]);
    defineProperty(e, "code", { value: r[1], writable: true, enumerable: true, configurable: true });
    apply(add, hostErrors, [e]);
    throw e;
  };
  const tools = freeze({ call });

  const begin = (clock, longestArray, hosted) => {
    now = clock;
    longest = longestArray;
    if (hosted) defineProperty(G, "tools", { value: tools, writable: false, enumerable: false, configurable: false });
  };

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

  return freeze({ begin, freeze: deepFreeze, output, isHostError });
}
