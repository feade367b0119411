//! One call on a worker's QuickJS runtime, and [`check`].
//!
//! A worker thread owns one [`Engine`], whose QuickJS runtime lives in a range of address
//! space of its own (heap.rs). On the worker's first call the runtime is made with one context
//! (a realm: globals, prototypes), the prelude's bytecode read in and the Rust functions the
//! prelude is given made; then the whole heap is saved (a few hundred KB). After every call
//! the saved heap is copied back over it ([`Engine::prepare`], once the call is answered), so
//! every call starts from the same bytes: nothing a script does (globals, prototypes, atoms,
//! a call stopped mid-way by its deadline or its heap) is seen by the next one, and neither a
//! fresh realm nor the collector's pass over the last one is paid per call (they were three
//! quarters of a trivial call's work). Nothing of a call is ever collected or finalised: its
//! garbage is overwritten. So no JavaScript object a call makes may own Rust data; the Rust
//! functions a call reaches are made with the image, capture nothing of a call (they read
//! the running call's clock, dice, deadline and host from a thread-local, `CURRENT`), and are
//! held from Rust ([`Pins`]), so no script can have them freed.
//!
//! A call: the prelude's `begin` (`prelude.js`, compiled to bytecode once per process and run
//! once, in the image) gives it its clock, its heap's longest array and, with a host, `tools`;
//! the dice are the call's through `CURRENT`; args and state cross as JSON text (the state
//! deep-frozen); the module is compiled and evaluated, its default export called, its promise
//! (if any) settled and the job queue run empty; the result is serialised by the engine's own
//! `JSON.stringify` and its size checked before it is copied out.
//!
//! **The context has the language only.** `Intrinsics` (realm.rs) lists what is added to QuickJS's base
//! objects (Object, Function, Array, String, Number, Boolean, Symbol, BigInt, Math, Reflect,
//! Iterator, the Error types, `globalThis`, `parseInt`… and `queueMicrotask`, a job, not a
//! timer): Date, RegExp (and its compiler), JSON, Proxy, Map/Set/WeakMap/WeakSet, typed arrays
//! (with ArrayBuffer, DataView, Atomics; `Atomics.wait` throws, the runtime cannot block) and
//! Promise. Left out: `performance` (a clock), WeakRef and FinalizationRegistry (they observe
//! the garbage collector, so the same call could give another result), DOMException, atob and
//! btoa (web APIs). No module loader is installed (any `import` fails), and there is no
//! `require`, no quickjs-libc (`std`, `os`, `print`, timers), no WebAssembly.
//!
//! **`eval` and `new Function` are available.** QuickJS compiles every source, the module
//! included, through the context's eval hook: without the `Eval` intrinsic the module itself
//! does not compile. (Bytecode compiled elsewhere can be read only as static data, through
//! rquickjs's `Bundle`, which is how the prelude is read; otherwise reading bytecode is `unsafe`
//! in rquickjs, and this file has no `unsafe` code.) What they compile runs in the same realm,
//! under the same deadline, heap and stack limits, and sees the same globals, so they reach
//! nothing beyond the language: there is no host object to reach.
//!
//! **Limits.** The heap limit is QuickJS's allocator limit (an allocation beyond it throws an
//! `InternalError: out of memory`, reported as `MEMORY_LIMIT`); the stack limit is QuickJS's
//! (deep recursion throws a catchable `RangeError`, reported as `CODE_ERROR` with a message
//! naming the limit); the deadline is checked by the interrupt handler QuickJS calls every
//! few thousand instructions and inside regular-expression matching, and once it has passed
//! the handler keeps answering "stop", so the error it raises (uncatchable) unwinds through
//! `catch` and `finally`. The job queue is run by this file, one job at a time, each bounded
//! the same way.
//!
//! QuickJS does not poll the interrupt handler inside its built-ins' C loops. Those whose loop
//! a script can make unbounded are guarded by the prelude: searches for a string (`indexOf`,
//! `includes`, `split`, `replace`…: n·m steps) run in bounded steps that check the deadline
//! when large, and the array methods that visit every index up to `length` (`join`, `sort`,
//! `splice`, `concat`…: `{length: 2 ** 53 - 1}` would never end) refuse more indices than the
//! heap could hold. What remains is bounded by the heap: one built-in call on huge data can
//! still run past the deadline before the interrupt is seen (measured on the 2-core machine: a
//! typed-array sort of a full 32 MB heap ~1 s, `toString` of the largest BigInt (2^20 bits)
//! ~7 s, `normalize` of a 2 M-character string ~0.2 s).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rquickjs::class::Class;
use rquickjs::function::{IntoJsFunc, Params, RustFunction};
use rquickjs::loader::{Bundle, Loader, bundle};
use rquickjs::module::WriteOptions;
use rquickjs::promise::PromiseState;
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Promise, Runtime, Type, Value};
use tokio::runtime::Handle;

use crate::dice::Dice;
use crate::heap::{Space, SpaceAlloc};
use crate::position::{self, MODULE_FILE};
use crate::realm::Intrinsics;
use crate::{Call, CodeError, Host, Limits, SyntaxError};

