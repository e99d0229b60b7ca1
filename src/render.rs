//! Output: tables and summaries for people, JSON for scripts.
//!
//! The JSON shapes are a published interface (documented in the README):
//! they are built from view structs here, not from the library's types, so
//! an internal change cannot change them by accident. A `null` limit means
//! no limit (the kernel's `max`) or not set.

mod gpus;

use std::fmt::Write as _;

use serde::Serialize;

use cortex_limits::cgroup::{CpuStat, Detail, Isolation, Live, MemoryEvents, Pressure, Stall};
use cortex_limits::doctor::Check;
use cortex_limits::manager::{Listed, Status};
use cortex_limits::plan::Limits;
use cortex_limits::preset::Preset;
use cortex_limits::store::{AppliedPid, Profile};
use cortex_limits::units::{Bytes, Limit};

pub use gpus::{gpus_json, gpus_table, reserved_line};

/// Limits as JSON.
#[derive(Serialize)]
pub struct LimitsJson {
    cpu_percent: Option<f64>,
    cpu_weight: u16,
    cpus: Option<String>,
    memory_max: Option<u64>,
    memory_high: Option<u64>,
    oom_score_adj: i16,
    gpus: Option<u32>,
    gpu_share_percent: u8,
    mems: Option<String>,
    gpu_binding: &'static str,
}

impl From<&Limits> for LimitsJson {
    fn from(l: &Limits) -> Self {
        LimitsJson {
            cpu_percent: l.cpu.value().map(|q| q.percent()),
            cpu_weight: l.cpu_weight.get(),
            cpus: l.cpus.as_ref().map(|c| c.to_string()),
            memory_max: l.memory_max.value().map(|b| b.0),
            memory_high: l.memory_high.value().map(|b| b.0),
            oom_score_adj: l.oom_score_adj.get(),
            gpus: l.gpus,
            gpu_share_percent: l.gpu_share.percent(),
            mems: l.mems.as_ref().map(|m| m.to_string()),
            gpu_binding: l.gpu_binding.name(),
        }
    }
}

#[derive(Serialize)]
struct PresetJson {
    name: &'static str,
    description: &'static str,
    limits: LimitsJson,
}

#[derive(Serialize)]
struct ListedJson<'a> {
    name: &'a str,
    preset: &'static str,
    limits: LimitsJson,
    cgroup_exists: bool,
}

#[derive(Serialize)]
struct MemoryJson {
    current: Option<u64>,
    peak: Option<u64>,
    max: Option<u64>,
    high: Option<u64>,
    swap_current: Option<u64>,
    swap_max: Option<u64>,
}

#[derive(Serialize)]
struct StallJson {
    avg10: f64,
    avg60: f64,
    avg300: f64,
    total_usec: u64,
}

#[derive(Serialize)]
struct PressureJson {
    some: StallJson,
    full: Option<StallJson>,
}

#[derive(Serialize)]
struct PressuresJson {
    cpu: Option<PressureJson>,
    memory: Option<PressureJson>,
    io: Option<PressureJson>,
}

fn stall(s: Stall) -> StallJson {
    StallJson {
        avg10: s.avg10,
        avg60: s.avg60,
        avg300: s.avg300,
        total_usec: s.total_usec,
    }
}

fn pressure(p: Option<Pressure>) -> Option<PressureJson> {
    p.map(|p| PressureJson {
        some: stall(p.some),
        full: p.full.map(stall),
    })
}

#[derive(Serialize)]
struct CpuJson {
    usage_usec: u64,
    user_usec: u64,
    system_usec: u64,
    nr_periods: u64,
    nr_throttled: u64,
    throttled_usec: u64,
}

#[derive(Serialize)]
struct EventsJson {
    low: u64,
    high: u64,
    max: u64,
    oom: u64,
    oom_kill: u64,
}

#[derive(Serialize)]
struct CgroupJson {
    path: Option<String>,
    exists: bool,
    enforced: bool,
    unavailable: Option<String>,
    drift: Vec<&'static str>,
    pids: Vec<u32>,
    memory: Option<MemoryJson>,
    cpu: Option<CpuJson>,
    memory_events: Option<EventsJson>,
    pressure: Option<PressuresJson>,
}

#[derive(Serialize)]
struct AppliedJson {
    pid: u32,
    start_time: u64,
    applied_at: i64,
    alive: bool,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    name: &'a str,
    preset: &'static str,
    created_at: i64,
    updated_at: i64,
    limits: LimitsJson,
    cgroup: CgroupJson,
    applied: Vec<AppliedJson>,
    gpus: Vec<gpus::GpuStateJson<'a>>,
    isolation: Option<IsolationJson>,
}

