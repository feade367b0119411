// The sandbox's deterministic Date: a module whose default export the prelude (prelude.js)
// calls the first time a script reads the global `Date`, with the real constructor and the
// primordials it captured before any script code ran. The clock is the call's `now` and local
// time is UTC (QuickJS would read the host's clock and time zone): the real constructor stays
// in this closure, every local-time method becomes its UTC twin, and strings without an offset
// are read as UTC. Compiled once per process like the prelude (see engine.rs).
export default function installDate(RealDate, now, apply, defineProperty, setPrototypeOf) {
  const isObject = (v) => v !== null && (typeof v === "object" || typeof v === "function");
  const hidden = (obj, name, value) =>
    defineProperty(obj, name, { value, writable: true, enumerable: false, configurable: true });
  const TE = TypeError;
  const keys = Object.keys;
  const DP = RealDate.prototype;
  const realParse = RealDate.parse;
  const realUTC = RealDate.UTC;
  const getTime = DP.getTime;
  const getUTCFullYear = DP.getUTCFullYear;
  const setUTCFullYear = DP.setUTCFullYear;
  const setTime = DP.setTime;
  const ISO_LOCAL = /^(?:[+-](?!000000)\d{6}|\d{4})(?:-(?!00)\d\d(?:-(?!00)\d\d)?)?T\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?$/;
  const ISO = /^(?:[+-](?!000000)\d{6}|\d{4})(?:-(?!00)\d\d(?:-(?!00)\d\d)?)?(?:T\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?)?(?:Z|[+-]\d\d(?::?\d\d)?)?$/;
  const parseUtc = (s) => {
    s = `${s}`;
    if (ISO_LOCAL.test(s)) return realParse(s + "Z");
    if (ISO.test(s)) return realParse(s);
    // Any other form: a leading zone makes QuickJS read it as UTC; a zone in the text wins.
    return realParse("UTC " + s);
  };
  const toPrimitive = (v) => {
    if (!isObject(v)) return v;
    const exotic = v[Symbol.toPrimitive];
    if (exotic !== undefined && exotic !== null) {
      const r = apply(exotic, v, ["default"]);
      if (isObject(r)) throw new TE("cannot convert the object to a primitive value");
      return r;
    }
    for (const name of ["valueOf", "toString"]) {
      const f = v[name];
      if (typeof f === "function") {
        const r = apply(f, v, []);
        if (!isObject(r)) return r;
      }
    }
    throw new TE("cannot convert the object to a primitive value");
  };
  const DAYS = "SunMonTueWedThuFriSat";
  const MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec";
  const p2 = (n) => (n < 10 ? "0" : "") + n;
  const year = (y) => (y < 0 ? "-" + ("" + -y).padStart(5, "0") : ("" + y).padStart(4, "0"));
  // The date's UTC fields, or undefined when it is NaN.
  const fields = (date) => {
    const t = apply(getTime, date, []);
    if (t !== t) return undefined;
    const x = new RealDate(t);
    return [x.getUTCFullYear(), x.getUTCMonth(), x.getUTCDate(), x.getUTCDay(), x.getUTCHours(), x.getUTCMinutes(), x.getUTCSeconds()];
  };
  const datePart = (f) => DAYS.substr(f[3] * 3, 3) + " " + MONTHS.substr(f[1] * 3, 3) + " " + p2(f[2]) + " " + year(f[0]);
  const timePart = (f) => p2(f[4]) + ":" + p2(f[5]) + ":" + p2(f[6]) + " GMT+0000";
  const localeDate = (f) => p2(f[1] + 1) + "/" + p2(f[2]) + "/" + year(f[0]);
  const localeTime = (f) => p2(((f[4] + 11) % 12) + 1) + ":" + p2(f[5]) + ":" + p2(f[6]) + " " + (f[4] < 12 ? "AM" : "PM");
  const show = (date, format) => {
    const f = fields(date);
    return f === undefined ? "Invalid Date" : format(f);
  };
  // Assigned, not defined: the properties stay writable and non-enumerable.
  for (const name of ["FullYear", "Month", "Date", "Hours", "Minutes", "Seconds", "Milliseconds"]) {
    DP["get" + name] = DP["getUTC" + name];
    DP["set" + name] = DP["setUTC" + name];
  }
  DP.getDay = DP.getUTCDay;
  const methods = {
    toString() { return show(this, (f) => datePart(f) + " " + timePart(f)); },
    toDateString() { return show(this, datePart); },
    toTimeString() { return show(this, timePart); },
    toLocaleString() { return show(this, (f) => localeDate(f) + ", " + localeTime(f)); },
    toLocaleDateString() { return show(this, localeDate); },
    toLocaleTimeString() { return show(this, localeTime); },
    getTimezoneOffset() {
      const t = apply(getTime, this, []);
      return t !== t ? NaN : 0;
    },
    getYear() { return apply(getUTCFullYear, this, []) - 1900; },
    setYear(y) {
      apply(getTime, this, []);
      y = +y;
      if (y !== y) return apply(setTime, this, [NaN]);
      y = Math.trunc(y);
      if (y >= 0 && y < 100) y += 1900;
      return apply(setUTCFullYear, this, [y]);
    },
  };
  for (const name of keys(methods)) DP[name] = methods[name];
  const Date = function Date(...args) {
    if (new.target === undefined) return apply(DP.toString, new RealDate(now), []);
    let t;
    if (args.length === 0) {
      t = now;
    } else if (args.length === 1) {
      try {
        t = apply(getTime, args[0], []);
      } catch {
        const p = toPrimitive(args[0]);
        t = typeof p === "string" ? parseUtc(p) : +p;
      }
    } else {
      t = apply(realUTC, undefined, args);
    }
    // Only a number reaches the real constructor, so it never throws or runs script code.
    const date = new RealDate(+t);
    if (new.target !== Date) {
      const proto = new.target.prototype;
      if (isObject(proto)) setPrototypeOf(date, proto);
    }
    return date;
  };
  defineProperty(Date, "length", { value: 7, configurable: true });
  defineProperty(Date, "prototype", { value: DP, writable: false, enumerable: false, configurable: false });
  // (Method shorthand: named `now` without binding that name over the clock.)
  hidden(Date, "now", { now() { return now; } }.now);
  hidden(Date, "parse", { parse(s) { return parseUtc(s); } }.parse);
  hidden(Date, "UTC", realUTC);
  DP.constructor = Date;
  return Date;
}