/// The prelude, the deterministic Date it installs when a script first uses `Date`, and its
/// paths for large work (string searches, `flat`) it loads when a script first needs them.
const PRELUDE: &str = include_str!("prelude.js");
const PRELUDE_DATE: &str = include_str!("prelude_date.js");
const PRELUDE_LARGE: &str = include_str!("prelude_large.js");
/// Their module names (never the script's file name, so their frames are never its place).
const PRELUDE_NAME: &str = "<sandbox>";
const PRELUDE_DATE_NAME: &str = "<sandbox-date>";
const PRELUDE_LARGE_NAME: &str = "<sandbox-large>";

/// JSON given to or taken from a script is nested at most this deep: the deepest serde_json
/// parses (its recursion limit of 128 refuses a 128th level), so every value that passes can
/// be stored and read back.
const MAX_JSON_DEPTH: usize = 127;

/// The heap `check` compiles in.
const CHECK_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// The errors QuickJS throws when an allocation fails or would pass one of its size limits
/// (a string of 2^30 characters, a 2 GiB buffer, a BigInt's size): all beyond any heap the
/// sandbox allows, so they are `MEMORY_LIMIT` (when the script does not catch them).
const OUT_OF_MEMORY: &[(&str, &str)] = &[
    ("InternalError", "out of memory"),
    ("InternalError", "out of memory in regexp execution"),
    ("InternalError", "string too long"),
    ("RangeError", "invalid string length"),
    ("RangeError", "invalid array buffer length"),
    ("RangeError", "BigInt is too large to allocate"),
];

/// The longest message taken from a script's error, in characters.
const MAX_MESSAGE_CHARS: usize = 2_000;

const MIN_MEMORY_BYTES: usize = 1024 * 1024;
const MIN_STACK_BYTES: usize = 32 * 1024;
/// Kept well under the worker threads' stack (`pool::THREAD_STACK_BYTES`).
pub(crate) const MAX_STACK_BYTES: usize = 8 * 1024 * 1024;

/// The prelude's modules, compiled to bytecode once per process (without source text and debug
/// information: a smaller load, and their functions print as native code) and read into each
/// context through rquickjs's `Bundle` loader, which takes static data: the bytes are leaked
/// once (a few KB). Reading bytecode is `unsafe` in rquickjs when called directly; the `Bundle`
/// loader does it, here only for bytes that `Module::write` made in this process. (Compiling
/// the prelude's source in every context was ~70% of a call.)
fn prelude_bundle() -> Result<Bundle, CodeError> {
    static BUNDLE: OnceLock<Result<Bundle, String>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let runtime = Runtime::new().map_err(|e| e.to_string())?;
            let context = Context::custom::<Intrinsics>(&runtime).map_err(|e| e.to_string())?;
            let compile = |name: &'static str, source: &str| {
                let bytecode = context.with(|ctx| {
                    Module::declare(ctx.clone(), name, source)
                        .and_then(|module| {
                            module.write(WriteOptions {
                                strip_source: true,
                                strip_debug: true,
                                ..WriteOptions::default()
                            })
                        })
                        .map_err(|e| format!("{name}: {}", describe(&ctx, e, None).message))
                })?;
                let bytecode: &'static [u8] = Box::leak(bytecode.into_boxed_slice());
                Ok::<_, String>((name, bytecode))
            };
            let modules: &'static [(&'static str, &'static [u8])] = Box::leak(Box::new([
                compile(PRELUDE_NAME, PRELUDE)?,
                compile(PRELUDE_DATE_NAME, PRELUDE_DATE)?,
                compile(PRELUDE_LARGE_NAME, PRELUDE_LARGE)?,
            ]));
            Ok(bundle::Bundle(modules))
        })
        .clone()
        .map_err(|e| CodeError::internal(format!("the sandbox's prelude does not compile: {e}")))
}

thread_local! {
    /// The call this worker thread is running: what the image's Rust functions act on (they
    /// are made once, with the image, so they capture nothing of a call).
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// A call's state, as the image's Rust functions see it.
struct Current {
    watch: Rc<Watch>,
    dice: Cell<Dice>,
    link: Option<HostLink>,
}

impl Current {
    /// Makes `current` the running call until the guard is dropped (a panic included, so that
    /// nothing of a call, its host link above all, outlives it).
    fn set(current: Current) -> CurrentGuard {
        CURRENT.with(|c| *c.borrow_mut() = Some(current));
        CurrentGuard
    }
}

struct CurrentGuard;

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.try_borrow_mut().map(|mut c| c.take()));
    }
}

