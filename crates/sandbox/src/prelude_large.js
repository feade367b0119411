// The sandbox's paths for large work the engine could not interrupt: a module whose default
// export the prelude (prelude.js) calls the first time it needs one, with the engine's own
// String methods, `expired` (true once the call's deadline has passed; the call then ends with
// TIMEOUT), Reflect.apply and Object.defineProperty, all captured before any script code ran.
//
// - Searches for a string larger than the engine may do in one uninterrupted step (indexOf,
//   lastIndexOf, includes, split, replace and replaceAll with a string pattern, `$` patterns
//   included): each step is one engine call of bounded cost (a scan for one character, one
//   comparison of the pattern), and `expired` is asked before each.
// - Array.prototype.flat and flatMap, whose C recursion visits every index of every nested
//   array: the language's algorithm (FlattenIntoArray, ArraySpeciesCreate) in JavaScript,
//   which the deadline interrupts.
//
// Results are the language's. Compiled once per process like the prelude (see engine.rs).
export default function large(engine, expired, apply, defineProperty) {
  const TE = TypeError;
  const integer = (v) => {
    v = +v;
    if (v !== v) return 0;
    return v === Infinity || v === -Infinity ? v : Math.trunc(v);
  };
  const clamp = (v, n) => (v < 0 ? 0 : v > n ? n : v);
  const tick = () => {
    if (expired()) throw new TE("the script's time ran out");
  };
  const indexOf = (s, t, position) => {
    const n = s.length, m = t.length;
    let i = clamp(integer(position), n);
    if (m === 0) return i;
    const first = t[0];
    for (;;) {
      tick();
      i = apply(engine.indexOf, s, [first, i]);
      if (i < 0 || i + m > n) return -1;
      if (apply(engine.startsWith, s, [t, i])) return i;
      i++;
    }
  };
  const lastIndexOf = (s, t, position) => {
    const n = s.length, m = t.length;
    const p = +position;
    let i = clamp(p !== p ? Infinity : integer(p), n);
    if (i + m > n) i = n - m;
    if (m === 0) return i;
    const first = t[0];
    while (i >= 0) {
      tick();
      i = apply(engine.lastIndexOf, s, [first, i]);
      if (i < 0) return -1;
      if (apply(engine.startsWith, s, [t, i])) return i;
      i--;
    }
    return -1;
  };
  const split = (s, t, limit) => {
    const max = limit === undefined ? 4294967295 : limit >>> 0;
    const parts = [];
    if (max === 0) return parts;
    const m = t.length;
    let p = 0;
    for (;;) {
      const q = indexOf(s, t, p);
      if (q < 0) break;
      parts.push(s.slice(p, q));
      if (parts.length === max) return parts;
      p = q + m;
    }
    parts.push(s.slice(p));
    return parts;
  };
  // GetSubstitution without captures: `$$`, `$&`, `` $` ``, `$'`; anything else stays as written.
  const substitute = (matched, position, s, replacement) => {
    if (apply(engine.indexOf, replacement, ["$"]) < 0) return replacement;
    let out = "";
    for (let i = 0; i < replacement.length; i++) {
      const c = replacement[i];
      const d = replacement[i + 1];
      if (c !== "$" || d === undefined) {
        out += c;
      } else if (d === "$") {
        out += "$";
        i++;
      } else if (d === "&") {
        out += matched;
        i++;
      } else if (d === "`") {
        out += s.slice(0, position);
        i++;
      } else if (d === "'") {
        out += s.slice(position + matched.length);
        i++;
      } else {
        out += c;
      }
    }
    return out;
  };
  const replace = (s, t, replacement, all) => {
    const call = typeof replacement === "function";
    const r = call ? replacement : `${replacement}`;
    const m = t.length;
    const positions = [];
    let p = indexOf(s, t, 0);
    while (p >= 0) {
      positions.push(p);
      if (!all) break;
      p = indexOf(s, t, p + (m > 0 ? m : 1));
    }
    let out = "";
    let end = 0;
    for (const position of positions) {
      const value = call ? `${apply(r, undefined, [t, position, s])}` : substitute(t, position, s, r);
      out += s.slice(end, position) + value;
      end = position + m;
    }
    return out + s.slice(end);
  };
  const isObject = (v) => v !== null && (typeof v === "object" || typeof v === "function");
  const isArray = Array.isArray;
  const P = Proxy;
  const species = Symbol.species;
  const NewArray = Array;
  const toLength = (v) => {
    v = +v;
    return v !== v || v <= 0 ? 0 : v > 9007199254740991 ? 9007199254740991 : Math.trunc(v);
  };
  // IsConstructor without touching `c`: a Proxy of `c` has [[Construct]] exactly when `c` does.
  const constructs = { construct: () => ({}) };
  const isConstructor = (c) => {
    if (typeof c !== "function") return false;
    try {
      new (new P(c, constructs))();
      return true;
    } catch {
      return false;
    }
  };
  // ArraySpeciesCreate(o, 0).
  const speciesCreate = (o) => {
    if (!isArray(o)) return new NewArray(0);
    let c = o.constructor;
    if (isObject(c)) {
      c = c[species];
      if (c === null) c = undefined;
    }
    if (c === undefined) return new NewArray(0);
    if (!isConstructor(c)) throw new TE("the array's species is not a constructor");
    return new c(0);
  };
  // FlattenIntoArray.
  const flatten = (target, source, sourceLength, start, depth, mapper, thisArg) => {
    let index = start;
    for (let k = 0; k < sourceLength; k++) {
      if (!(k in source)) continue;
      let element = source[k];
      if (mapper !== undefined) element = apply(mapper, thisArg, [element, k, source]);
      if (depth > 0 && isArray(element)) {
        index = flatten(target, element, toLength(element.length), index, depth - 1);
      } else {
        if (index >= 9007199254740991) throw new TE("the flattened array would be too long");
        defineProperty(target, index, { value: element, writable: true, enumerable: true, configurable: true });
        index++;
      }
    }
    return index;
  };
  const toObject = (self, name) => {
    if (self === undefined || self === null) throw new TE(`Array.prototype.${name} called on null or undefined`);
    return Object(self);
  };
  const flat = (self, depth) => {
    const o = toObject(self, "flat");
    const length = toLength(o.length);
    let d = 1;
    if (depth !== undefined) {
      d = integer(depth);
      if (d < 0) d = 0;
    }
    const a = speciesCreate(o);
    flatten(a, o, length, 0, d);
    return a;
  };
  const flatMap = (self, callback, thisArg) => {
    const o = toObject(self, "flatMap");
    const length = toLength(o.length);
    if (typeof callback !== "function") throw new TE("flatMap's callback is not a function");
    const a = speciesCreate(o);
    flatten(a, o, length, 0, 1, callback, thisArg);
    return a;
  };
  return {
    indexOf,
    lastIndexOf,
    includes: (s, t, position) => indexOf(s, t, position) >= 0,
    split,
    replace: (s, t, replacement) => replace(s, t, replacement, false),
    replaceAll: (s, t, replacement) => replace(s, t, replacement, true),
    flat,
    flatMap,
  };
}
