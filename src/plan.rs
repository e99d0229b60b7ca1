//! Validated values: what the user asked for, checked once, as types the
//! rest of the library can trust.
//!
//! Nothing here touches the kernel or the database. The command line turns
//! its strings into these types; a value that exists has already been
//! checked, so a `ProfileName` can never climb out of the cortex subtree
//! and a `CpuQuota` is always one the kernel accepts.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

pub use crate::accel::GpuBinding;
use crate::cpuset::{CpuListError, CpuSet};
use crate::preset::Preset;
use crate::units::{Bytes, Limit, SizeError};

/// The longest profile name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// The scheduling period written with every CPU quota, in microseconds
/// (the kernel's default: 100 ms).
pub const CPU_PERIOD_USEC: u64 = 100_000;

/// The smallest quota the kernel accepts in `cpu.max`: 1 ms per period.
const MIN_QUOTA_USEC: u64 = 1_000;

/// The largest CPU request accepted, in cores. No machine Linux runs on
/// has more, so a larger number is a typo.
pub const MAX_CORES: u64 = 8192;

/// The most GPUs one profile may ask for.
pub const MAX_GPUS: u32 = 1024;

/// Prefixes of cgroup interface files. A cgroup named like one of them
/// would clash with the kernel's own files in `cortex.slice`.
const RESERVED_PREFIXES: [&str; 9] = [
    "cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

/// Why a value was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// The profile name breaks the naming rules.
    #[error("invalid profile name '{name}': {why}")]
    Name {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The CPU request is not a usable percentage.
    #[error("invalid CPU quota '{value}': {why}")]
    Cpu {
        /// The value as given.
        value: String,
        /// Which rule it breaks.
        why: String,
    },
    /// `--cpu-weight` out of range.
    #[error("invalid CPU weight '{0}': use a whole number from 1 to 10000 (default 100)")]
    Weight(String),
    /// `--oom-adj` out of range.
    #[error("invalid OOM score adjustment '{0}': use a whole number from -1000 to 1000")]
    OomAdj(String),
    /// `--gpus` out of range.
    #[error("invalid GPU count '{0}': use a whole number from 0 to {MAX_GPUS}")]
    Gpus(String),
    /// `--gpu-share` out of range.
    #[error("invalid GPU share '{0}': use a percentage from 1 to 100")]
    GpuShare(String),
    /// `--gpu-ids` does not parse.
    #[error("invalid GPU id '{0}' in --gpu-ids: use indices, UUIDs (GPU-...) or PCI addresses, separated by commas, such as 0,3 (see `cortex limits gpus`)")]
    GpuIds(String),
    /// An unknown preset.
    #[error("unknown preset '{0}': choose inference, training, batch or interactive (see `cortex limits presets`)")]
    Preset(String),
    /// A memory size that does not parse.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// A CPU list that does not parse.
    #[error(transparent)]
    CpuList(#[from] CpuListError),
    /// An empty `--cpus`.
    #[error("invalid CPU list '': name at least one CPU, such as 0-3")]
    EmptyCpuList,
    /// `memory.high` above `memory.max`.
    #[error("memory high ({high}) is above memory max ({max}): the soft limit must not exceed the hard one")]
    HighAboveMax {
        /// The soft limit.
        high: Limit<Bytes>,
        /// The hard limit.
        max: Limit<Bytes>,
    },
}

/// A profile's name: 1 to 64 characters from `[A-Za-z0-9_.-]`, starting
/// with a letter or digit, and not the name of a cgroup interface file.
/// It is used as a directory name, so these rules are what keep it inside
/// `cortex.slice`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    /// Checks a name against the rules.
    pub fn new(name: &str) -> Result<ProfileName, PlanError> {
        let refuse = |why| {
            Err(PlanError::Name {
                name: name.to_string(),
                why,
            })
        };
        let Some(first) = name.chars().next() else {
            return refuse("it is empty");
        };
        if name.len() > MAX_NAME_LEN {
            return refuse("it is longer than 64 characters");
        }
        if !first.is_ascii_alphanumeric() {
            return refuse("it must start with a letter or a digit");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !name.chars().all(allowed) {
            return refuse("use only letters, digits, '_', '.' and '-'");
        }
        if let Some((prefix, _)) = name.split_once('.') {
            if RESERVED_PREFIXES.contains(&prefix.to_ascii_lowercase().as_str()) {
                return refuse("a name beginning with a controller name and '.' clashes with cgroup interface files");
            }
        }
        Ok(ProfileName(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ProfileName {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileName::new(s)
    }
}

/// A CPU quota: microseconds of CPU time per [`CPU_PERIOD_USEC`]. One core
/// is 100,000; the user writes it as a percentage (100 = one core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuQuota(u64);

impl CpuQuota {
    /// A quota of this many microseconds per period, if the kernel accepts it.
    pub fn from_usec(usec: u64) -> Option<CpuQuota> {
        (MIN_QUOTA_USEC..=MAX_CORES * CPU_PERIOD_USEC)
            .contains(&usec)
            .then_some(CpuQuota(usec))
    }

    /// A quota of whole cores.
    pub fn cores(cores: u64) -> CpuQuota {
        CpuQuota(cores * CPU_PERIOD_USEC)
    }

    /// Microseconds per period.
    pub fn usec(self) -> u64 {
        self.0
    }

    /// The quota as a percentage of one core.
    pub fn percent(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Whole cores, rounded down, at least one: the thread count that
    /// keeps a pool of busy threads inside the quota.
    pub fn whole_cores(self) -> u64 {
        (self.0 / CPU_PERIOD_USEC).max(1)
    }

    /// Parses a percentage such as `400`, `250` or `12.5` (at most three
    /// decimals). `max` is handled by [`parse_cpu`].
    fn parse_percent(text: &str) -> Result<CpuQuota, PlanError> {
        let refuse = |why: &str| PlanError::Cpu {
            value: text.to_string(),
            why: why.to_string(),
        };
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(refuse(
                "use a percentage of one core (100 = one core, 50 = half, 250 = two and a half) or max",
            ));
        }
        if fraction.len() > 3 {
            return Err(refuse("use at most three decimals"));
        }
        let too_large = format!("more than {MAX_CORES} cores is not a real machine");
        // 1% of a core is 1,000 µs per 100 ms period.
        let whole: u64 = whole.parse().map_err(|_| refuse(&too_large))?;
        let fraction_usec: u64 = format!("{fraction:0<3}").parse().unwrap_or(0);
        let usec = whole
            .checked_mul(1000)
            .and_then(|u| u.checked_add(fraction_usec))
            .ok_or_else(|| refuse(&too_large))?;
        if usec < MIN_QUOTA_USEC {
            return Err(refuse("the kernel's smallest quota is 1 (1% of one core)"));
        }
        CpuQuota::from_usec(usec).ok_or_else(|| refuse(&too_large))
    }
}

impl fmt::Display for CpuQuota {
    /// Cores, with as many decimals as needed: `4`, `2.5`, `0.125`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / CPU_PERIOD_USEC;
        let rest = self.0 % CPU_PERIOD_USEC;
        if rest == 0 {
            return write!(f, "{whole}");
        }
        let decimals = format!("{rest:05}");
        write!(f, "{whole}.{}", decimals.trim_end_matches('0'))
    }
}

/// Parses `--cpu`: a percentage of one core or `max`.
pub fn parse_cpu(text: &str) -> Result<Limit<CpuQuota>, PlanError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("max") {
        return Ok(Limit::Max);
    }
    CpuQuota::parse_percent(text).map(Limit::Value)
}

/// Parses a bounded whole number, refusing signs where they make no sense.
fn parse_bounded<T: FromStr + PartialOrd>(text: &str, low: T, high: T) -> Option<T> {
    let value: T = text.trim().parse().ok()?;
    (low <= value && value <= high).then_some(value)
}

/// `cpu.weight`: 1 to 10000, the kernel's default is 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuWeight(u16);

impl CpuWeight {
    /// The kernel's default weight.
    pub const DEFAULT: CpuWeight = CpuWeight(100);

    /// A weight, if in range.
    pub fn new(weight: u64) -> Option<CpuWeight> {
        (1..=10_000)
            .contains(&weight)
            .then_some(CpuWeight(weight as u16))
    }

    /// The weight as a number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl FromStr for CpuWeight {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_bounded(s, 1u64, 10_000)
            .and_then(CpuWeight::new)
            .ok_or_else(|| PlanError::Weight(s.to_string()))
    }
}

/// `oom_score_adj`: -1000 (never OOM-killed) to 1000 (killed first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OomScoreAdj(i16);

impl OomScoreAdj {
    /// An adjustment, if in range.
    pub fn new(adj: i64) -> Option<OomScoreAdj> {
        (-1000..=1000)
            .contains(&adj)
            .then_some(OomScoreAdj(adj as i16))
    }

    /// The adjustment as a number.
    pub fn get(self) -> i16 {
        self.0
    }
}

impl FromStr for OomScoreAdj {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_bounded(s, -1000i64, 1000)
            .and_then(OomScoreAdj::new)
            .ok_or_else(|| PlanError::OomAdj(s.to_string()))
    }
}

/// The share of each reserved GPU a profile may use, 1 to 100 percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpuShare(u8);

impl GpuShare {
    /// A share, if in range.
    pub fn new(percent: u64) -> Option<GpuShare> {
        (1..=100)
            .contains(&percent)
            .then_some(GpuShare(percent as u8))
    }

    /// The share in percent.
    pub fn percent(self) -> u8 {
        self.0
    }
}

impl FromStr for GpuShare {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_bounded(s, 1u64, 100)
            .and_then(GpuShare::new)
            .ok_or_else(|| PlanError::GpuShare(s.to_string()))
    }
}