/// The image's functions, held from Rust: the Rust functions (so that nothing a script does
/// can have them, and the Rust data they own, freed: a call's garbage is never collected, it is
/// overwritten) and the prelude's helpers, which a call uses.
struct Pins {
    /// The Rust functions the prelude was given: `Math.random`, the loaders of the Date and
    /// large-work modules, the deadline check, the host function.
    _natives: [Persistent<Function<'static>>; 5],
    /// The prelude's helpers: `begin(clock, longest, hosted)` starts a call.
    begin: Persistent<Function<'static>>,
    freeze: Persistent<Function<'static>>,
    output: Persistent<Function<'static>>,
    is_host_error: Persistent<Function<'static>>,
}

/// A worker's QuickJS runtime in its own [`Space`], with one context (every intrinsic of
/// [`Intrinsics`]), the prelude read in and the Rust functions made: saved once made, and put
/// back after every call.
struct Image {
    // Dropped in this order, after `drop` has put the saved heap back.
    pins: Pins,
    context: Context,
    runtime: Runtime,
    space: Rc<Space>,
}

impl Image {
    /// Made in a [`Space`] of `reserve` bytes of address space (or less, see `Space::new`).
    fn new(prelude: Bundle, reserve: usize) -> Result<Image, String> {
        let space = Space::new(reserve).ok_or_else(|| {
            "the system refused even 8 MiB of address space for it (is the process's address \
             space limited, `ulimit -v`? raise or remove that limit)"
                .to_owned()
        })?;
        let runtime =
            Runtime::new_with_alloc(SpaceAlloc(space.clone())).map_err(|e| e.to_string())?;
        let context = Context::custom::<Intrinsics>(&runtime).map_err(|e| e.to_string())?;
        let pins = context
            .with(|ctx| make_pins(&ctx, prelude))
            .map_err(|e| e.to_string())?;
        // The garbage of making it, out of the image.
        runtime.run_gc();
        space.save();
        tracing::debug!(
            bytes = space.image_bytes(),
            reserved = space.reserved(),
            "the sandbox saved a worker's QuickJS heap"
        );
        Ok(Image {
            pins,
            context,
            runtime,
            space,
        })
    }
}

/// The prelude read in and run, with the Rust functions it is given.
fn make_pins<'js>(ctx: &Ctx<'js>, prelude: Bundle) -> rquickjs::Result<Pins> {
    let pin = |f: Function<'js>| Persistent::save(ctx, f);
    let setup = load(ctx, prelude, PRELUDE_NAME)?;
    // The Date and large-work modules, read when a script first needs them, and the deadline
    // as the latter asks for it.
    let load_date = rust_function(ctx, move |ctx: Ctx<'js>| {
        load(&ctx, prelude, PRELUDE_DATE_NAME)
    })?;
    let load_large = rust_function(ctx, move |ctx: Ctx<'js>| {
        load(&ctx, prelude, PRELUDE_LARGE_NAME)
    })?;
    let expired = rust_function(ctx, || {
        CURRENT.with(|c| c.borrow().as_ref().is_none_or(|c| c.watch.stop()))
    })?;
    let host = rust_function(ctx, |name: String, args: Option<String>| {
        CURRENT.with(
            |c| match c.borrow().as_ref().and_then(|c| c.link.as_ref()) {
                Some(link) => link.call(name, args),
                None => vec![
                    "err".into(),
                    "INTERNAL".into(),
                    "this call has no host".into(),
                ],
            },
        )
    })?;
    let random = rust_function(ctx, || {
        CURRENT.with(|c| {
            c.borrow().as_ref().map_or(0.0, |c| {
                let mut dice = c.dice.get();
                let r = dice.random();
                c.dice.set(dice);
                r
            })
        })
    })
    .and_then(|f| f.with_name("random"))?;
    let helpers: Object = setup.call((
        random.clone(),
        load_date.clone(),
        load_large.clone(),
        expired.clone(),
        host.clone(),
    ))?;
    Ok(Pins {
        _natives: [random, load_date, load_large, expired, host].map(pin),
        begin: pin(helpers.get("begin")?),
        freeze: pin(helpers.get("freeze")?),
        output: pin(helpers.get("output")?),
        is_host_error: pin(helpers.get("isHostError")?),
    })
}

impl Drop for Image {
    fn drop(&mut self) {
        // What the runtime frees when dropped must be the heap as it was made, whatever the
        // last call left.
        self.space.restore();
    }
}

/// The worker's QuickJS heap (its [`Image`]), put back after each call.
#[derive(Default)]
pub(crate) struct Engine {
    image: Option<Image>,
    /// A call ran since the image was put back.
    dirty: bool,
    /// The address space asked for the image's [`Space`] (the system may have given less).
    asked: usize,
    /// Why the image could not be made, the last time it could not.
    failed: Option<String>,
}

/// The address space a heap is given for a call whose heap limit is `memory_bytes`: room for
/// blocks rounded up to their size class and lists of freed ones, several times over (blocks
/// over 128 KiB are mapped apart), and never less than 256 MiB.
fn reserve_for(memory_bytes: usize) -> usize {
    memory_bytes.saturating_mul(8).max(256 << 20)
}

/// What a finished call gives the pool.
pub(crate) struct Done {
    pub value: serde_json::Value,
    pub host_calls: u32,
    /// See [`crate::Outcome::script_cpu_us`].
    pub script_cpu_us: u64,
}