/// How GPUs are isolated: `mode` is `kernel` (with `program_id`),
/// `environment` (with `reason`) or `none`.
#[derive(Serialize)]
struct IsolationJson {
    mode: &'static str,
    program_id: Option<u32>,
    reason: Option<String>,
}

impl From<Isolation> for IsolationJson {
    fn from(i: Isolation) -> Self {
        let (mode, program_id, reason) = match i {
            Isolation::None => ("none", None, None),
            Isolation::Kernel { program } => ("kernel", Some(program), None),
            Isolation::Environment { why } => ("environment", None, Some(why)),
        };
        IsolationJson {
            mode,
            program_id,
            reason,
        }
    }
}

fn bytes_of(limit: Option<Limit<Bytes>>) -> Option<u64> {
    limit.and_then(|l| l.value().map(|b| b.0))
}

impl<'a> From<&'a Status> for StatusJson<'a> {
    fn from(s: &'a Status) -> Self {
        let live = s.live.as_ref();
        let exists = live.is_some_and(|l| l.exists);
        let present = live.filter(|l| l.exists);
        let cgroup = CgroupJson {
            path: live.map(|l| l.path.display().to_string()),
            exists,
            enforced: s.enforced(),
            unavailable: s.unavailable.clone(),
            drift: s.drift.clone(),
            pids: live.map(|l| l.pids.clone()).unwrap_or_default(),
            memory: present.map(|l| MemoryJson {
                current: l.memory_current,
                peak: l.memory_peak,
                max: bytes_of(l.memory_max),
                high: bytes_of(l.memory_high),
                swap_current: l.swap_current,
                swap_max: bytes_of(l.swap_max),
            }),
            pressure: present.map(|l| PressuresJson {
                cpu: pressure(l.cpu_pressure),
                memory: pressure(l.memory_pressure),
                io: pressure(l.io_pressure),
            }),
            cpu: live.and_then(|l| l.cpu_stat).map(|c: CpuStat| CpuJson {
                usage_usec: c.usage_usec,
                user_usec: c.user_usec,
                system_usec: c.system_usec,
                nr_periods: c.nr_periods,
                nr_throttled: c.nr_throttled,
                throttled_usec: c.throttled_usec,
            }),
            memory_events: live
                .and_then(|l| l.memory_events)
                .map(|e: MemoryEvents| EventsJson {
                    low: e.low,
                    high: e.high,
                    max: e.max,
                    oom: e.oom,
                    oom_kill: e.oom_kill,
                }),
        };
        StatusJson {
            name: s.profile.name.as_str(),
            preset: s.profile.preset.name(),
            created_at: s.profile.created_at,
            updated_at: s.profile.updated_at,
            limits: (&s.profile.limits).into(),
            cgroup,
            applied: s
                .applied
                .iter()
                .map(|(a, alive): &(AppliedPid, bool)| AppliedJson {
                    pid: a.pid,
                    start_time: a.start_time,
                    applied_at: a.applied_at,
                    alive: *alive,
                })
                .collect(),
            gpus: gpus::gpu_states_json(&s.gpus),
            isolation: s.isolation().map(IsolationJson::from),
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("views serialize");
    text.push('\n');
    text
}

/// `presets --json`.
pub fn presets_json() -> String {
    let all: Vec<PresetJson> = Preset::ALL
        .into_iter()
        .map(|p| PresetJson {
            name: p.name(),
            description: p.description(),
            limits: (&p.limits()).into(),
        })
        .collect();
    json(&all)
}

/// `list --json`.
pub fn list_json(listed: &[Listed]) -> String {
    let all: Vec<ListedJson> = listed
        .iter()
        .map(|l| ListedJson {
            name: l.profile.name.as_str(),
            preset: l.profile.preset.name(),
            limits: (&l.profile.limits).into(),
            cgroup_exists: l.cgroup_exists,
        })
        .collect();
    json(&all)
}

/// `status NAME --json`.
pub fn status_json(status: &Status) -> String {
    json(&StatusJson::from(status))
}

/// `status --json`.
pub fn status_all_json(all: &[Status]) -> String {
    let all: Vec<StatusJson> = all.iter().map(StatusJson::from).collect();
    json(&all)
}

/// `status NAME --json --watch`: one compact line per refresh.
pub fn status_json_line(status: &Status) -> String {
    json_line(&StatusJson::from(status))
}

/// `status --json --watch`: one compact line per refresh.
pub fn status_all_json_line(all: &[Status]) -> String {
    let all: Vec<StatusJson> = all.iter().map(StatusJson::from).collect();
    json_line(&all)
}

fn json_line<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string(value).expect("views serialize");
    text.push('\n');
    text
}

#[derive(Serialize)]
struct CheckJson<'a> {
    check: &'a str,
    level: &'a str,
    detail: &'a str,
    fix: Option<&'a str>,
}

