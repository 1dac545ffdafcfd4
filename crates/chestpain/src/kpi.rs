//! The chest-pain KPIs: intervals between milestones, their thresholds, the statistics over
//! a set of cases, and the monthly report.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::case::{Case, Milestone};

/// A key performance indicator: the interval between two milestones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kpi {
    /// First ECG → diagnosis (首份心电图至确诊). The first ECG is `ecg_acquired` (the cart's
    /// time), else `ecg_received` when the device time is missing.
    EcgToDiagnosis,
    /// `alert_raised` → `alert_acknowledged`.
    AlertToAck,
    /// `first_medical_contact` → first ECG (FMC-to-ECG, 首次医疗接触至首份心电图).
    FmcToEcg,
    /// `door_in` → `door_out` at the sending hospital (DIDO, 入门-出门).
    DoorInDoorOut,
}

impl Kpi {
    /// All KPIs, in report order.
    pub const ALL: [Kpi; 4] = [
        Kpi::EcgToDiagnosis,
        Kpi::AlertToAck,
        Kpi::FmcToEcg,
        Kpi::DoorInDoorOut,
    ];

    /// As written in the API and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Kpi::EcgToDiagnosis => "ecg_to_diagnosis",
            Kpi::AlertToAck => "alert_to_ack",
            Kpi::FmcToEcg => "fmc_to_ecg",
            Kpi::DoorInDoorOut => "door_in_door_out",
        }
    }

    /// Its Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            Kpi::EcgToDiagnosis => "首份心电图至心电图诊断时间",
            Kpi::AlertToAck => "预警发出至确认时间",
            Kpi::FmcToEcg => "首次医疗接触至首份心电图时间",
            Kpi::DoorInDoorOut => "入门-出门时间(DIDO)",
        }
    }

    /// The interval of a case: `None` when a stamp is missing, `Err(Negative)` when the end
    /// lies before the start (e.g. a cart clock behind), which counts as inconsistent.
    pub fn duration(self, c: &Case) -> Option<Result<Duration, Negative>> {
        let (start, end) = match self {
            Kpi::EcgToDiagnosis => (c.first_ecg(), c.at(Milestone::Diagnosis)),
            Kpi::AlertToAck => (
                c.at(Milestone::AlertRaised),
                c.at(Milestone::AlertAcknowledged),
            ),
            Kpi::FmcToEcg => (c.at(Milestone::FirstMedicalContact), c.first_ecg()),
            Kpi::DoorInDoorOut => (c.at(Milestone::DoorIn), c.at(Milestone::DoorOut)),
        };
        let d = end?.signed_duration_since(start?);
        Some(if d < Duration::zero() {
            Err(Negative(d))
        } else {
            Ok(d)
        })
    }
}

/// A negative interval (the end stamped before the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negative(pub Duration);

/// The KPI thresholds in minutes (config table `[chest_pain]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// First ECG → diagnosis (default 10).
    #[serde(default = "ten")]
    pub ecg_to_diagnosis_min: u32,
    /// Alert raised → acknowledged (default 10).
    #[serde(default = "ten")]
    pub alert_to_ack_min: u32,
    /// First medical contact → first ECG (default 10).
    #[serde(default = "ten")]
    pub fmc_to_ecg_min: u32,
    /// Door-in → door-out (default 30).
    #[serde(default = "thirty")]
    pub door_in_door_out_min: u32,
}

fn ten() -> u32 {
    10
}

fn thirty() -> u32 {
    30
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            ecg_to_diagnosis_min: ten(),
            alert_to_ack_min: ten(),
            fmc_to_ecg_min: ten(),
            door_in_door_out_min: thirty(),
        }
    }
}

/// A threshold that is not a positive number of minutes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("[chest_pain] {0} must be more than 0 minutes")]
pub struct ThresholdError(pub &'static str);

impl Thresholds {
    /// Every threshold > 0, or the first that is not (by its config name).
    pub fn validate(&self) -> Result<(), ThresholdError> {
        for k in Kpi::ALL {
            if self.minutes(k) == 0 {
                return Err(ThresholdError(Thresholds::field(k)));
            }
        }
        Ok(())
    }

    /// The config field of a KPI's threshold.
    pub fn field(k: Kpi) -> &'static str {
        match k {
            Kpi::EcgToDiagnosis => "ecg_to_diagnosis_min",
            Kpi::AlertToAck => "alert_to_ack_min",
            Kpi::FmcToEcg => "fmc_to_ecg_min",
            Kpi::DoorInDoorOut => "door_in_door_out_min",
        }
    }

    /// A KPI's threshold in minutes.
    pub fn minutes(&self, k: Kpi) -> u32 {
        match k {
            Kpi::EcgToDiagnosis => self.ecg_to_diagnosis_min,
            Kpi::AlertToAck => self.alert_to_ack_min,
            Kpi::FmcToEcg => self.fmc_to_ecg_min,
            Kpi::DoorInDoorOut => self.door_in_door_out_min,
        }
    }

    /// A KPI's threshold as a duration.
    pub fn limit(&self, k: Kpi) -> Duration {
        Duration::minutes(i64::from(self.minutes(k)))
    }
}

