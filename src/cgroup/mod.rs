//! The cgroup layer: the only code that touches cgroupfs.
//!
//! A [`Driver`] creates a profile's cgroup and writes its limits, moves
//! processes into it, reads its live state and removes it. The filesystem
//! driver ([`fs::FsDriver`]) writes cgroupfs directly; a systemd driver
//! (transient units over D-Bus) can stand beside it behind the same trait.

pub mod device;
pub mod files;
pub mod fs;
pub mod host;
pub mod stat;

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::cpuset::CpuSet;
use crate::error::ErrorKind;
use crate::plan::{Limits, ProfileName, CPU_PERIOD_USEC};
use crate::shortfall::Shortfall;
use crate::units::{Bytes, Limit};

pub use device::{DeviceError, Isolation};
pub use host::{Base, Hierarchy, Unavailable};
pub use stat::{CpuStat, MemoryEvents, Pressure, Stall};

/// What a driver does with profile cgroups.
pub trait Driver {
    /// Where profile cgroups go, or why none can be made on this host.
    fn base(&self) -> Result<&Base, &Unavailable>;

    /// The cgroup directory of a profile, if this host has a place for it.
    fn path(&self, name: &ProfileName) -> Option<PathBuf>;

    /// Creates the profile's cgroup if it is missing and writes its
    /// limits. On error nothing it created is left behind.
    fn ensure(&self, name: &ProfileName, limits: &Limits) -> Result<Ensured, CgroupError>;

    /// The profile's cgroup as it stands, found without writing anything:
    /// `None` when it is missing (or the driver cannot tell cheaply), else
    /// what of `limits` this host cannot enforce, as [`Driver::ensure`]
    /// would report it.
    fn existing(
        &self,
        name: &ProfileName,
        limits: &Limits,
    ) -> Result<Option<Ensured>, CgroupError> {
        let _ = (name, limits);
        Ok(None)
    }

    /// The names of the profile cgroups that exist, from one listing of
    /// their parent; `None` where the driver has no such listing, and each
    /// [`Driver::path`] must be looked at instead.
    fn present(&self) -> Result<Option<HashSet<String>>, CgroupError> {
        Ok(None)
    }

    /// Moves a process, all its threads, into the profile's cgroup.
    fn attach(&self, name: &ProfileName, pid: u32) -> Result<(), CgroupError>;

    /// Reads the profile cgroup's live state, as much of it as `detail`
    /// asks for.
    fn live(&self, name: &ProfileName, detail: Detail) -> Result<Live, CgroupError>;

    /// Removes the profile's cgroup. With processes inside it refuses,
    /// unless `kill`, which kills them first.
    fn remove(&self, name: &ProfileName, kill: bool) -> Result<Removed, CgroupError>;

    /// Puts a device filter on the profile's cgroup, replacing the one an
    /// earlier call put there, or with `None` takes it off. Where the host
    /// or the user cannot have one, says why instead of failing.
    fn filter_devices(
        &self,
        name: &ProfileName,
        policy: Option<&device::Policy>,
    ) -> Result<Isolation, CgroupError> {
        let _ = name;
        Ok(match policy {
            None => Isolation::None,
            Some(_) => Isolation::Environment {
                why: "this cgroup driver cannot filter devices".into(),
            },
        })
    }
}

/// What [`Driver::ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The cgroup was created now (rather than found).
    pub created: bool,
    /// Limits that could not be put in force, and why.
    pub shortfalls: Vec<Shortfall>,
}

/// What [`Driver::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The cgroup existed.
    pub existed: bool,
    /// The processes that were killed.
    pub killed: Vec<u32>,
}

/// How much of a cgroup's live state [`Driver::live`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The processes, the limit files (enough to tell drift), memory in
    /// use, `cpu.stat` and `memory.events`: one line of a table. Memory
    /// peak, swap, pressure and the device filter are left at their
    /// defaults (`None`, [`Isolation::None`]) without being read.
    Summary,
    /// Everything [`Live`] holds.
    Full,
}

