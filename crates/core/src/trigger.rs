//! Schedule arithmetic: the ticks of a `schedule` trigger's cron expression in its time zone,
//! and which of them are due at a given instant under its `catch_up` rule.
//!
//! Pure: no clock is read and nothing is stored. Every instant is Unix milliseconds, passed
//! in by the caller (the runtime's clock, or a test's), so ticks and DST days can be tested
//! without waiting. Ticks fall on whole seconds.
//!
//! Cron expressions have five fields (minute, hour, day of month, month, day of week) or six
//! with seconds first; they are parsed and searched by the `croner` crate, in the trigger's
//! IANA zone (`chrono-tz`). Across daylight-saving changes, croner's documented rules apply
//! (tests below pin them for `Europe/Madrid`):
//! - **Clocks go forward** (02:00 becomes 03:00): a job whose second, minute and hour fields
//!   are all fixed values (`30 2 * * *`) and whose time falls in the skipped hour fires once at
//!   the first instant after the gap, 03:00 local time, that day. A job with a wildcard or a
//!   step in any of those fields (`0 * * * *`, `* * * * * *`) has no tick in the skipped hour:
//!   it goes on at its next tick of the new wall clock, so no tick is doubled.
//! - **Clocks go back** (03:00 becomes 02:00 again): a fixed-time job in the repeated hour fires
//!   once, at the first pass (02:30 at UTC+2); a wildcard or step job fires on both passes
//!   (`0 * * * *` fires at 02:00 UTC+2 and 02:00 UTC+1, an hour apart), so ticks stay evenly
//!   spaced in real time and none is lost.
//!
//! Ticks are strictly increasing in real time whatever the wall clock does.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::diagnostic::{Code, did_you_mean};
use crate::model::{CatchUp, Trigger, TriggerKind};

/// How late a tick may be seen and still count as on time (not missed) in [`Schedule::due`]:
/// five seconds. A process that runs the schedule sees each tick well within it; a tick older
/// than that passed while no process ran, and `catch_up` decides.
pub const ON_TIME_MS: i64 = 5_000;

/// The default of `[triggers] max_catch_up`: most missed ticks `catch_up: all` fires at once.
pub const DEFAULT_MAX_CATCH_UP: usize = 100;

/// Most ticks [`Schedule::due`] returns as on time, whatever the window it is given.
const MAX_ON_TIME: usize = 1_000;

/// A cron expression or a time zone that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron expression {cron:?} is not valid: {reason}; write five fields (minute hour day-of-month month day-of-week), or six with seconds first, such as \"0 9 * * MON-FRI\" or \"*/10 * * * * *\""
    )]
    Cron { cron: String, reason: String },
    #[error(
        "cron expression {cron:?} never fires: no date matches it (such as the 30th of February)"
    )]
    NeverFires { cron: String },
    #[error("time zone {name:?} is not an IANA time zone name{hint}")]
    Timezone { name: String, hint: String },
}

impl ScheduleError {
    /// The diagnostic code validation reports it with.
    pub fn code(&self) -> Code {
        match self {
            ScheduleError::Cron { .. } | ScheduleError::NeverFires { .. } => Code::InvalidCron,
            ScheduleError::Timezone { .. } => Code::InvalidTimezone,
        }
    }
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
    tz: Tz,
}

/// The IANA zone named `name` (exactly as the tz database spells it).
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let suggestion = names()
        .find(|n| n.eq_ignore_ascii_case(name))
        .or_else(|| did_you_mean(name, names()));
    let hint = match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => " such as `Europe/Madrid`, `America/New_York` or `UTC`".to_string(),
    };
    Err(ScheduleError::Timezone {
        name: name.to_string(),
        hint,
    })
}

fn to_zoned(ms: i64, tz: Tz) -> Option<DateTime<Tz>> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&tz))
}

