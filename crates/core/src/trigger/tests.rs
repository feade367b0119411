//! Tests of the schedule arithmetic: cron parsing, ticks in a range, what is due under each
//! catch-up rule, RFC 3339 in the zone, and Europe/Madrid's two daylight-saving days.

use super::*;

fn ms(s: &str) -> i64 {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.timestamp_millis(),
        Err(e) => panic!("{s}: {e}"),
    }
}

fn madrid(cron: &str) -> Schedule {
    Schedule::parse(cron, "Europe/Madrid").unwrap()
}

fn shown(s: &Schedule, ticks: &[i64]) -> Vec<String> {
    ticks.iter().map(|t| s.rfc3339_in_zone(*t)).collect()
}

/// 2026's changes in Madrid: the last Sundays of March and October, at 01:00 UTC. Each day as
/// (the second before it, its last second).
const SPRING_DAY: (&str, &str) = ("2026-03-28T23:59:59+01:00", "2026-03-29T23:59:59+02:00");
const FALL_DAY: (&str, &str) = ("2026-10-24T23:59:59+02:00", "2026-10-25T23:59:59+01:00");

fn day(s: &Schedule, (from, to): (&str, &str)) -> Vec<String> {
    shown(s, &s.ticks_between(ms(from), ms(to), 1_000))
}

#[test]
fn five_or_six_fields_only() {
    assert!(Schedule::parse("0 9 * * MON-FRI", "UTC").is_ok());
    assert!(Schedule::parse("*/10 * * * * *", "UTC").is_ok());
    for bad in [
        "0 9 * *",
        "0 0 9 * * * 2030",
        "@daily",
        "61 * * * *",
        "0 9 * * XYZ",
        "",
    ] {
        let e = Schedule::parse(bad, "UTC").unwrap_err();
        assert_eq!(e.code(), Code::InvalidCron, "{bad}: {e}");
        assert!(
            e.to_string().contains("five fields") && e.to_string().contains("six with seconds"),
            "{e}"
        );
    }
    let e = Schedule::parse("0 0 30 2 *", "UTC").unwrap_err();
    assert_eq!(
        e,
        ScheduleError::NeverFires {
            cron: "0 0 30 2 *".into()
        }
    );
    assert_eq!(e.code(), Code::InvalidCron);
}

#[test]
fn time_zones_are_iana_names() {
    assert_eq!(madrid("0 9 * * *").timezone(), "Europe/Madrid");
    assert!(Schedule::parse("0 9 * * *", "UTC").is_ok());
    let e = Schedule::parse("0 9 * * *", "europe/madrid").unwrap_err();
    assert_eq!(e.code(), Code::InvalidTimezone);
    assert!(
        e.to_string().contains("did you mean `Europe/Madrid`?"),
        "{e}"
    );
    let e = Schedule::parse("0 9 * * *", "Europe/Madird").unwrap_err();
    assert!(
        e.to_string().contains("did you mean `Europe/Madrid`?"),
        "{e}"
    );
    let e = Schedule::parse("0 9 * * *", "+01:00").unwrap_err();
    assert!(e.to_string().contains("such as `Europe/Madrid`"), "{e}");
}

#[test]
fn next_after_is_strictly_after() {
    let s = Schedule::parse("0 9 * * MON-FRI", "Europe/Madrid").unwrap();
    // Friday 2026-11-27 at 09:00 in Madrid (UTC+1).
    let friday = ms("2026-11-27T09:00:00+01:00");
    assert_eq!(s.next_after(friday - 1), Some(friday));
    let monday = ms("2026-11-30T09:00:00+01:00");
    assert_eq!(s.next_after(friday), Some(monday));
    assert_eq!(s.next_after(friday + 500), Some(monday));
    assert_eq!(s.latest_at_or_before(friday), Some(friday));
    assert_eq!(s.latest_at_or_before(friday + 999), Some(friday));
    assert_eq!(
        s.latest_at_or_before(friday - 1),
        Some(ms("2026-11-26T09:00:00+01:00"))
    );
    assert_eq!(s.rfc3339_in_zone(friday), "2026-11-27T09:00:00+01:00");
    assert_eq!(
        s.rfc3339_in_zone(ms("2026-07-01T09:00:00+02:00")),
        "2026-07-01T09:00:00+02:00"
    );
    let utc = Schedule::parse("0 9 * * *", "UTC").unwrap();
    assert_eq!(utc.rfc3339_in_zone(friday), "2026-11-27T08:00:00+00:00");
}