/// Parses `--gpus`: 0 to [`MAX_GPUS`].
pub fn parse_gpus(text: &str) -> Result<u32, PlanError> {
    parse_bounded(text, 0u32, MAX_GPUS).ok_or_else(|| PlanError::Gpus(text.to_string()))
}

/// One GPU named in `--gpu-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GpuSelector {
    /// A machine-wide index, as `cortex limits gpus` shows it.
    Index(u32),
    /// A runtime UUID, `GPU-...`, compared without regard to case.
    Uuid(String),
    /// A PCI address, `0000:18:00.0` or `18:00.0`.
    BusId(String),
}

impl GpuSelector {
    /// Whether it names `gpu`.
    pub fn matches(&self, gpu: &crate::accel::Gpu) -> bool {
        match self {
            GpuSelector::Index(i) => gpu.index == *i,
            GpuSelector::Uuid(u) => gpu.uuid.as_ref().is_some_and(|g| g.eq_ignore_ascii_case(u)),
            GpuSelector::BusId(b) => gpu.bus_id == *b || gpu.bus_id.ends_with(&format!(":{b}")),
        }
    }
}

impl fmt::Display for GpuSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSelector::Index(i) => write!(f, "{i}"),
            GpuSelector::Uuid(u) | GpuSelector::BusId(u) => f.write_str(u),
        }
    }
}