/// `ms` rounded down to a whole second.
fn floor_second(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

impl Schedule {
    /// Parses `cron` (five fields, or six with seconds first) in the IANA zone `timezone`.
    /// A cron expression that no date matches is refused too.
    pub fn parse(cron: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_timezone(timezone)?;
        let bad = |reason: String| ScheduleError::Cron {
            cron: cron.to_string(),
            reason,
        };
        let fields = cron.split_whitespace().count();
        if cron.contains('@') {
            return Err(bad("nicknames such as @daily are not taken".into()));
        }
        if fields != 5 && fields != 6 {
            return Err(bad(format!("it has {fields} fields")));
        }
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| bad(e.to_string()))?;
        let schedule = Schedule {
            cron: parsed,
            text: cron.to_string(),
            tz,
        };
        // A fixed instant, not the clock: whether any date matches does not depend on when
        // the question is asked (croner searches up to the year 5000).
        const Y2000_MS: i64 = 946_684_800_000;
        if schedule.next_after(Y2000_MS).is_none() {
            return Err(ScheduleError::NeverFires {
                cron: cron.to_string(),
            });
        }
        Ok(schedule)
    }

    /// The schedule of a `schedule` trigger; `None` for a webhook.
    pub fn of(trigger: &Trigger) -> Option<Result<Schedule, ScheduleError>> {
        match &trigger.kind {
            TriggerKind::Schedule { cron, timezone, .. } => Some(Schedule::parse(cron, timezone)),
            TriggerKind::Webhook { .. } => None,
        }
    }

    /// The cron expression as written.
    pub fn cron(&self) -> &str {
        &self.text
    }

    /// The IANA name of the zone.
    pub fn timezone(&self) -> &'static str {
        self.tz.name()
    }

    /// The first tick strictly after `t_ms`.
    pub fn next_after(&self, t_ms: i64) -> Option<i64> {
        // From the whole second at or before `t_ms`, exclusive: the next tick is a later whole
        // second, hence after `t_ms`.
        let from = to_zoned(floor_second(t_ms), self.tz)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The last tick at or before `t_ms`.
    pub fn latest_at_or_before(&self, t_ms: i64) -> Option<i64> {
        let from = to_zoned(floor_second(t_ms), self.tz)?;
        let prev = self.cron.find_previous_occurrence(&from, true).ok()?;
        Some(prev.timestamp_millis())
    }

    /// The ticks `t` with `from_ms_exclusive < t <= to_ms_inclusive`, oldest first, at most
    /// `limit` of them (the oldest ones).
    pub fn ticks_between(
        &self,
        from_ms_exclusive: i64,
        to_ms_inclusive: i64,
        limit: usize,
    ) -> Vec<i64> {
        let mut out = Vec::new();
        let mut at = from_ms_exclusive;
        while out.len() < limit {
            match self.next_after(at) {
                Some(t) if t <= to_ms_inclusive => {
                    out.push(t);
                    at = t;
                }
                _ => break,
            }
        }
        out
    }

    /// The ticks `t` with `from_ms_exclusive < t <= to_ms_inclusive`, at most `limit` of them:
    /// the most recent ones, oldest first.
    pub fn latest_ticks_between(
        &self,
        from_ms_exclusive: i64,
        to_ms_inclusive: i64,
        limit: usize,
    ) -> Vec<i64> {
        let mut out = Vec::new();
        let mut at = self.latest_at_or_before(to_ms_inclusive);
        while out.len() < limit {
            match at {
                Some(t) if t > from_ms_exclusive => {
                    out.push(t);
                    // The tick before `t`: at or before the second before it.
                    at = self.latest_at_or_before(t - 1);
                }
                _ => break,
            }
        }
        out.reverse();
        out
    }

    /// The ticks to fire at `now_ms`, oldest first, for a schedule whose last fired tick is
    /// `since_ms` (or, when it never fired, the instant it was activated: a tick at or before
    /// `since_ms` never fires). The on-time window is [`ON_TIME_MS`]; see
    /// [`Schedule::due_within`].
    pub fn due(
        &self,
        since_ms: i64,
        now_ms: i64,
        catch_up: CatchUp,
        max_catch_up: usize,
    ) -> Vec<i64> {
        self.due_within(since_ms, now_ms, catch_up, max_catch_up, ON_TIME_MS)
    }

    /// [`Schedule::due`] with an on-time window of `on_time_ms`.
    ///
    /// The ticks after `since_ms` and at or before `now_ms` fall in two parts:
    /// - **on time**: `now_ms - on_time_ms <= t`. These always fire: a process that runs the
    ///   schedule sees every tick within the window, so no tick is lost to a late wake-up;
    /// - **missed**: older ones, which passed while no process ran the schedule. Under
    ///   `catch_up: none` none of them fires; under `last` the most recent one fires; under
    ///   `all` each fires, the `max_catch_up` most recent ones only.
    ///
    /// Nothing is due when `now_ms` is not after `since_ms`.
    pub fn due_within(
        &self,
        since_ms: i64,
        now_ms: i64,
        catch_up: CatchUp,
        max_catch_up: usize,
        on_time_ms: i64,
    ) -> Vec<i64> {
        if now_ms <= since_ms {
            return Vec::new();
        }
        // The last millisecond of the missed part.
        let missed_until = now_ms.saturating_sub(on_time_ms.max(0)).saturating_sub(1);
        let mut out = match catch_up {
            CatchUp::None => Vec::new(),
            CatchUp::Last => self.latest_ticks_between(since_ms, missed_until, 1),
            CatchUp::All => self.latest_ticks_between(since_ms, missed_until, max_catch_up),
        };
        out.extend(self.ticks_between(since_ms.max(missed_until), now_ms, MAX_ON_TIME));
        out
    }

    /// `tick_ms` as RFC 3339 with the offset the zone had then, such as
    /// `2026-11-26T09:00:00+01:00` (`+00:00` in UTC; milliseconds only when not zero). An
    /// instant outside chrono's range (±262,000 years), which no tick is, is written as its
    /// Unix milliseconds.
    pub fn rfc3339_in_zone(&self, tick_ms: i64) -> String {
        match to_zoned(tick_ms, self.tz) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, false),
            None => tick_ms.to_string(),
        }
    }
}

#[cfg(test)]
#[path = "trigger/tests.rs"]
mod tests;