/// Statistics of one KPI over a set of cases. Seconds as `f64` (sub-second stamps kept).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Cases with a valid (non-negative) interval.
    pub n: usize,
    /// Cases missing a stamp for it.
    pub missing: usize,
    /// Cases with a negative interval (not in the statistics).
    pub inconsistent: usize,
    /// Arithmetic mean; `None` when `n` = 0.
    pub mean_s: Option<f64>,
    /// Median: the middle value, or the mean of the two middle values for even `n`.
    pub median_s: Option<f64>,
    /// 90th percentile, nearest rank: the ⌈0.9·n⌉-th smallest value.
    pub p90_s: Option<f64>,
    /// Intervals ≤ the threshold (exactly at the threshold counts as within).
    pub within: usize,
    /// `within / n`; `None` when `n` = 0.
    pub within_share: Option<f64>,
}

fn secs(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

impl Stats {
    /// The statistics of the outcomes of [`Kpi::duration`], against `threshold`.
    pub fn of(
        outcomes: impl IntoIterator<Item = Option<Result<Duration, Negative>>>,
        threshold: Duration,
    ) -> Stats {
        let (mut missing, mut inconsistent) = (0, 0);
        let mut v: Vec<Duration> = Vec::new();
        for o in outcomes {
            match o {
                None => missing += 1,
                Some(Err(_)) => inconsistent += 1,
                Some(Ok(d)) => v.push(d),
            }
        }
        v.sort();
        let n = v.len();
        let within = v.iter().filter(|&&d| d <= threshold).count();
        let (mean_s, median_s, p90_s, within_share) = if n == 0 {
            (None, None, None, None)
        } else {
            let total: f64 = v.iter().map(|&d| secs(d)).sum();
            let median = if n % 2 == 1 {
                secs(v[n / 2])
            } else {
                (secs(v[n / 2 - 1]) + secs(v[n / 2])) / 2.0
            };
            // ⌈0.9·n⌉ in integers: ⌈9n/10⌉ = (9n + 9) / 10; ≥ 1 for n ≥ 1.
            let rank = (9 * n).div_ceil(10);
            (
                Some(total / n as f64),
                Some(median),
                Some(secs(v[rank - 1])),
                Some(within as f64 / n as f64),
            )
        };
        Stats {
            n,
            missing,
            inconsistent,
            mean_s,
            median_s,
            p90_s,
            within,
            within_share,
        }
    }
}

/// Under which responder key cases without an acknowledging principal are counted.
pub const NO_RESPONDER: &str = "(none)";

/// One KPI's statistics over a period: overall, per sending institution, per responder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiStats {
    /// All the period's cases.
    pub overall: Stats,
    /// Per sending institution.
    pub by_institution: BTreeMap<String, Stats>,
    /// Per acknowledging principal ([`NO_RESPONDER`] for cases without one).
    pub by_responder: BTreeMap<String, Stats>,
}

/// The KPIs of the cases of one period (a month, or the whole range).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Period {
    /// How many cases.
    pub cases: usize,
    /// Per KPI.
    pub kpis: BTreeMap<Kpi, KpiStats>,
}

/// The KPI report over a time range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiReport {
    /// Start of the range (inclusive), by index time.
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// The zone months are cut in (e.g. `Asia/Shanghai`).
    pub time_zone: String,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// The whole range.
    pub total: Period,
    /// Per month of the index time in the zone, `YYYY-MM`.
    pub months: BTreeMap<String, Period>,
}

fn period(cases: &[&Case], t: &Thresholds) -> Period {
    let kpis = Kpi::ALL
        .into_iter()
        .map(|k| {
            let limit = t.limit(k);
            let overall = Stats::of(cases.iter().map(|c| k.duration(c)), limit);
            let mut inst: BTreeMap<String, Vec<&Case>> = BTreeMap::new();
            let mut resp: BTreeMap<String, Vec<&Case>> = BTreeMap::new();
            for &c in cases {
                inst.entry(c.institution.clone()).or_default().push(c);
                resp.entry(c.responder().unwrap_or(NO_RESPONDER).to_string())
                    .or_default()
                    .push(c);
            }
            let group = |m: BTreeMap<String, Vec<&Case>>| {
                m.into_iter()
                    .map(|(key, cs)| (key, Stats::of(cs.iter().map(|c| k.duration(c)), limit)))
                    .collect()
            };
            (
                k,
                KpiStats {
                    overall,
                    by_institution: group(inst),
                    by_responder: group(resp),
                },
            )
        })
        .collect();
    Period {
        cases: cases.len(),
        kpis,
    }
}

/// The KPI report of the cases whose index time ([`Case::index_time`]: the earliest of first
/// medical contact, first ECG and opening) lies in `[from, to)`, per month of the index time
/// in `tz` and for the whole range.
pub fn report(
    cases: &[Case],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: Tz,
    t: &Thresholds,
) -> KpiReport {
    let chosen: Vec<&Case> = cases
        .iter()
        .filter(|c| {
            let i = c.index_time();
            from <= i && i < to
        })
        .collect();
    let mut by_month: BTreeMap<String, Vec<&Case>> = BTreeMap::new();
    for &c in &chosen {
        let month = c
            .index_time()
            .with_timezone(&tz)
            .format("%Y-%m")
            .to_string();
        by_month.entry(month).or_default().push(c);
    }
    KpiReport {
        from,
        to,
        time_zone: tz.name().to_string(),
        thresholds: t.clone(),
        total: period(&chosen, t),
        months: by_month
            .into_iter()
            .map(|(m, cs)| (m, period(&cs, t)))
            .collect(),
    }
}