#[test]
fn ticks_between_bounds_and_limits() {
    let s = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
    let t0 = ms("2026-01-01T00:00:00Z");
    assert_eq!(
        s.ticks_between(t0, t0 + 30_000, 100),
        vec![t0 + 10_000, t0 + 20_000, t0 + 30_000]
    );
    assert_eq!(
        s.ticks_between(t0 - 1, t0 + 30_000, 2),
        vec![t0, t0 + 10_000]
    );
    assert_eq!(
        s.latest_ticks_between(t0 - 1, t0 + 30_000, 2),
        vec![t0 + 20_000, t0 + 30_000]
    );
    assert_eq!(
        s.latest_ticks_between(t0, t0 + 30_999, 100),
        vec![t0 + 10_000, t0 + 20_000, t0 + 30_000]
    );
    assert!(s.ticks_between(t0, t0 + 9_999, 100).is_empty());
    assert!(s.ticks_between(t0, t0 + 30_000, 0).is_empty());
}

#[test]
fn due_fires_on_time_ticks_and_applies_catch_up_to_missed_ones() {
    let s = Schedule::parse("* * * * * *", "UTC").unwrap();
    let t0 = ms("2026-01-01T00:00:00Z");
    // Running: every tick since the last fired one is on time, even several at once.
    assert_eq!(
        s.due(t0, t0 + 2_300, CatchUp::None, 100),
        vec![t0 + 1_000, t0 + 2_000]
    );
    assert!(s.due(t0, t0 + 999, CatchUp::All, 100).is_empty());
    assert!(s.due(t0, t0, CatchUp::All, 100).is_empty());
    assert!(s.due(t0, t0 - 5_000, CatchUp::All, 100).is_empty());
    // After ten seconds with no process: ticks older than ON_TIME_MS were missed.
    let now = t0 + 10_000;
    let on_time: Vec<i64> = (5..=10).map(|i| t0 + i * 1_000).collect();
    assert_eq!(s.due(t0, now, CatchUp::None, 100), on_time);
    let mut last = vec![t0 + 4_000];
    last.extend(&on_time);
    assert_eq!(s.due(t0, now, CatchUp::Last, 100), last);
    let all: Vec<i64> = (1..=10).map(|i| t0 + i * 1_000).collect();
    assert_eq!(s.due(t0, now, CatchUp::All, 100), all);
    // `all` keeps the most recent `max_catch_up` missed ticks.
    let mut capped = vec![t0 + 3_000, t0 + 4_000];
    capped.extend(&on_time);
    assert_eq!(s.due(t0, now, CatchUp::All, 2), capped);
    assert_eq!(s.due(t0, now, CatchUp::All, 0), on_time);
    // A window of its own.
    assert_eq!(
        s.due_within(t0, now, CatchUp::None, 100, 0),
        vec![t0 + 10_000]
    );
}

#[test]
fn due_after_a_long_stop_of_a_daily_schedule() {
    let s = Schedule::parse("0 9 * * *", "Europe/Madrid").unwrap();
    // Last fired Monday; back on Thursday at 15:00: Tuesday's, Wednesday's and Thursday's
    // ticks were missed.
    let since = ms("2026-11-23T09:00:00+01:00");
    let now = ms("2026-11-26T15:00:00+01:00");
    assert!(s.due(since, now, CatchUp::None, 100).is_empty());
    assert_eq!(
        shown(&s, &s.due(since, now, CatchUp::Last, 100)),
        ["2026-11-26T09:00:00+01:00"]
    );
    assert_eq!(
        shown(&s, &s.due(since, now, CatchUp::All, 100)),
        [
            "2026-11-24T09:00:00+01:00",
            "2026-11-25T09:00:00+01:00",
            "2026-11-26T09:00:00+01:00"
        ]
    );
    // A trigger activated at 09:00:00 exactly does not fire that tick; the next day's is
    // on time when seen within the window.
    let activated = ms("2026-11-26T09:00:00+01:00");
    let next = ms("2026-11-27T09:00:00+01:00");
    assert!(s.due(activated, next - 1, CatchUp::All, 100).is_empty());
    assert_eq!(s.due(activated, next + 200, CatchUp::None, 100), vec![next]);
    // A year's stop of a per-second schedule under `all` does not walk the year.
    let every = Schedule::parse("* * * * * *", "UTC").unwrap();
    let t0 = ms("2026-01-01T00:00:00Z");
    let year = 366 * 24 * 3_600_000;
    assert_eq!(every.due(t0, t0 + year, CatchUp::All, 100).len(), 100 + 6);
    assert_eq!(every.due(t0, t0 + year, CatchUp::Last, 100).len(), 1 + 6);
}