impl Engine {
    /// Runs one call. `cancel` is set when the caller stopped waiting; `handle` runs host calls.
    pub(crate) fn run(
        &mut self,
        call: &Call,
        handle: Option<Handle>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Done, CodeError> {
        let limits = clamp(call.limits);
        let watch = Rc::new(Watch {
            deadline: Instant::now().checked_add(Duration::from_millis(limits.timeout_ms)),
            cancel,
            trip: Cell::new(Trip::None),
        });
        let host_calls = Rc::new(Cell::new(0u32));
        let link = match (&call.host, handle) {
            (Some(host), Some(handle)) => Some(HostLink {
                host: host.clone(),
                handle,
                watch: watch.clone(),
                calls: host_calls.clone(),
            }),
            (Some(_), None) => {
                return Err(CodeError::internal(
                    "a host was given but `Sandbox::run` was not called on a tokio runtime",
                ));
            }
            (None, _) => None,
        };
        let reserve = reserve_for(limits.memory_bytes);
        if reserve > self.asked {
            // A heap limit larger than any before on this worker: a larger space.
            self.image = None;
            self.asked = reserve;
        }
        if self.image.is_none() || self.dirty {
            self.prepare();
        }
        let Some(image) = &self.image else {
            return Err(CodeError::internal(format!(
                "the sandbox could not make its QuickJS heap: {}",
                self.failed.as_deref().unwrap_or("unknown")
            )));
        };
        self.dirty = true;
        let runtime = &image.runtime;
        runtime.set_max_stack_size(limits.stack_bytes);
        runtime.set_memory_limit(limits.memory_bytes);
        image.space.limit(
            limits
                .memory_bytes
                .saturating_mul(2)
                .saturating_add(4 << 20),
        );
        let poll = watch.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || poll.stop())));
        let has_host = link.is_some();
        let _current = Current::set(Current {
            watch: watch.clone(),
            dice: Cell::new(Dice::new(call.seed)),
            link,
        });
        let script_cpu = Cell::new(0u64);
        let result = image.context.with(|ctx| {
            execute(
                &ctx,
                call,
                &limits,
                &watch,
                &image.pins,
                has_host,
                &script_cpu,
            )
        });
        drop(_current);
        runtime.set_interrupt_handler(None);
        let result = conclude(result, &watch, &limits, &call.source);
        result.map(|value| Done {
            value,
            host_calls: host_calls.get(),
            script_cpu_us: script_cpu.get(),
        })
    }

    /// Readies the next call, off the critical path (the pool calls it once a call has been
    /// answered, and `run` when nothing is ready): puts the saved heap back over whatever the
    /// last call left (one copy of a few hundred KB, where freeing the last realm and making a
    /// fresh one were three quarters of a call), or makes the image on a worker's first call.
    pub(crate) fn prepare(&mut self) {
        match &self.image {
            Some(image) => {
                if self.dirty {
                    image.space.restore();
                }
            }
            None => match prelude_bundle()
                .map_err(|e| e.to_string())
                .and_then(|prelude| Image::new(prelude, self.asked))
            {
                Ok(image) => self.image = Some(image),
                Err(e) => {
                    tracing::warn!(error = %e, "the sandbox could not make its QuickJS heap");
                    self.failed = Some(e);
                }
            },
        }
        self.dirty = false;
    }

    /// After a panic: the runtime may be mid-call, and freeing it could trip QuickJS's own
    /// assertions (an abort), so it is leaked instead, its space included.
    pub(crate) fn poison(&mut self) {
        if let Some(image) = self.image.take() {
            std::mem::forget(image);
        }
    }
}

/// Compiles `source` as the sandbox would, without running any of it.
pub fn check(source: &str) -> Result<(), SyntaxError> {
    let unchecked = |what: String| SyntaxError {
        message: format!("the code could not be checked: {what}"),
        line: 1,
        column: 1,
    };
    let runtime = Runtime::new().map_err(|e| unchecked(format!("QuickJS did not start ({e})")))?;
    runtime.set_max_stack_size(Limits::DEFAULT.stack_bytes);
    let context = Context::custom::<Intrinsics>(&runtime)
        .map_err(|e| unchecked(format!("QuickJS did not make a context ({e})")))?;
    runtime.set_memory_limit(CHECK_MEMORY_BYTES);
    context.with(
        |ctx| match Module::declare(ctx.clone(), MODULE_FILE, source) {
            Ok(_) => Ok(()),
            Err(e) => {
                let caught = describe(&ctx, e, None);
                Err(match caught.kind {
                    Kind::OutOfMemory => unchecked(format!(
                        "compiling it needs more than {} MiB",
                        CHECK_MEMORY_BYTES / (1024 * 1024)
                    )),
                    _ => syntax(caught, source),
                })
            }
        },
    )
}

fn clamp(limits: Limits) -> Limits {
    Limits {
        timeout_ms: limits.timeout_ms,
        memory_bytes: limits.memory_bytes.max(MIN_MEMORY_BYTES),
        stack_bytes: limits.stack_bytes.clamp(MIN_STACK_BYTES, MAX_STACK_BYTES),
        max_output_bytes: limits.max_output_bytes,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    None,
    Deadline,
    Cancelled,
}

/// The call's deadline and cancel flag, polled by QuickJS's interrupt handler, the job loop
/// and host calls. Once tripped it stays tripped.
struct Watch {
    deadline: Option<Instant>,
    cancel: Arc<AtomicBool>,
    trip: Cell<Trip>,
}

impl Watch {
    fn stop(&self) -> bool {
        if self.trip.get() != Trip::None {
            return true;
        }
        if self.cancel.load(Ordering::Relaxed) {
            self.trip.set(Trip::Cancelled);
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.trip.set(Trip::Deadline);
            return true;
        }
        false
    }

    fn remaining(&self) -> Duration {
        match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        }
    }
}

