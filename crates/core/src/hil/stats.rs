//! The KPIs of humans in the loop ([`stats`]): automation and escalation rates, time to the
//! first human response and resolution time, in total and per workflow, from the store's
//! [`StatsRow`]s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::base::ConvStatus;

/// A conversation's figures for [`stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    pub workflow: String,
    pub status: ConvStatus,
    pub handovers: u32,
    pub created_at: i64,
    pub handed_over_at: Option<i64>,
    pub first_human_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub ended_at: Option<i64>,
}

/// Median and mean of durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub count: u64,
    pub median_ms: Option<i64>,
    pub mean_ms: Option<i64>,
}

impl Durations {
    fn of(mut v: Vec<i64>) -> Durations {
        if v.is_empty() {
            return Durations::default();
        }
        v.sort_unstable();
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        };
        let sum: i128 = v.iter().map(|x| i128::from(*x)).sum();
        Durations {
            count: n as u64,
            median_ms: Some(median),
            mean_ms: i64::try_from(sum / n as i128).ok(),
        }
    }
}

/// The seeds' KPIs over a set of conversations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HilKpis {
    pub conversations: u64,
    /// Never handed over.
    pub automated: u64,
    /// Handed over at least once.
    pub escalated: u64,
    /// automated / conversations (0 when there are none).
    pub automation_rate: f64,
    /// escalated / conversations.
    pub escalation_rate: f64,
    /// From the first handover to the first human message.
    pub time_to_first_human_response: Durations,
    /// From creation to resolution by a human, or to the AI's finish.
    pub resolution_time: Durations,
    /// Conversations by status now.
    pub by_status: BTreeMap<String, u64>,
}

/// KPIs for the whole tenant and per workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HilStats {
    pub total: HilKpis,
    pub workflows: BTreeMap<String, HilKpis>,
}

fn kpis<'a>(rows: impl Iterator<Item = &'a StatsRow>) -> HilKpis {
    let mut k = HilKpis::default();
    let (mut first, mut resolution) = (Vec::new(), Vec::new());
    for r in rows {
        k.conversations += 1;
        if r.handovers == 0 {
            k.automated += 1;
        } else {
            k.escalated += 1;
        }
        if let (Some(h), Some(f)) = (r.handed_over_at, r.first_human_at) {
            first.push((f - h).max(0));
        }
        if let Some(e) = r.resolved_at.or(r.ended_at) {
            resolution.push((e - r.created_at).max(0));
        }
        *k.by_status
            .entry(r.status.as_str().to_string())
            .or_default() += 1;
    }
    if k.conversations > 0 {
        k.automation_rate = k.automated as f64 / k.conversations as f64;
        k.escalation_rate = k.escalated as f64 / k.conversations as f64;
    }
    k.time_to_first_human_response = Durations::of(first);
    k.resolution_time = Durations::of(resolution);
    k
}

/// The KPIs of `rows`, in total and per workflow.
pub fn stats(rows: &[StatsRow]) -> HilStats {
    let mut workflows = BTreeMap::new();
    let mut names: Vec<&str> = rows.iter().map(|r| r.workflow.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for n in names {
        workflows.insert(n.to_string(), kpis(rows.iter().filter(|r| r.workflow == n)));
    }
    HilStats {
        total: kpis(rows.iter()),
        workflows,
    }
}