#[test]
fn daily_job_in_the_skipped_and_the_repeated_hour() {
    let s = madrid("30 2 * * *");
    // Spring: 02:30 does not exist on 29 March; the tick moves to 03:00, the first instant
    // after the gap, that same day, once.
    assert_eq!(
        day(&s, SPRING_DAY),
        ["2026-03-29T03:00:00+02:00"],
        "spring-forward day"
    );
    // Fall: 02:30 happens twice on 25 October; the job fires once, at the first (UTC+2).
    assert_eq!(
        day(&s, FALL_DAY),
        ["2026-10-25T02:30:00+02:00"],
        "fall-back day"
    );
    // The days around are ordinary.
    assert_eq!(
        shown(
            &s,
            &s.ticks_between(
                ms("2026-03-27T00:00:00+01:00"),
                ms("2026-03-31T00:00:00+02:00"),
                10
            )
        ),
        [
            "2026-03-27T02:30:00+01:00",
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00"
        ]
    );
    // Six fields, seconds first: the same.
    let s6 = madrid("0 30 2 * * *");
    assert_eq!(day(&s6, SPRING_DAY), ["2026-03-29T03:00:00+02:00"]);
    assert_eq!(day(&s6, FALL_DAY), ["2026-10-25T02:30:00+02:00"]);
    // Searching back gives the same ticks as searching forward.
    let (from, to) = (
        ms("2026-03-27T00:00:00+01:00"),
        ms("2026-10-27T00:00:00+01:00"),
    );
    assert_eq!(
        s.latest_ticks_between(from, to, 1_000),
        s.ticks_between(from, to, 1_000)
    );
}

#[test]
fn hourly_job_across_both_changes() {
    let s = madrid("0 * * * *");
    let spring = day(&s, SPRING_DAY);
    // 23 ticks on a 23-hour day: 02:00 does not exist, 03:00 is not doubled.
    assert_eq!(spring.len(), 23, "{spring:?}");
    assert_eq!(
        &spring[..4],
        [
            "2026-03-29T00:00:00+01:00",
            "2026-03-29T01:00:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T04:00:00+02:00"
        ]
    );
    let fall = day(&s, FALL_DAY);
    // 25 ticks on a 25-hour day: 02:00 fires on both passes, an hour apart.
    assert_eq!(fall.len(), 25, "{fall:?}");
    assert_eq!(
        &fall[1..5],
        [
            "2026-10-25T01:00:00+02:00",
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T03:00:00+01:00"
        ]
    );
    for (from, to) in [SPRING_DAY, FALL_DAY] {
        let ticks = s.ticks_between(ms(from), ms(to), 1_000);
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == 3_600_000));
        assert_eq!(s.latest_ticks_between(ms(from), ms(to), 1_000), ticks);
    }
}

/// Every second from `from` to `to`, exactly once, in real time.
fn assert_every_second(ticks: &[i64], from: i64, to: i64) {
    let want: Vec<i64> = (from / 1_000 + 1..=to / 1_000).map(|s| s * 1_000).collect();
    assert_eq!(ticks.len(), want.len());
    assert!(ticks == want, "a second is missing or doubled");
}

