//! Which context a call gets: the intrinsics of a lean, dated or full context, and the scan of
//! the source that chooses (see engine.rs's notes, "A context as large as the script needs").

use rquickjs::context::intrinsic;
use rquickjs::{Context, Runtime};

use crate::Call;

/// What a lean context is given beyond the base objects (see engine.rs's notes).
type LeanIntrinsics = (
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::Promise,
);

/// A lean context's and `Date`: what a source that names `Date` gets.
type DatedIntrinsics = (LeanIntrinsics, intrinsic::Date);

/// A full context: a dated one's, the collections and the typed arrays.
pub(crate) type Intrinsics = (DatedIntrinsics, intrinsic::MapSet, intrinsic::TypedArrays);

/// The global only a dated (or full) context has.
const DATE: &str = "Date";

/// The globals only a full context has.
const FULL_ONLY: &[&str] = &[
    "Map",
    "Set",
    "WeakMap",
    "WeakSet",
    "ArrayBuffer",
    "SharedArrayBuffer",
    "DataView",
    "Atomics",
    "Int8Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "BigInt64Array",
    "BigUint64Array",
    "Float16Array",
    "Float32Array",
    "Float64Array",
];

/// Names through which a script can reach a global it does not name.
const DOORS: &[&str] = &["globalThis", "eval", "Function", "constructor"];

/// Which context a call gets (see engine.rs's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Realm {
    #[default]
    Lean,
    /// Lean, with `Date`.
    Dated,
    Full,
}

impl Realm {
    /// Full for a call with a host (the prelude keeps the host's errors in a `WeakSet`) and
    /// for a source that names a global of [`FULL_ONLY`] or a door to the global object
    /// ([`DOORS`]), or holds a `\u` escape (an identifier can be spelt with one); dated for
    /// a source that names `Date`; lean otherwise. Comments and strings are read as code: a
    /// name there only costs a larger context.
    pub(crate) fn of(call: &Call) -> Realm {
        let source = call.source.as_bytes();
        if call.host.is_some() || source.windows(2).any(|w| w == b"\\u") {
            return Realm::Full;
        }
        let mut realm = Realm::Lean;
        for word in source.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$')) {
            if FULL_ONLY
                .iter()
                .chain(DOORS)
                .any(|name| name.as_bytes() == word)
            {
                return Realm::Full;
            }
            if word == DATE.as_bytes() {
                realm = Realm::Dated;
            }
        }
        realm
    }

    pub(crate) fn make(self, runtime: &Runtime) -> rquickjs::Result<Context> {
        match self {
            Realm::Lean => Context::custom::<LeanIntrinsics>(runtime),
            Realm::Dated => Context::custom::<DatedIntrinsics>(runtime),
            Realm::Full => Context::custom::<Intrinsics>(runtime),
        }
    }
}

/// The global of [`FULL_ONLY`] (or `Date`) that a script in a smaller context reached for
/// (reflectively: its source does not name it) and did not find.
pub(crate) fn lean_miss(message: &str, realm: Realm) -> Option<&str> {
    let name = message
        .strip_prefix("ReferenceError: ")?
        .strip_suffix(" is not defined")?;
    let missing = match realm {
        Realm::Lean => FULL_ONLY.contains(&name) || name == DATE,
        Realm::Dated => FULL_ONLY.contains(&name),
        Realm::Full => false,
    };
    missing.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_a_full_context_only_when_it_may_use_what_a_lean_one_lacks() {
        let of = |source: &str| Realm::of(&Call::new(source));
        assert_eq!(of("export default (args) => args.x + 1"), Realm::Lean);
        // Longer words that merely contain a name, and methods, do not count.
        assert_eq!(
            of(
                "export default (a) => a.map(x => x).filter(Boolean).concat(Array.of(1), MapX, mySet)"
            ),
            Realm::Lean
        );
        assert_eq!(of("export default () => Date.now()"), Realm::Dated);
        assert_eq!(of("// no Date here\nexport default () => 1"), Realm::Dated);
        assert_eq!(of("export default (a) => a.Dates + myDate"), Realm::Lean);
        assert_eq!(
            of("export default () => new Map([[Date.now(), 1]])"),
            Realm::Full
        );
        for full in [
            "export default () => new Map()",
            "export default () => [...new Set([1, 1])]",
            "export default () => new Uint8Array(4).length",
            "export default () => WeakMap",
            "export default () => globalThis[\"Ma\" + \"p\"]",
            "export default () => eval(\"1\")",
            "export default () => (() => 0).constructor(\"return 1\")()",
            "export default () => Function(\"return 1\")()",
            // A name in a comment or a string counts too.
            "// uses a Set\nexport default () => 1",
            "export default () => \"DataView\"",
            // An identifier spelt with an escape.
            "export default () => new \\u004Dap()",
        ] {
            assert_eq!(of(full), Realm::Full, "{full}");
        }
    }
}