/// `doctor --json`.
pub fn doctor_json(checks: &[Check]) -> String {
    let all: Vec<CheckJson> = checks
        .iter()
        .map(|c| CheckJson {
            check: c.name,
            level: c.level.word(),
            detail: &c.detail,
            fix: c.fix.as_deref(),
        })
        .collect();
    json(&all)
}

/// `doctor`: one line per check, the fix indented below it.
pub fn doctor_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let _ = writeln!(out, "{:<5} {:<12} {}", c.level.word(), c.name, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "{:<18} fix: {fix}", "");
        }
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded so lines carry no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

fn cores(limits: &Limits) -> String {
    limits.cpu.value().map_or("max".into(), |q| q.to_string())
}

fn cpus(limits: &Limits) -> String {
    limits.cpus.as_ref().map_or("all".into(), |c| c.to_string())
}

fn gpus(limits: &Limits) -> String {
    match limits.gpus {
        None => "-".into(),
        Some(n) => format!("{n}@{}%", limits.gpu_share.percent()),
    }
}

/// `presets`.
pub fn presets_table() -> String {
    let rows: Vec<Vec<String>> = Preset::ALL
        .into_iter()
        .map(|p| {
            let l = p.limits();
            vec![
                p.name().into(),
                cores(&l),
                l.cpu_weight.get().to_string(),
                l.memory_max.to_string(),
                l.memory_high.to_string(),
                format!("{}%", l.gpu_share.percent()),
                l.oom_score_adj.get().to_string(),
                p.description().into(),
            ]
        })
        .collect();
    table(
        &[
            "PRESET", "CORES", "WEIGHT", "MEMORY", "HIGH", "GPU", "OOM", "USE",
        ],
        &rows,
    )
}

/// `list`.
pub fn list_table(listed: &[Listed]) -> String {
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|item| {
            let l = &item.profile.limits;
            vec![
                item.profile.name.to_string(),
                item.profile.preset.name().into(),
                cores(l),
                l.cpu_weight.get().to_string(),
                cpus(l),
                l.memory_max.to_string(),
                l.memory_high.to_string(),
                l.oom_score_adj.get().to_string(),
                gpus(l),
                if item.cgroup_exists { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "PRESET", "CORES", "WEIGHT", "CPUS", "MEMORY", "HIGH", "OOM", "GPUS", "CGROUP",
        ],
        &rows,
    )
}

/// What `status` without a name reads of each cgroup: a table shows one
/// line per profile, JSON carries everything.
pub fn status_all_detail(json: bool) -> Detail {
    if json {
        Detail::Full
    } else {
        Detail::Summary
    }
}

/// `status` for every profile: one line each.
pub fn status_table(all: &[Status]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let live = s.live.as_ref().filter(|l| l.exists);
            let state = match (&s.live, live) {
                (None, _) => "unenforceable",
                (Some(_), None) => "missing",
                (Some(_), Some(_)) if s.enforced() => "enforced",
                (Some(_), Some(_)) => "drifted",
            };
            let memory = live
                .and_then(|l| l.memory_current)
                .map_or("-".into(), human_bytes);
            let cpu = live
                .and_then(|l| l.cpu_stat)
                .map_or("-".into(), |c| format!("{:.1}s", c.usage_usec as f64 / 1e6));
            let throttled = live.and_then(|l| l.cpu_stat).map_or("-".into(), |c| {
                format!("{}/{}", c.nr_throttled, c.nr_periods)
            });
            let kills = live
                .and_then(|l| l.memory_events)
                .map_or("-".into(), |e| e.oom_kill.to_string());
            vec![
                s.profile.name.to_string(),
                state.into(),
                live.map_or("-".into(), |l| l.pids.len().to_string()),
                memory,
                s.profile.limits.memory_max.to_string(),
                cpu,
                throttled,
                kills,
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "PIDS",
            "MEMORY",
            "MAX",
            "CPU",
            "THROTTLED",
            "OOM-KILLS",
        ],
        &rows,
    )
}

/// A byte count for people: one decimal in the largest fitting unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, suffix) in UNITS {
        if n >= size {
            return format!("{:.1}{suffix}", n as f64 / size as f64);
        }
    }
    format!("{n}B")
}

/// A one-line description of limits.
pub fn describe(l: &Limits) -> String {
    let mut text = format!(
        "cpu {} cores (weight {}), cpus {}, memory max {} high {}, oom {}",
        cores(l),
        l.cpu_weight.get(),
        cpus(l),
        l.memory_max,
        l.memory_high,
        l.oom_score_adj.get()
    );
    if let Some(n) = l.gpus {
        let _ = write!(text, ", gpus {n} at {}%", l.gpu_share.percent());
        if l.gpu_binding == cortex_limits::accel::GpuBinding::ExportOnly {
            text.push_str(" (export only, none reserved here)");
        }
    }
    if let Some(mems) = &l.mems {
        let _ = write!(text, ", memory nodes {mems}");
    }
    text
}