/// Parses `--gpu-ids`: indices, UUIDs or PCI addresses, comma-separated.
pub fn parse_gpu_ids(text: &str) -> Result<Vec<GpuSelector>, PlanError> {
    let refuse = |part: &str| PlanError::GpuIds(part.to_string());
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim) {
        let id = if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
            GpuSelector::Index(parse_bounded(part, 0u32, MAX_GPUS - 1).ok_or_else(|| refuse(part))?)
        } else if part.len() > 4 && part[..4].eq_ignore_ascii_case("GPU-") {
            GpuSelector::Uuid(part.to_string())
        } else if part.contains(':')
            && part.contains('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            GpuSelector::BusId(part.to_ascii_lowercase())
        } else {
            return Err(refuse(part));
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Parses `--cpus`: a non-empty CPU list.
pub fn parse_cpus(text: &str) -> Result<CpuSet, PlanError> {
    let cpus = CpuSet::parse(text)?;
    if cpus.is_empty() {
        return Err(PlanError::EmptyCpuList);
    }
    Ok(cpus)
}

/// Everything a profile limits. Built from a preset and overrides by
/// [`Limits::resolve`], which checks that the parts agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `cpu.max`: the CPU time per period.
    pub cpu: Limit<CpuQuota>,
    /// `cpu.weight`: the share under contention.
    pub cpu_weight: CpuWeight,
    /// `cpuset.cpus`: the CPUs it may run on; `None` leaves all allowed.
    pub cpus: Option<CpuSet>,
    /// `memory.max`: the hard limit; past it the OOM killer acts.
    pub memory_max: Limit<Bytes>,
    /// `memory.high`: the soft limit; past it the kernel throttles and
    /// reclaims.
    pub memory_high: Limit<Bytes>,
    /// The OOM priority written for every process put under the profile.
    pub oom_score_adj: OomScoreAdj,
    /// How many GPUs it asks for; `None` leaves GPUs alone.
    pub gpus: Option<u32>,
    /// The share of each GPU it may use.
    pub gpu_share: GpuShare,
    /// `cpuset.mems`: the memory nodes it may allocate from, set by GPU
    /// placement; `None` leaves all allowed. Same list format as CPUs.
    pub mems: Option<CpuSet>,
    /// Whether its GPUs are reserved here or only counted for export.
    pub gpu_binding: GpuBinding,
}

