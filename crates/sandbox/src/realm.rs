//! The intrinsics a context is made with (see engine.rs's notes, "The context has the
//! language only").

use rquickjs::context::intrinsic;

/// What the context is given beyond QuickJS's base objects.
pub(crate) type Intrinsics = (
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::Promise,
    intrinsic::Date,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
);