#[test]
fn a_seconds_job_neither_skips_nor_doubles_across_the_changes() {
    let s = madrid("* * * * * *");
    for change in ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"] {
        let (from, to) = (ms(change) - 3_600_000, ms(change) + 3_600_000);
        let ticks = s.ticks_between(from, to, 10_000);
        assert_every_second(&ticks, from, to);
        assert_eq!(s.latest_ticks_between(from, to, 10_000), ticks);
        // A runtime that looks every 700 ms and fires what is due, remembering the last tick
        // fired, fires each second once.
        let mut fired = Vec::new();
        let mut since = from;
        let mut now = from;
        while now < to {
            now = (now + 700).min(to);
            let due = s.due(since, now, CatchUp::None, 100);
            if let Some(last) = due.last() {
                since = *last;
            }
            fired.extend(due);
        }
        assert_every_second(&fired, from, to);
    }
    // Around the spring change in local time: 01:59:59 at UTC+1 is followed by 03:00:00 at
    // UTC+2, one second later.
    let at = ms("2026-03-29T01:59:58+01:00");
    assert_eq!(
        shown(&s, &s.ticks_between(at, at + 2_000, 10)),
        ["2026-03-29T01:59:59+01:00", "2026-03-29T03:00:00+02:00"]
    );
    let at = ms("2026-10-25T02:59:58+02:00");
    assert_eq!(
        shown(&s, &s.ticks_between(at, at + 2_000, 10)),
        ["2026-10-25T02:59:59+02:00", "2026-10-25T02:00:00+01:00"]
    );
}

#[test]
fn a_stop_across_a_change_catches_up_by_real_time() {
    // Stopped from 00:30 to 05:00 on the fall-back day: five hours of wall clock 02:xx twice.
    let s = madrid("0 * * * *");
    let since = ms("2026-10-25T00:00:00+02:00");
    let now = ms("2026-10-25T05:00:00+01:00");
    assert_eq!(
        shown(&s, &s.due(since, now, CatchUp::All, 100)),
        [
            "2026-10-25T01:00:00+02:00",
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T04:00:00+01:00",
            "2026-10-25T05:00:00+01:00"
        ]
    );
    assert_eq!(
        shown(&s, &s.due(since, now, CatchUp::Last, 100)),
        ["2026-10-25T04:00:00+01:00", "2026-10-25T05:00:00+01:00"]
    );
    assert_eq!(
        shown(&s, &s.due(since, now, CatchUp::None, 100)),
        ["2026-10-25T05:00:00+01:00"]
    );
}

/// The syntax docs/workflow-format.md describes.
#[test]
fn the_documented_syntax() {
    let from = ms("2026-11-01T00:00:00Z");
    let first = |cron: &str, n: usize| {
        let s = Schedule::parse(cron, "UTC").unwrap();
        shown(&s, &s.ticks_between(from, from + 40 * 86_400_000, n))
    };
    let sundays = ["2026-11-01T09:00:00+00:00", "2026-11-08T09:00:00+00:00"];
    assert_eq!(first("0 9 * * 0", 2), sundays);
    assert_eq!(first("0 9 * * 7", 2), sundays);
    assert_eq!(first("0 9 * * SUN", 2), sundays);
    // Both day fields restricted: either matches (the 1st, a Sunday, and the Mondays).
    assert_eq!(
        first("0 9 1 * MON", 3),
        [
            "2026-11-01T09:00:00+00:00",
            "2026-11-02T09:00:00+00:00",
            "2026-11-09T09:00:00+00:00"
        ]
    );
    assert_eq!(first("0 9 L * *", 1), ["2026-11-30T09:00:00+00:00"]);
    assert_eq!(first("0 9 * * 5L", 1), ["2026-11-27T09:00:00+00:00"]);
    // The 15th is a Sunday: the nearest weekday is Monday the 16th.
    assert_eq!(first("0 9 15W * *", 1), ["2026-11-16T09:00:00+00:00"]);
    assert_eq!(first("0 9 * * 1#2", 1), ["2026-11-09T09:00:00+00:00"]);
    assert_eq!(
        first("5-59/10 * * * *", 2),
        ["2026-11-01T00:05:00+00:00", "2026-11-01T00:15:00+00:00"]
    );
    assert!(Schedule::parse("5/10 * * * *", "UTC").is_err());
}