/// Why a call stopped inside the context (mapped to a [`CodeError`] by [`conclude`], which
/// knows whether the watch tripped).
enum Fail {
    /// The prelude or the context's setup failed (out of memory, or a bug).
    Setup(Caught),
    Input(String),
    Compile(Caught),
    Thrown(Caught),
    NoDefault(&'static str),
    NeverSettled,
    /// The watch tripped (the deadline passed or the caller went away).
    Stopped,
    Output(Caught),
    OutputInvalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Plain,
    OutOfMemory,
    StackOverflow,
    Host { code: String },
}

/// A thrown value, read into Rust.
struct Caught {
    message: String,
    line: Option<u32>,
    column: Option<u32>,
    kind: Kind,
}

fn conclude(
    result: Result<serde_json::Value, Fail>,
    watch: &Watch,
    limits: &Limits,
    source: &str,
) -> Result<serde_json::Value, CodeError> {
    match watch.trip.get() {
        Trip::Deadline => {
            return Err(CodeError::Timeout {
                ms: limits.timeout_ms,
            });
        }
        Trip::Cancelled => return Err(CodeError::internal("the call was cancelled")),
        Trip::None => {}
    }
    let fail = match result {
        Ok(value) => return Ok(value),
        Err(fail) => fail,
    };
    let memory = CodeError::MemoryLimit {
        bytes: limits.memory_bytes,
    };
    Err(match fail {
        Fail::Setup(c) | Fail::Compile(c) | Fail::Thrown(c) | Fail::Output(c)
            if c.kind == Kind::OutOfMemory =>
        {
            memory
        }
        Fail::Setup(c) => CodeError::internal(format!("the sandbox's setup failed: {}", c.message)),
        Fail::Input(message) => CodeError::Thrown {
            message,
            line: None,
            column: None,
        },
        Fail::Compile(c) => CodeError::Syntax(syntax(c, source)),
        Fail::Thrown(c) => match c.kind {
            Kind::Host { code } => CodeError::Host {
                code,
                message: c.message,
            },
            Kind::StackOverflow => CodeError::Thrown {
                message: format!(
                    "{}: the script's stack is limited to {} KiB (`limits.stack_bytes`); make \
                     the recursion shallower or iterative",
                    c.message,
                    limits.stack_bytes / 1024
                ),
                line: c.line,
                column: c.column,
            },
            _ => CodeError::Thrown {
                message: match refused_import(&c.message) {
                    Some(refusal) => format!("ReferenceError: {refusal}"),
                    None => c.message,
                },
                line: c.line,
                column: c.column,
            },
        },
        Fail::NoDefault(found) => CodeError::Thrown {
            message: format!(
                "the module's default export is {found}, not a function; write \
                 `export default function (args, state) {{ … }}`"
            ),
            line: None,
            column: None,
        },
        Fail::NeverSettled => CodeError::Thrown {
            message: "the function's promise never settled: nothing was left to run and it \
                      was still pending (an `await` on a promise nothing resolves?)"
                .into(),
            line: None,
            column: None,
        },
        // Tripped without the watch knowing: cannot happen, but not a panic.
        Fail::Stopped => CodeError::internal("the call was stopped"),
        Fail::Output(c) => CodeError::OutputInvalid {
            reason: format!("serialising it as JSON failed: {}", c.message),
        },
        Fail::OutputInvalid(reason) => CodeError::OutputInvalid { reason },
    })
}

/// A compile error. QuickJS-ng resolves a static `import` while compiling and, with no module
/// loader, fails without a position: the specifier's place in the source stands in.
fn syntax(c: Caught, source: &str) -> SyntaxError {
    let place = match (c.line, c.column) {
        (Some(line), Some(column)) => Some((line, column)),
        _ => specifier(&c.message).and_then(|name| quoted_in(source, name)),
    };
    let message = match (
        c.message.strip_prefix("SyntaxError: "),
        refused_import(&c.message),
    ) {
        (_, Some(refusal)) => refusal,
        (Some(message), None) => message.to_owned(),
        (None, None) => c.message,
    };
    let (line, column) = place.unwrap_or((1, 1));
    SyntaxError {
        message,
        line,
        column,
    }
}

const NO_MODULE: &str = "could not load module '";

const NO_MODULES: &str = "the sandbox has no modules, so `import` is not available; use the \
                          language's built-ins only";

/// QuickJS's refusal of an import (there is no module loader), said as what it means here.
fn refused_import(message: &str) -> Option<String> {
    specifier(message).map(|name| format!("cannot import '{name}': {NO_MODULES}"))
}

fn specifier(message: &str) -> Option<&str> {
    let start = message.find(NO_MODULE)? + NO_MODULE.len();
    let rest = &message[start..];
    Some(&rest[..rest.find('\'')?])
}

/// Line and column (1-based, in characters) of `'name'` or `"name"` in `source`.
fn quoted_in(source: &str, name: &str) -> Option<(u32, u32)> {
    let at = [format!("'{name}'"), format!("\"{name}\"")]
        .iter()
        .filter_map(|quoted| source.find(quoted.as_str()))
        .min()?;
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    Some((u32::try_from(line).ok()?, u32::try_from(column).ok()?))
}

/// Everything between the put-back context and the result's JSON.
fn execute<'js>(
    ctx: &Ctx<'js>,
    call: &Call,
    limits: &Limits,
    watch: &Rc<Watch>,
    pins: &Pins,
    has_host: bool,
    script_cpu: &Cell<u64>,
) -> Result<serde_json::Value, Fail> {
    let setup_failed = |e| Fail::Setup(describe(ctx, e, None));
    let pinned = |p: &Persistent<Function<'static>>| p.clone().restore(ctx).map_err(setup_failed);
    pinned(&pins.begin)?
        .call::<_, ()>((
            call.now_ms as f64,
            longest_array(limits.memory_bytes),
            has_host,
        ))
        .map_err(setup_failed)?;
    let freeze = pinned(&pins.freeze)?;
    let output = pinned(&pins.output)?;
    let is_host_error = pinned(&pins.is_host_error)?;
    let thrown = |e| Fail::Thrown(describe(ctx, e, Some(&is_host_error)));

    let args = to_js(ctx, &call.args, "args")?;
    let state = to_js(ctx, &call.state, "state")?;
    let state: Value = freeze.call((state,)).map_err(setup_failed)?;

    let module = Module::declare(ctx.clone(), MODULE_FILE, call.source.as_bytes())
        .map_err(|e| Fail::Compile(describe(ctx, e, None)))?;
    let (module, evaluated) = module.eval().map_err(thrown)?;
    settle(ctx, evaluated, watch, &thrown)?;
    let default: Value = module.get("default").map_err(thrown)?;
    let Some(function) = default.as_function() else {
        return Err(Fail::NoDefault(type_name(&default)));
    };
    // The script's own run: its function, the promise it returned, the jobs it queued.
    let began = thread_cpu_ns();
    let result: Value = function.call((args, state)).map_err(thrown)?;
    let result = match result.clone().into_promise() {
        Some(promise) => settle(ctx, promise, watch, &thrown)?,
        None => result,
    };
    // What the call queued and did not wait for runs now, as a host's microtask checkpoint
    // would: the call is over when the queue is empty.
    while ctx.execute_pending_job() {
        if watch.stop() {
            return Err(Fail::Stopped);
        }
    }
    if watch.stop() {
        return Err(Fail::Stopped);
    }
    script_cpu.set(thread_cpu_ns().saturating_sub(began) / 1_000);

    let max = limits.max_output_bytes;
    let text: Value = output
        .call((result.clone(), max as f64))
        .map_err(|e| Fail::Output(describe(ctx, e, None)))?;
    if let Some(length) = text.as_number() {
        return Err(Fail::OutputInvalid(too_large(length as u64, max)));
    }
    let Some(text) = text.as_string() else {
        return Err(Fail::OutputInvalid(format!(
            "the function returned {}, which is not JSON; return an object, array, string, \
             number, boolean or null",
            type_name(&result)
        )));
    };
    let text = text
        .to_string()
        .map_err(|_| Fail::Output(out_of_memory()))?;
    if text.len() > max {
        return Err(Fail::OutputInvalid(too_large(text.len() as u64, max)));
    }
    serde_json::from_str(&text).map_err(|_| {
        Fail::OutputInvalid(format!(
            "it is nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
        ))
    })
}

