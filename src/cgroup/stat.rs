//! Parsers for the kernel's cgroup v2 file formats. They take `&str` so
//! they can be tested on text copied from real machines; reading the files
//! is the driver's job.

use crate::units::{Bytes, Limit};

/// Pairs from a flat-keyed file (`key value` per line). Lines that do not
/// have that shape are skipped: the kernel adds keys over time, and a
/// reader must not break on them.
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        let key = words.next()?;
        let value = words.next()?.parse().ok()?;
        words.next().is_none().then_some((key, value))
    })
}

/// The counters of `cpu.stat` this tool shows. Fields the kernel does not
/// print (the throttling ones without the cpu controller) read as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// CPU time used, in microseconds.
    pub usage_usec: u64,
    /// Of which in user mode.
    pub user_usec: u64,
    /// Of which in the kernel.
    pub system_usec: u64,
    /// Enforcement periods that have elapsed with runnable tasks.
    pub nr_periods: u64,
    /// Periods in which the group ran out of quota.
    pub nr_throttled: u64,
    /// Time spent throttled, in microseconds.
    pub throttled_usec: u64,
}

impl CpuStat {
    /// Parses `cpu.stat`.
    pub fn parse(text: &str) -> CpuStat {
        let mut stat = CpuStat::default();
        for (key, value) in flat_keyed(text) {
            let field = match key {
                "usage_usec" => &mut stat.usage_usec,
                "user_usec" => &mut stat.user_usec,
                "system_usec" => &mut stat.system_usec,
                "nr_periods" => &mut stat.nr_periods,
                "nr_throttled" => &mut stat.nr_throttled,
                "throttled_usec" => &mut stat.throttled_usec,
                _ => continue,
            };
            *field = value;
        }
        stat
    }
}

/// The counters of `memory.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Reclaimed while under `memory.low`.
    pub low: u64,
    /// Throttled for being over `memory.high`.
    pub high: u64,
    /// Allocations that hit `memory.max`.
    pub max: u64,
    /// Times the OOM killer was invoked.
    pub oom: u64,
    /// Processes it killed.
    pub oom_kill: u64,
}

impl MemoryEvents {
    /// Parses `memory.events`.
    pub fn parse(text: &str) -> MemoryEvents {
        let mut events = MemoryEvents::default();
        for (key, value) in flat_keyed(text) {
            let field = match key {
                "low" => &mut events.low,
                "high" => &mut events.high,
                "max" => &mut events.max,
                "oom" => &mut events.oom,
                "oom_kill" => &mut events.oom_kill,
                _ => continue,
            };
            *field = value;
        }
        events
    }
}

/// One line of a pressure file: the share of wall time in which some (or
/// all) tasks stalled on the resource, averaged over 10 and 60 seconds, in
/// percent, and the total stall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stall {
    /// Percent over the last 10 seconds.
    pub avg10: f64,
    /// Percent over the last 60 seconds.
    pub avg60: f64,
    /// Percent over the last 300 seconds.
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total_usec: u64,
}

/// A pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: Stall,
    /// All non-idle tasks stalled at once; `None` where the kernel does
    /// not report it (CPU pressure before Linux 5.13).
    pub full: Option<Stall>,
}

impl Pressure {
    /// Parses `some avg10=0.12 avg60=... avg300=... total=...` lines.
    pub fn parse(text: &str) -> Option<Pressure> {
        let mut some = None;
        let mut full = None;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let kind = words.next()?;
            let mut stall = Stall::default();
            for word in words {
                let (key, value) = word.split_once('=')?;
                match key {
                    "avg10" => stall.avg10 = value.parse().ok()?,
                    "avg60" => stall.avg60 = value.parse().ok()?,
                    "avg300" => stall.avg300 = value.parse().ok()?,
                    "total" => stall.total_usec = value.parse().ok()?,
                    _ => {}
                }
            }
            match kind {
                "some" => some = Some(stall),
                "full" => full = Some(stall),
                _ => {}
            }
        }
        Some(Pressure { some: some?, full })
    }
}

/// The process ids of `cgroup.procs`, one per line.
pub fn pids(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The controller names of `cgroup.controllers` or
/// `cgroup.subtree_control`, space-separated. A leading `+` is dropped so
/// that what was written reads like what the kernel prints.
pub fn controllers(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|c| c.trim_start_matches('+').to_string())
        .collect()
}