/// A profile cgroup as the kernel reports it now. A field is `None` when
/// its file is missing (its controller is not enabled for the cgroup).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// The cgroup directory.
    pub path: PathBuf,
    /// Whether the directory exists.
    pub exists: bool,
    /// The processes inside.
    pub pids: Vec<u32>,
    /// `cpu.max`: quota and period.
    pub cpu_max: Option<(Limit<u64>, u64)>,
    /// `cpu.weight`.
    pub cpu_weight: Option<u64>,
    /// `cpuset.cpus`; empty means the parent's CPUs.
    pub cpuset_cpus: Option<CpuSet>,
    /// `cpuset.mems`; empty means the parent's memory nodes.
    pub cpuset_mems: Option<CpuSet>,
    /// `memory.current`.
    pub memory_current: Option<u64>,
    /// `memory.max`.
    pub memory_max: Option<Limit<Bytes>>,
    /// `memory.high`.
    pub memory_high: Option<Limit<Bytes>>,
    /// `cpu.stat`.
    pub cpu_stat: Option<CpuStat>,
    /// `memory.events`.
    pub memory_events: Option<MemoryEvents>,
    /// The device filter attached to the cgroup, as far as it can be read.
    pub isolation: Isolation,
    /// `memory.peak`.
    pub memory_peak: Option<u64>,
    /// `memory.swap.current`.
    pub swap_current: Option<u64>,
    /// `memory.swap.max`.
    pub swap_max: Option<Limit<Bytes>>,
    /// `cpu.pressure`.
    pub cpu_pressure: Option<Pressure>,
    /// `memory.pressure`.
    pub memory_pressure: Option<Pressure>,
    /// `io.pressure`.
    pub io_pressure: Option<Pressure>,
}

impl Live {
    /// The kernel files whose values differ from `limits`: empty when the
    /// profile is in force as stored.
    pub fn drift(&self, limits: &Limits) -> Vec<&'static str> {
        let mut drift = Vec::new();
        if !self.exists {
            return drift;
        }
        let want_cpu = (limits.cpu.value().map(|q| q.usec()), CPU_PERIOD_USEC);
        let have_cpu = self.cpu_max.map(|(q, p)| (q.value().copied(), p));
        if have_cpu != Some(want_cpu) {
            drift.push(files::CPU_MAX);
        }
        if self.cpu_weight != Some(u64::from(limits.cpu_weight.get())) {
            drift.push(files::CPU_WEIGHT);
        }
        if let Some(cpus) = &limits.cpus {
            if self.cpuset_cpus.as_ref() != Some(cpus) {
                drift.push(files::CPUSET_CPUS);
            }
        }
        if let Some(mems) = &limits.mems {
            if self.cpuset_mems.as_ref() != Some(mems) {
                drift.push(files::CPUSET_MEMS);
            }
        }
        if self.memory_max != Some(limits.memory_max) {
            drift.push(files::MEMORY_MAX);
        }
        if self.memory_high != Some(limits.memory_high) {
            drift.push(files::MEMORY_HIGH);
        }
        drift
    }
}

/// What went wrong in the cgroup layer.
#[derive(Debug, Error)]
pub enum CgroupError {
    /// This host has no place for profile cgroups.
    #[error("{0}")]
    Unavailable(Unavailable),
    /// A kernel file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a value.
    #[error("cannot write '{value}' to {path}{hint}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// What to try, if anything; starts with "; " when present.
        hint: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be created.
    #[error("cannot create the cgroup {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed.
    #[error("cannot remove the cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The process to move is gone.
    #[error("process {pid} no longer exists")]
    NoSuchProcess {
        /// The process id.
        pid: u32,
    },
    /// The kernel would not let this user move the process.
    #[error("not allowed to move process {pid} into {path}: a process can be moved only by its owner (or root), and without root only within one delegated subtree; run as root, or start the process inside your delegated subtree")]
    MoveDenied {
        /// The process id.
        pid: u32,
        /// The destination cgroup.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Processes are inside and killing was not asked for.
    #[error("the cgroup {path} still holds {} process(es) ({}): stop them first, or use --force to kill them", pids.len(), list(pids))]
    Busy {
        /// The directory.
        path: PathBuf,
        /// The processes inside.
        pids: Vec<u32>,
    },
    /// A device filter could not be put in force or taken off.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Processes outlived the kill.
    #[error("process(es) {} in {path} were still alive {secs}s after being killed: check for processes stuck in the kernel (state D in ps) and try again", list(pids))]
    KillTimeout {
        /// The directory.
        path: PathBuf,
        /// The survivors.
        pids: Vec<u32>,
        /// How long it waited.
        secs: u64,
    },
}

fn list(pids: &[u32]) -> String {
    let shown: Vec<String> = pids.iter().take(8).map(u32::to_string).collect();
    let more = pids.len().saturating_sub(8);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl CgroupError {
    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        let permission = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            )
        };
        match self {
            CgroupError::Unavailable(_) | CgroupError::MoveDenied { .. } => ErrorKind::Unsupported,
            CgroupError::NoSuchProcess { .. } => ErrorKind::NotFound,
            CgroupError::Device(e) => e.kind(),
            CgroupError::Busy { .. } => ErrorKind::Conflict,
            CgroupError::Write { source, .. }
            | CgroupError::Create { source, .. }
            | CgroupError::Remove { source, .. }
            | CgroupError::Read { source, .. }
                if permission(source) =>
            {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::Failure,
        }
    }
}