/// This thread's CPU time (user and system), in ns; 0 where the clock cannot be read.
fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
    })
}

fn too_large(size: u64, max: usize) -> String {
    format!(
        "its JSON is {size} bytes or more, larger than the {max} bytes \
         `limits.max_output_bytes` allows; return less (or raise the limit)"
    )
}

/// A Rust function in the image's context, with that context's `Function.prototype`. Not
/// `Function::new`: rquickjs caches the prototype of its Rust functions per runtime, in Rust
/// (a JavaScript value held outside the heap), and no such value may be taken during a call,
/// whose heap is overwritten afterwards.
fn rust_function<'js, P, F>(ctx: &Ctx<'js>, f: F) -> rquickjs::Result<Function<'js>>
where
    F: IntoJsFunc<'js, P> + 'js,
{
    let length = F::param_requirements().min();
    let call = move |params: Params<'_, 'js>| {
        params.check_params(F::param_requirements())?;
        f.call(params)
    };
    let class = Class::instance_proto(
        RustFunction(Box::new(call)),
        Function::prototype(ctx.clone()),
    )?;
    let function = class
        .into_inner()
        .into_value()
        .into_function()
        .ok_or_else(|| rquickjs::Error::new_from_js("object", "function"))?;
    function.with_length(length)
}