/// `cpu.max`: the quota (`max` or microseconds) and the period.
pub fn cpu_max(text: &str) -> Option<(Limit<u64>, u64)> {
    let mut words = text.split_whitespace();
    let quota = match words.next()? {
        "max" => Limit::Max,
        n => Limit::Value(n.parse().ok()?),
    };
    let period = words.next()?.parse().ok()?;
    Some((quota, period))
}

/// A byte limit file (`memory.max`, `memory.high`).
pub fn byte_limit(text: &str) -> Option<Limit<Bytes>> {
    crate::units::parse_kernel_limit(text)
}

/// Whether `cgroup.events` says processes are inside (`populated 1`).
pub fn populated(text: &str) -> Option<bool> {
    flat_keyed(text)
        .find(|(k, _)| *k == "populated")
        .map(|(_, v)| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // As printed by Linux 6.1 for a throttled group.
    const CPU_STAT_6_1: &str = "usage_usec 1503268\nuser_usec 1497913\nsystem_usec 5355\n\
        core_sched.force_idle_usec 0\nnr_periods 31\nnr_throttled 30\nthrottled_usec 1469187\n\
        nr_bursts 0\nburst_usec 0\n";

    // cpu.stat of a group without the cpu controller: only the usage lines.
    const CPU_STAT_NO_CONTROLLER: &str = "usage_usec 8041\nuser_usec 3520\nsystem_usec 4521\n";

    const MEMORY_EVENTS_6_1: &str =
        "low 0\nhigh 4127\nmax 212\noom 3\noom_kill 2\noom_group_kill 0\n";

    #[test]
    fn cpu_stat() {
        assert_eq!(
            CpuStat::parse(CPU_STAT_6_1),
            CpuStat {
                usage_usec: 1_503_268,
                user_usec: 1_497_913,
                system_usec: 5_355,
                nr_periods: 31,
                nr_throttled: 30,
                throttled_usec: 1_469_187,
            }
        );
        let bare = CpuStat::parse(CPU_STAT_NO_CONTROLLER);
        assert_eq!(bare.usage_usec, 8041);
        assert_eq!(bare.nr_throttled, 0);
    }

    #[test]
    fn memory_events() {
        assert_eq!(
            MemoryEvents::parse(MEMORY_EVENTS_6_1),
            MemoryEvents {
                low: 0,
                high: 4127,
                max: 212,
                oom: 3,
                oom_kill: 2,
            }
        );
    }

    // memory.pressure as Linux 6.1 prints it.
    const MEMORY_PRESSURE_6_1: &str = "some avg10=1.53 avg60=0.41 avg300=0.09 total=812345\n\
        full avg10=0.87 avg60=0.20 avg300=0.04 total=401234\n";

    #[test]
    fn pressure() {
        let p = Pressure::parse(MEMORY_PRESSURE_6_1).unwrap();
        assert_eq!(p.some.avg10, 1.53);
        assert_eq!(p.some.avg60, 0.41);
        assert_eq!(p.some.total_usec, 812_345);
        assert_eq!(p.full.unwrap().avg10, 0.87);
        let cpu_5_10 = Pressure::parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        assert_eq!(cpu_5_10.full, None);
        assert_eq!(
            Pressure::parse("full avg10=0.00\n"),
            None,
            "some is always there"
        );
        assert_eq!(Pressure::parse("some avg10=x\n"), None);
    }

    #[test]
    fn flat_keyed_skips_odd_lines() {
        let pairs: Vec<_> = flat_keyed("a 1\nbroken\nb x\nc 3 4\n\nd 5\n").collect();
        assert_eq!(pairs, vec![("a", 1), ("d", 5)]);
    }

    #[test]
    fn small_files() {
        assert_eq!(pids("123\n456\n"), vec![123, 456]);
        assert_eq!(pids(""), Vec::<u32>::new());
        assert_eq!(
            controllers("cpuset cpu io memory hugetlb pids rdma misc\n"),
            ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]
        );
        assert_eq!(controllers("+cpu +memory"), ["cpu", "memory"]);
        assert_eq!(cpu_max("max 100000\n"), Some((Limit::Max, 100_000)));
        assert_eq!(
            cpu_max("50000 100000\n"),
            Some((Limit::Value(50_000), 100_000))
        );
        assert_eq!(cpu_max("garbage"), None);
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated(""), None);
    }
}