/// What the user changed from the preset. `None` keeps the preset's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--cpu`.
    pub cpu: Option<Limit<CpuQuota>>,
    /// `--cpu-weight`.
    pub cpu_weight: Option<CpuWeight>,
    /// `--cpus`.
    pub cpus: Option<CpuSet>,
    /// `--memory`.
    pub memory_max: Option<Limit<Bytes>>,
    /// `--memory-high`.
    pub memory_high: Option<Limit<Bytes>>,
    /// `--oom-adj`.
    pub oom_score_adj: Option<OomScoreAdj>,
    /// `--gpus`.
    pub gpus: Option<u32>,
    /// `--gpu-share`.
    pub gpu_share: Option<GpuShare>,
    /// `--gpu-ids`: particular GPUs.
    pub gpu_ids: Option<Vec<GpuSelector>>,
    /// `--gpus-export-only`.
    pub gpu_binding: Option<GpuBinding>,
}

/// The fraction of `memory.max` that `memory.high` defaults to when only
/// the hard limit is given: throttling starts one eighth below the point
/// where the OOM killer would act, which leaves reclaim room to work.
const HIGH_NUMERATOR: u64 = 7;
const HIGH_DENOMINATOR: u64 = 8;

/// The default soft limit for a hard limit: 7/8 of it, in whole pages.
pub fn default_high(max: Limit<Bytes>) -> Limit<Bytes> {
    match max {
        Limit::Max => Limit::Max,
        Limit::Value(Bytes(max)) => {
            let high = max / HIGH_DENOMINATOR * HIGH_NUMERATOR;
            Limit::Value(
                Bytes(high)
                    .page_aligned()
                    .max(Bytes(crate::units::PAGE_SIZE)),
            )
        }
    }
}

impl Limits {
    /// The preset's limits with the overrides applied. A new hard memory
    /// limit without a soft one gets the default soft limit for it rather
    /// than the preset's, which could lie above it.
    pub fn resolve(preset: Preset, overrides: &Overrides) -> Result<Limits, PlanError> {
        preset.limits().with(overrides)
    }

    /// These limits with the overrides applied, by the same rules as
    /// [`Limits::resolve`]: what `update` does to a stored profile.
    pub fn with(&self, overrides: &Overrides) -> Result<Limits, PlanError> {
        let base = self.clone();
        let memory_max = overrides.memory_max.unwrap_or(base.memory_max);
        let memory_high = match (overrides.memory_high, overrides.memory_max) {
            (Some(high), _) => high,
            (None, Some(max)) => default_high(max),
            (None, None) => base.memory_high,
        };
        let limits = Limits {
            cpu: overrides.cpu.unwrap_or(base.cpu),
            cpu_weight: overrides.cpu_weight.unwrap_or(base.cpu_weight),
            cpus: overrides.cpus.clone().or(base.cpus),
            memory_max,
            memory_high,
            oom_score_adj: overrides.oom_score_adj.unwrap_or(base.oom_score_adj),
            gpus: overrides
                .gpus
                .or(overrides.gpu_ids.as_ref().map(|ids| ids.len() as u32))
                .or(base.gpus),
            gpu_share: overrides.gpu_share.unwrap_or(base.gpu_share),
            mems: base.mems,
            gpu_binding: overrides.gpu_binding.unwrap_or(base.gpu_binding),
        };
        limits.check()?;
        Ok(limits)
    }

