//! Flow control for tools: a token-bucket rate limiter per tool and tenant (`governor`, driven
//! by tokio's clock so tests can pause time) and a circuit breaker per tool.
//!
//! Circuit breaker: `closed` counts consecutive failures; at the threshold it turns `open` and
//! refuses calls for `open_ms`; then it is `half_open` and lets exactly one trial call through:
//! success closes it, failure opens it again.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use hilo_core::tool::{CircuitSettings, RateLimit};
use tokio::time::Instant;

/// A tool call's timeout when neither the node nor the tool sets one (the SQL tools' default
/// statement timeout too).
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;

/// governor's clock on tokio's time: paused in tests, the monotonic clock otherwise.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }
}

type Keyed = RateLimiter<String, HashMapStateStore<String>, TokioClock, NoOpMiddleware<Duration>>;

/// One tool's token bucket, kept per tenant.
pub struct Limiter {
    limiter: Keyed,
    clock: TokioClock,
    max_wait: Duration,
}

/// Why a call may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WouldWait(pub Duration);

impl Limiter {
    /// `None` when the limit is degenerate (0 calls or 0 ms): no limiter then.
    pub fn new(limit: &RateLimit) -> Option<Limiter> {
        let calls = NonZeroU32::new(limit.calls)?;
        if limit.per_ms == 0 {
            return None;
        }
        let period = Duration::from_millis(limit.per_ms) / calls.get();
        let burst = limit.burst.and_then(NonZeroU32::new).unwrap_or(calls);
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(burst);
        let clock = TokioClock::default();
        Some(Limiter {
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            clock,
            max_wait: Duration::from_millis(limit.max_wait_ms),
        })
    }

    /// Takes a token for `tenant`, waiting up to the bound; `Err` with the wait it would
    /// have needed when that is longer.
    pub async fn acquire(&self, tenant: &str) -> Result<(), WouldWait> {
        let key = tenant.to_string();
        loop {
            match self.limiter.check_key(&key) {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    if wait > self.max_wait {
                        return Err(WouldWait(wait));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// A breaker's state, as reported in metrics and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (the `hilo_tool_circuit_state` gauge).
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
struct BreakerInner {
    state: CircuitState,
    failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

/// A circuit breaker for one tool.
#[derive(Debug)]
pub struct Breaker {
    settings: CircuitSettings,
    inner: Mutex<BreakerInner>,
}

/// The breaker refused the call: it is open for this much longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub Duration);

impl Breaker {
    pub fn new(settings: CircuitSettings) -> Breaker {
        Breaker {
            settings,
            inner: Mutex::new(BreakerInner {
                state: CircuitState::Closed,
                failures: 0,
                opened_at: None,
                trial_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> CircuitState {
        let mut g = self.lock();
        self.refresh(&mut g);
        g.state
    }

    fn refresh(&self, g: &mut BreakerInner) {
        if g.state == CircuitState::Open
            && let Some(at) = g.opened_at
            && at.elapsed() >= Duration::from_millis(self.settings.open_ms)
        {
            g.state = CircuitState::HalfOpen;
            g.trial_in_flight = false;
        }
    }

    /// May a call go through now? In half-open, only one trial at a time.
    pub fn admit(&self) -> Result<(), Refused> {
        if self.settings.failures == 0 {
            return Ok(());
        }
        let mut g = self.lock();
        self.refresh(&mut g);
        match g.state {
            CircuitState::Closed => Ok(()),
            CircuitState::HalfOpen if !g.trial_in_flight => {
                g.trial_in_flight = true;
                Ok(())
            }
            CircuitState::HalfOpen => Err(Refused(Duration::ZERO)),
            CircuitState::Open => {
                let open = Duration::from_millis(self.settings.open_ms);
                let left = g
                    .opened_at
                    .map_or(open, |at| open.saturating_sub(at.elapsed()));
                Err(Refused(left))
            }
        }
    }

    /// Records how an admitted call ended; returns the new state when it changed.
    pub fn record(&self, success: bool) -> Option<CircuitState> {
        if self.settings.failures == 0 {
            return None;
        }
        let mut g = self.lock();
        let before = g.state;
        if success {
            g.failures = 0;
            g.state = CircuitState::Closed;
            g.opened_at = None;
        } else {
            g.failures = g.failures.saturating_add(1);
            if g.state == CircuitState::HalfOpen || g.failures >= self.settings.failures {
                g.state = CircuitState::Open;
                g.opened_at = Some(Instant::now());
            }
        }
        g.trial_in_flight = false;
        (g.state != before).then_some(g.state)
    }
}