/// `status NAME`.
pub fn status_text(s: &Status) -> String {
    let p: &Profile = &s.profile;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<10} {value}");
    };
    line(
        "profile",
        format!(
            "{} (preset {}, created {})",
            p.name,
            p.preset,
            utc(p.created_at)
        ),
    );
    line("limits", describe(&p.limits));
    match (&s.live, &s.unavailable) {
        (None, Some(why)) => line("cgroup", format!("none: limits not enforced: {why}")),
        (None, None) => line("cgroup", "none".into()),
        (Some(live), _) if !live.exists => line(
            "cgroup",
            format!(
                "{} (missing: not enforced; `apply` re-creates it)",
                live.path.display()
            ),
        ),
        (Some(live), _) => {
            let state = if s.drift.is_empty() {
                "enforced".to_string()
            } else {
                format!("differs from the profile in {}", s.drift.join(", "))
            };
            line("cgroup", format!("{} ({state})", live.path.display()));
            live_lines(live, &mut line);
        }
    }
    if !s.applied.is_empty() {
        let applied: Vec<String> = s
            .applied
            .iter()
            .map(|(a, alive)| format!("{} ({})", a.pid, if *alive { "running" } else { "gone" }))
            .collect();
        line("applied", applied.join(", "));
    }
    if p.limits.gpu_binding == cortex_limits::accel::GpuBinding::ExportOnly {
        line(
            "gpus",
            format!(
                "{} kept for export only: none reserved on this machine",
                p.limits.gpus.unwrap_or(0)
            ),
        );
    }
    for gpu in gpus::status_lines(&s.gpus) {
        line("gpu", gpu);
    }
    if let Some(isolation) = s.isolation() {
        line("isolation", isolation.to_string());
    }
    out
}

fn live_lines(live: &Live, line: &mut impl FnMut(&str, String)) {
    let pids: Vec<String> = live.pids.iter().map(u32::to_string).collect();
    line(
        "processes",
        if pids.is_empty() {
            "none".into()
        } else {
            format!("{}: {}", pids.len(), pids.join(", "))
        },
    );
    if let Some(current) = live.memory_current {
        let limit = |l: Option<Limit<Bytes>>| l.map_or("?".to_string(), |l| l.to_string());
        let peak = live
            .memory_peak
            .map_or(String::new(), |p| format!(" (peak {})", human_bytes(p)));
        line(
            "memory",
            format!(
                "{} used{peak}; max {}, high {}",
                human_bytes(current),
                limit(live.memory_max),
                limit(live.memory_high)
            ),
        );
    }
    if let Some(swap) = live.swap_current {
        let max = live.swap_max.map_or("?".to_string(), |l| l.to_string());
        line("swap", format!("{} used; max {max}", human_bytes(swap)));
    }
    let psi = [
        ("cpu", live.cpu_pressure),
        ("memory", live.memory_pressure),
        ("io", live.io_pressure),
    ];
    for (resource, p) in psi {
        if let Some(p) = p {
            let full = p.full.map_or(String::new(), |f| {
                format!(", full {:.2}% / {:.2}%", f.avg10, f.avg60)
            });
            line(
                "pressure",
                format!(
                    "{resource:<6} some {:.2}% / {:.2}%{full} (avg10 / avg60)",
                    p.some.avg10, p.some.avg60
                ),
            );
        }
    }
    if let Some(c) = live.cpu_stat {
        line(
            "cpu",
            format!(
                "{:.2}s used ({:.2}s user, {:.2}s system); throttled in {} of {} periods, {:.2}s",
                c.usage_usec as f64 / 1e6,
                c.user_usec as f64 / 1e6,
                c.system_usec as f64 / 1e6,
                c.nr_throttled,
                c.nr_periods,
                c.throttled_usec as f64 / 1e6
            ),
        );
    }
    if let Some(e) = live.memory_events {
        line(
            "events",
            format!(
                "oom_kill {}, oom {}, max {}, high {}, low {}",
                e.oom_kill, e.oom, e.max, e.high, e.low
            ),
        );
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from a day count (proleptic Gregorian, era of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_300_000), "2026-12-03 12:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn tables_align_and_end_without_blanks() {
        let rows = vec![
            vec!["a".to_string(), "long value".to_string(), "x".to_string()],
            vec!["bbbb".to_string(), "v".to_string(), "y".to_string()],
        ];
        assert_eq!(
            table(&["N", "VALUE", "Z"], &rows),
            "N     VALUE       Z\na     long value  x\nbbbb  v           y\n"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(32 << 30), "32.0G");
    }
}