/// Reads one of the prelude's modules from `bundle` and runs its body (which only defines its
/// default export, so it settles at once), giving that export.
fn load<'js>(ctx: &Ctx<'js>, mut bundle: Bundle, name: &str) -> rquickjs::Result<Function<'js>> {
    let (module, evaluated) = bundle.load(ctx, name, None)?.eval()?;
    if evaluated.state() != PromiseState::Resolved {
        return Err(rquickjs::Error::new_loading_message(
            name,
            "it did not evaluate",
        ));
    }
    module.get("default")
}

fn out_of_memory() -> Caught {
    Caught {
        message: "out of memory".into(),
        line: None,
        column: None,
        kind: Kind::OutOfMemory,
    }
}

/// Runs the job queue until `promise` settles.
fn settle<'js>(
    ctx: &Ctx<'js>,
    promise: Promise<'js>,
    watch: &Watch,
    thrown: &dyn Fn(rquickjs::Error) -> Fail,
) -> Result<Value<'js>, Fail> {
    loop {
        match promise.state() {
            PromiseState::Resolved => {
                return match promise.result::<Value>() {
                    Some(Ok(value)) => Ok(value),
                    Some(Err(e)) => Err(thrown(e)),
                    None => Ok(Value::new_undefined(ctx.clone())),
                };
            }
            PromiseState::Rejected => {
                return Err(match promise.result::<Value>() {
                    Some(Err(e)) => thrown(e),
                    _ => Fail::NeverSettled,
                });
            }
            PromiseState::Pending => {
                if watch.stop() {
                    return Err(Fail::Stopped);
                }
                if !ctx.execute_pending_job() {
                    return Err(Fail::NeverSettled);
                }
            }
        }
    }
}

/// `value` as a JS value: through JSON text and QuickJS's own parser (no script code runs).
fn to_js<'js>(ctx: &Ctx<'js>, value: &serde_json::Value, what: &str) -> Result<Value<'js>, Fail> {
    if depth(value) > MAX_JSON_DEPTH {
        return Err(Fail::Input(format!(
            "`{what}` is nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects; the \
             sandbox takes JSON up to that depth"
        )));
    }
    let text = serde_json::to_string(value)
        .map_err(|_| Fail::Input(format!("`{what}` could not be written as JSON")))?;
    ctx.json_parse(text)
        .map_err(|e| Fail::Setup(describe(ctx, e, None)))
}

/// How deeply arrays and objects nest in `value` (a scalar is 0), without recursion.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level);
        for child in children {
            if child.is_array() || child.is_object() {
                stack.push((child, level + 1));
            }
        }
    }
    deepest
}

/// The most elements an array can have in a heap of `memory_bytes` (a value is 16 bytes), at
/// least 2^20: the prelude refuses the array methods QuickJS cannot interrupt beyond it.
fn longest_array(memory_bytes: usize) -> f64 {
    (memory_bytes / 16).max(1 << 20) as f64
}

fn type_name(value: &Value<'_>) -> &'static str {
    match value.type_of() {
        Type::Uninitialized | Type::Undefined => "undefined",
        Type::Null => "null",
        Type::Bool => "a boolean",
        Type::Int | Type::Float => "a number",
        Type::String => "a string",
        Type::Symbol => "a symbol",
        Type::BigInt => "a BigInt",
        Type::Function | Type::Constructor => "a function",
        Type::Promise => "a promise",
        Type::Array => "an array",
        _ => "an object",
    }
}

/// Reads the pending exception of a failed call into Rust. Reading `name`, `message`, `stack`
/// may run the script's getters or Proxy traps: the watch still bounds them, and whatever
/// they throw is dropped. Strings are taken as they are, never converted by calling
/// `toString`.
fn describe<'js>(
    ctx: &Ctx<'js>,
    error: rquickjs::Error,
    is_host_error: Option<&Function<'js>>,
) -> Caught {
    let value = match error {
        rquickjs::Error::Exception => ctx.catch(),
        rquickjs::Error::Allocation => return out_of_memory(),
        other => {
            return Caught {
                message: other.to_string(),
                line: None,
                column: None,
                kind: Kind::Plain,
            };
        }
    };
    let plain = |message: String| Caught {
        message: bounded(message),
        line: None,
        column: None,
        kind: Kind::Plain,
    };
    let Some(object) = value.as_object() else {
        return match value.type_of() {
            Type::String => plain(string_of(&value).unwrap_or_default()),
            Type::Int => plain(format!("the script threw {}", value.as_int().unwrap_or(0))),
            Type::Float => plain(format!(
                "the script threw {}",
                value.as_float().unwrap_or(0.0)
            )),
            Type::Bool => plain(format!(
                "the script threw {}",
                value.as_bool().unwrap_or(false)
            )),
            // What QuickJS throws when it cannot even make its "out of memory" error (the heap is
            // full to the byte): by far the likelier cause of an uncaught `null`.
            Type::Null => out_of_memory(),
            // No exception at all: a built-in failed without making one (QuickJS does this when
            // an operation is too large for it, e.g. `normalize` of millions of characters).
            Type::Uninitialized => plain(
                "a built-in failed without an error (an operation too large for the engine?)"
                    .into(),
            ),
            other => plain(format!("the script threw {}", type_name_of(other))),
        };
    };
    let name = string_property(ctx, object, "name");
    let message = string_property(ctx, object, "message");
    let stack = string_property(ctx, object, "stack");
    let (line, column) = match stack.as_deref().and_then(position::in_script) {
        Some((line, column)) => (Some(line), Some(column)),
        None => (None, None),
    };
    let is_error = object.is_error();
    let host = match is_host_error.map(|f| f.call::<_, bool>((value.clone(),))) {
        Some(Ok(host)) => host,
        Some(Err(_)) => {
            ctx.catch();
            false
        }
        None => false,
    };
    let kind = if host {
        Kind::Host {
            code: string_property(ctx, object, "code").unwrap_or_default(),
        }
    } else if is_error
        && OUT_OF_MEMORY
            .iter()
            .any(|&(n, m)| name.as_deref() == Some(n) && message.as_deref() == Some(m))
    {
        Kind::OutOfMemory
    } else if is_error
        && name.as_deref() == Some("InternalError")
        && message.as_deref().is_none_or(str::is_empty)
    {
        // The error was made but its message could not be.
        Kind::OutOfMemory
    } else if is_error
        && name.as_deref() == Some("RangeError")
        && message.as_deref() == Some("Maximum call stack size exceeded")
    {
        Kind::StackOverflow
    } else {
        Kind::Plain
    };
    let text = match (&kind, name, message) {
        (Kind::Host { .. }, _, Some(message)) => message,
        (_, Some(name), Some(message)) if !name.is_empty() && !message.is_empty() => {
            format!("{name}: {message}")
        }
        (_, Some(name), Some(_)) if !name.is_empty() => name,
        (_, _, Some(message)) if !message.is_empty() => message,
        (_, Some(name), None) if !name.is_empty() => name,
        _ if is_error => "the script threw an Error without a message".into(),
        _ => "the script threw an object that is not an Error".into(),
    };
    Caught {
        message: bounded(text),
        line,
        column,
        kind,
    }
}