    /// Checks that the parts agree with each other.
    pub fn check(&self) -> Result<(), PlanError> {
        // `memory.high` of `max` means no soft limit, which is the kernel's
        // own default beside any hard limit.
        let high_above_max = match (self.memory_high, self.memory_max) {
            (Limit::Value(high), Limit::Value(max)) => high > max,
            _ => false,
        };
        if high_above_max {
            return Err(PlanError::HighAboveMax {
                high: self.memory_high,
                max: self.memory_max,
            });
        }
        Ok(())
    }

    /// How many threads a CPU-bound pool should use: whole cores of the
    /// quota, no more than the pinned CPUs, at least one. `None` when
    /// neither a quota nor a CPU list bounds it.
    pub fn thread_count(&self) -> Option<u64> {
        let by_quota = self.cpu.value().map(|q| q.whole_cores());
        let by_cpus = self.cpus.as_ref().map(|c| c.len().max(1) as u64);
        match (by_quota, by_cpus) {
            (Some(q), Some(c)) => Some(q.min(c)),
            (q, c) => q.or(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names() {
        let good = [
            "a",
            "inference-job",
            "Job_2",
            "v1.2",
            "9lives",
            &"x".repeat(64),
        ];
        for name in good {
            assert_eq!(ProfileName::new(name).map(|n| n.0), Ok(name.to_string()));
        }
        let bad: &[(&str, &str)] = &[
            ("", "it is empty"),
            (".", "it must start with a letter or a digit"),
            ("..", "it must start with a letter or a digit"),
            ("../evil", "it must start with a letter or a digit"),
            ("a/b", "use only letters, digits, '_', '.' and '-'"),
            ("a b", "use only letters, digits, '_', '.' and '-'"),
            ("-flag", "it must start with a letter or a digit"),
            ("_x", "it must start with a letter or a digit"),
            ("é", "it must start with a letter or a digit"),
            ("aé", "use only letters, digits, '_', '.' and '-'"),
            ("a\n", "use only letters, digits, '_', '.' and '-'"),
            (&"x".repeat(65), "it is longer than 64 characters"),
            ("cgroup.procs", "a name beginning with a controller name and '.' clashes with cgroup interface files"),
            ("memory.max", "a name beginning with a controller name and '.' clashes with cgroup interface files"),
            ("CPU.x", "a name beginning with a controller name and '.' clashes with cgroup interface files"),
        ];
        for (name, why) in bad {
            assert_eq!(
                ProfileName::new(name),
                Err(PlanError::Name {
                    name: name.to_string(),
                    why
                }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn cpu_quotas() {
        let cases: &[(&str, Option<u64>)] = &[
            ("400", Some(400_000)),
            ("250", Some(250_000)),
            ("50", Some(50_000)),
            ("12.5", Some(12_500)),
            ("1", Some(1_000)),
            ("0.125", None),
            ("1.001", Some(1_001)),
            ("819200", Some(819_200_000)),
            ("819201", None),
            ("0", None),
            ("0.5", None),
            ("-100", None),
            ("1e3", None),
            ("", None),
            (".5", None),
            ("1.2345", None),
            ("99999999999999999999999", None),
        ];
        for (text, want) in cases {
            let got = parse_cpu(text).ok().map(|l| l.value().unwrap().usec());
            assert_eq!(got, *want, "{text:?}");
        }
        assert_eq!(parse_cpu("max"), Ok(Limit::Max));
    }

    #[test]
    fn cpu_quota_errors_say_why() {
        let err = parse_cpu("0").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid CPU quota '0': the kernel's smallest quota is 1 (1% of one core)"
        );
        let err = parse_cpu("1000000").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid CPU quota '1000000': more than 8192 cores is not a real machine"
        );
    }

    #[test]
    fn cpu_quota_display_and_threads() {
        let q = |usec| CpuQuota::from_usec(usec).unwrap();
        assert_eq!(q(400_000).to_string(), "4");
        assert_eq!(q(250_000).to_string(), "2.5");
        assert_eq!(q(12_500).to_string(), "0.125");
        assert_eq!(q(400_000).whole_cores(), 4);
        assert_eq!(q(250_000).whole_cores(), 2);
        assert_eq!(q(50_000).whole_cores(), 1);
        assert_eq!(q(250_000).percent(), 250.0);
    }

    #[test]
    fn bounded_numbers() {
        assert_eq!("1".parse::<CpuWeight>().map(|w| w.get()), Ok(1));
        assert_eq!("10000".parse::<CpuWeight>().map(|w| w.get()), Ok(10_000));
        assert!(matches!(
            "0".parse::<CpuWeight>(),
            Err(PlanError::Weight(_))
        ));
        assert!(matches!(
            "10001".parse::<CpuWeight>(),
            Err(PlanError::Weight(_))
        ));
        assert_eq!("-1000".parse::<OomScoreAdj>().map(|a| a.get()), Ok(-1000));
        assert_eq!("1000".parse::<OomScoreAdj>().map(|a| a.get()), Ok(1000));
        assert!(matches!(
            "-1001".parse::<OomScoreAdj>(),
            Err(PlanError::OomAdj(_))
        ));
        assert!(matches!(
            "lots".parse::<OomScoreAdj>(),
            Err(PlanError::OomAdj(_))
        ));
        assert_eq!(parse_gpus("0"), Ok(0));
        assert!(matches!(parse_gpus("-1"), Err(PlanError::Gpus(_))));
        assert!(matches!(parse_gpus("1025"), Err(PlanError::Gpus(_))));
        assert!(matches!(
            "0".parse::<GpuShare>(),
            Err(PlanError::GpuShare(_))
        ));
        assert!(matches!(parse_cpus(""), Err(PlanError::EmptyCpuList)));
    }

    #[test]
    fn overrides_resolve_against_the_preset() {
        let gib = |n: u64| Limit::Value(Bytes(n << 30));
        let plain = Limits::resolve(Preset::Inference, &Overrides::default()).unwrap();
        assert_eq!(plain, Preset::Inference.limits());

        let memory_only = Overrides {
            memory_max: Some(gib(8)),
            ..Overrides::default()
        };
        let limits = Limits::resolve(Preset::Inference, &memory_only).unwrap();
        assert_eq!(limits.memory_max, gib(8));
        assert_eq!(
            limits.memory_high,
            gib(7),
            "soft limit follows the new hard one"
        );

        let unlimited = Overrides {
            memory_max: Some(Limit::Max),
            ..Overrides::default()
        };
        let limits = Limits::resolve(Preset::Batch, &unlimited).unwrap();
        assert_eq!(limits.memory_high, Limit::Max);

        let inverted = Overrides {
            memory_max: Some(gib(8)),
            memory_high: Some(gib(9)),
            ..Overrides::default()
        };
        assert_eq!(
            Limits::resolve(Preset::Inference, &inverted).unwrap_err().to_string(),
            "memory high (9G) is above memory max (8G): the soft limit must not exceed the hard one"
        );

        let no_soft_limit = Overrides {
            memory_max: Some(gib(8)),
            memory_high: Some(Limit::Max),
            ..Overrides::default()
        };
        let limits = Limits::resolve(Preset::Inference, &no_soft_limit).unwrap();
        assert_eq!(
            (limits.memory_max, limits.memory_high),
            (gib(8), Limit::Max)
        );

        let high_above_preset_max = Overrides {
            memory_high: Some(gib(40)),
            ..Overrides::default()
        };
        assert!(matches!(
            Limits::resolve(Preset::Inference, &high_above_preset_max),
            Err(PlanError::HighAboveMax { .. })
        ));
    }

    #[test]
    fn thread_counts() {
        let mut limits = Preset::Inference.limits();
        assert_eq!(limits.thread_count(), Some(4));
        limits.cpus = Some(parse_cpus("0-1").unwrap());
        assert_eq!(limits.thread_count(), Some(2), "pinned CPUs bound it");
        limits.cpu = Limit::Max;
        assert_eq!(limits.thread_count(), Some(2));
        limits.cpus = None;
        assert_eq!(limits.thread_count(), None);
        limits.cpu = parse_cpu("50").unwrap();
        assert_eq!(limits.thread_count(), Some(1), "at least one thread");
    }
}
