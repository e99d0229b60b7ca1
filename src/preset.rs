//! The workload presets a profile starts from.
//!
//! CPU, memory, GPU share and OOM priority follow the original tool's
//! table. The CPU weights and soft memory limits are ours:
//!
//! - `cpu.weight` orders who wins when the machine is contended: an
//!   inference server answering requests (400) before a training job
//!   (200), a notebook at the kernel's default (100), batch work last (50).
//! - `memory.high` is 7/8 of `memory.max`: the kernel starts reclaiming and
//!   throttling there, so a workload slows down before it is OOM-killed.

use std::fmt;
use std::str::FromStr;

use crate::plan::{
    default_high, CpuQuota, CpuWeight, GpuBinding, GpuShare, Limits, OomScoreAdj, PlanError,
};
use crate::units::{Bytes, Limit};

/// A workload preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Low-latency serving.
    Inference,
    /// Long training jobs.
    Training,
    /// Background processing.
    Batch,
    /// Development: notebooks, shells.
    Interactive,
}

impl Preset {
    /// Every preset, in the order they are listed.
    pub const ALL: [Preset; 4] = [
        Preset::Inference,
        Preset::Training,
        Preset::Batch,
        Preset::Interactive,
    ];

    /// The preset used when none is named.
    pub const DEFAULT: Preset = Preset::Inference;

    /// The preset's name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Inference => "inference",
            Preset::Training => "training",
            Preset::Batch => "batch",
            Preset::Interactive => "interactive",
        }
    }

    /// What the preset is for, in a few words.
    pub fn description(self) -> &'static str {
        match self {
            Preset::Inference => "low-latency serving",
            Preset::Training => "long training jobs",
            Preset::Batch => "background processing",
            Preset::Interactive => "development and notebooks",
        }
    }

    /// The preset's limits.
    pub fn limits(self) -> Limits {
        // (cores, cpu.weight, memory.max GiB, oom_score_adj, GPU share %)
        let (cores, weight, memory_gib, oom, share) = match self {
            Preset::Inference => (4, 400, 32, -500, 100),
            Preset::Training => (16, 200, 128, -800, 100),
            Preset::Batch => (8, 50, 64, 0, 80),
            Preset::Interactive => (2, 100, 16, -200, 50),
        };
        let memory_max = Limit::Value(Bytes(memory_gib << 30));
        Limits {
            cpu: Limit::Value(CpuQuota::cores(cores)),
            cpu_weight: CpuWeight::new(weight).expect("preset weights are in range"),
            cpus: None,
            memory_max,
            memory_high: default_high(memory_max),
            oom_score_adj: OomScoreAdj::new(oom).expect("preset adjustments are in range"),
            gpus: None,
            gpu_share: GpuShare::new(share).expect("preset shares are in range"),
            mems: None,
            gpu_binding: GpuBinding::Local,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PlanError::Preset(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_table() {
        // (preset, cpu.max quota, weight, memory.max, memory.high, oom, share)
        let gib = |n: u64| Limit::Value(Bytes(n << 30));
        let cases = [
            (Preset::Inference, 400_000, 400, gib(32), gib(28), -500, 100),
            (
                Preset::Training,
                1_600_000,
                200,
                gib(128),
                gib(112),
                -800,
                100,
            ),
            (Preset::Batch, 800_000, 50, gib(64), gib(56), 0, 80),
            (
                Preset::Interactive,
                200_000,
                100,
                gib(16),
                gib(14),
                -200,
                50,
            ),
        ];
        for (preset, quota, weight, max, high, oom, share) in cases {
            let l = preset.limits();
            assert_eq!(l.cpu.value().map(|q| q.usec()), Some(quota), "{preset}");
            assert_eq!(l.cpu_weight.get(), weight, "{preset}");
            assert_eq!(l.memory_max, max, "{preset}");
            assert_eq!(l.memory_high, high, "{preset}");
            assert_eq!(l.oom_score_adj.get(), oom, "{preset}");
            assert_eq!(l.gpu_share.percent(), share, "{preset}");
            assert_eq!(l.cpus, None, "{preset}");
            assert_eq!(l.gpus, None, "{preset}");
            l.check().unwrap();
        }
    }

    #[test]
    fn names_round_trip() {
        for preset in Preset::ALL {
            assert_eq!(preset.name().parse::<Preset>(), Ok(preset));
        }
        assert_eq!("Training".parse::<Preset>(), Ok(Preset::Training));
        assert_eq!(
            "gaming".parse::<Preset>().unwrap_err().to_string(),
            "unknown preset 'gaming': choose inference, training, batch or interactive (see `cortex limits presets`)"
        );
    }
}