fn type_name_of(t: Type) -> &'static str {
    match t {
        Type::Symbol => "a symbol",
        Type::BigInt => "a BigInt",
        Type::Undefined => "undefined",
        _ => "a value",
    }
}

/// `object[key]` when it is a string; whatever a getter throws is dropped.
fn string_property<'js>(ctx: &Ctx<'js>, object: &Object<'js>, key: &str) -> Option<String> {
    match object.get::<_, Value>(key) {
        Ok(value) => string_of(&value),
        Err(_) => {
            ctx.catch();
            None
        }
    }
}

fn string_of(value: &Value<'_>) -> Option<String> {
    value.as_string().and_then(|s| s.to_string().ok())
}

fn bounded(mut text: String) -> String {
    if let Some((end, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The script's way to the host: `tools.call` calls this (through the prelude), which waits on
/// the sandbox thread for the host's future, run on the caller's tokio runtime, at most until
/// the call's deadline. Args and results cross as JSON text only.
struct HostLink {
    host: Arc<dyn Host>,
    handle: Handle,
    watch: Rc<Watch>,
    calls: Rc<Cell<u32>>,
}

/// How often a waiting host call looks at the cancel flag.
const HOST_POLL: Duration = Duration::from_millis(20);

impl HostLink {
    /// `["ok", json]` or `["err", code, message]`.
    fn call(&self, name: String, args: Option<String>) -> Vec<String> {
        let refuse = |code: &str, message: &str| vec!["err".into(), code.into(), message.into()];
        self.calls.set(self.calls.get().saturating_add(1));
        let args = match args {
            None => serde_json::Value::Null,
            Some(text) => match serde_json::from_str(&text) {
                Ok(args) => args,
                Err(_) => {
                    return refuse(
                        "INVALID_ARGS",
                        &format!(
                            "the tool's args are nested deeper than {MAX_JSON_DEPTH} levels of \
                             arrays and objects"
                        ),
                    );
                }
            },
        };
        if self.watch.stop() {
            return refuse("TIMEOUT", "the script's time ran out before the tool call");
        }
        let (tx, rx) = sync_channel(1);
        let future = self.host.call(name, args);
        let task = self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        loop {
            match rx.recv_timeout(self.watch.remaining().min(HOST_POLL)) {
                Ok(Ok(value)) => {
                    return match serde_json::to_string(&value) {
                        Ok(text) => vec!["ok".into(), text],
                        Err(_) => {
                            refuse("INTERNAL", "the tool's answer could not be written as JSON")
                        }
                    };
                }
                Ok(Err(e)) => return vec!["err".into(), e.code, e.message],
                Err(RecvTimeoutError::Timeout) => {
                    if self.watch.stop() {
                        task.abort();
                        return refuse("TIMEOUT", "the script's time ran out during the tool call");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return refuse("INTERNAL", "the tool call ended without an answer");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&serde_json::json!(1)), 0);
        assert_eq!(depth(&serde_json::json!([])), 1);
        assert_eq!(depth(&serde_json::json!({"a": [1, {"b": []}]})), 4);
    }
}
