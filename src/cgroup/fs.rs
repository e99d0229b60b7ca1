//! The filesystem driver: profile cgroups as directories in cgroupfs,
//! limits as writes to their interface files.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use tracing::debug;

use super::device::{self, Isolation, Policy};
use super::files::*;
use super::host::{self, Base, Unavailable, DELEGATION_FIX};
use super::stat;
use super::{CgroupError, Detail, Driver, Ensured, Live, Removed};
use crate::cpuset::CpuSet;
use crate::plan::{Limits, ProfileName, CPU_PERIOD_USEC};
use crate::shortfall::Shortfall;
use crate::units::Limit;

/// The controllers enabled for `cortex.slice` and its profiles, when the
/// host offers them: cpu, memory and pids do the limiting; cpuset pins;
/// io is enabled so its statistics and later limits are there.
const WANTED: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// How long `remove` waits for killed processes to leave.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Profile cgroups as cgroupfs directories.
pub struct FsDriver {
    base: Result<Base, Unavailable>,
    uid: u32,
}

impl FsDriver {
    /// A driver for the cgroup2 mount at `root`, for the user `uid`, with
    /// procfs at `proc_root` (read to find a delegated subtree).
    pub fn new(root: &Path, proc_root: &Path, uid: u32) -> FsDriver {
        let base = host::locate(root, proc_root, uid);
        debug!(?base, "cgroup base");
        FsDriver { base, uid }
    }

    fn located(&self) -> Result<&Base, CgroupError> {
        self.base
            .as_ref()
            .map_err(|e| CgroupError::Unavailable(e.clone()))
    }

    fn dir(&self, name: &ProfileName) -> Result<PathBuf, CgroupError> {
        Ok(self.located()?.dir.join(SLICE).join(name.as_str()))
    }

    /// Why this driver cannot touch device filters on `dir`, if it cannot:
    /// `Some(None)` for a directory outside cgroupfs (a test tree, where no
    /// limit is enforced and a filter is not missed either).
    fn no_filters(&self, dir: &Path) -> Option<Option<String>> {
        if !is_cgroupfs(dir) {
            Some(None)
        } else if self.uid != 0 {
            Some(Some(format!(
                "cortex runs as uid {}, and only root can attach device filters",
                self.uid
            )))
        } else {
            None
        }
    }

    /// The device filter on `dir`, as far as this user can read it.
    fn isolation(&self, dir: &Path) -> Isolation {
        if let Some(why) = self.no_filters(dir) {
            return why.map_or(Isolation::None, |why| Isolation::Environment { why });
        }
        match device::installed(dir) {
            Ok(ids) => match ids.first() {
                Some(&program) => Isolation::Kernel { program },
                None => Isolation::Environment {
                    why: "no device filter is attached".into(),
                },
            },
            Err(e) => Isolation::Environment { why: e.to_string() },
        }
    }
}

impl Driver for FsDriver {
    fn base(&self) -> Result<&Base, &Unavailable> {
        self.base.as_ref()
    }

    fn path(&self, name: &ProfileName) -> Option<PathBuf> {
        self.dir(name).ok()
    }

    fn ensure(&self, name: &ProfileName, limits: &Limits) -> Result<Ensured, CgroupError> {
        let base = self.located()?;
        let enabled: Vec<&str> = WANTED
            .into_iter()
            .filter(|c| base.controllers.iter().any(|have| have == c))
            .collect();
        let shortfalls = missing_controllers(base, &enabled, limits);

        enable(&base.dir, &enabled)?;
        let slice = base.dir.join(SLICE);
        make_dir(&slice)?;
        enable(&slice, &enabled)?;
        let dir = slice.join(name.as_str());
        let created = make_dir(&dir)?;
        if let Err(e) = write_limits(&dir, limits, &enabled) {
            if created {
                if let Err(undo) = std::fs::remove_dir(&dir) {
                    debug!(path = %dir.display(), %undo, "could not remove the half-made cgroup");
                }
            }
            return Err(e);
        }
        Ok(Ensured {
            created,
            shortfalls,
        })
    }

    fn existing(
        &self,
        name: &ProfileName,
        limits: &Limits,
    ) -> Result<Option<Ensured>, CgroupError> {
        let base = self.located()?;
        let dir = self.dir(name)?;
        if !dir.is_dir() {
            return Ok(None);
        }
        let enabled: Vec<&str> = WANTED
            .into_iter()
            .filter(|c| base.controllers.iter().any(|have| have == c))
            .collect();
        Ok(Some(Ensured {
            created: false,
            shortfalls: missing_controllers(base, &enabled, limits),
        }))
    }

    fn present(&self) -> Result<Option<HashSet<String>>, CgroupError> {
        let Ok(base) = &self.base else {
            return Ok(Some(HashSet::new()));
        };
        let slice = base.dir.join(SLICE);
        let entries = match std::fs::read_dir(&slice) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(HashSet::new())),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: slice,
                    source,
                })
            }
        };
        let mut names = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::Read {
                path: slice.clone(),
                source,
            })?;
            // The entry's type comes with the listing: no stat per profile.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Ok(name) = entry.file_name().into_string() {
                    names.insert(name);
                }
            }
        }
        Ok(Some(names))
    }

    fn attach(&self, name: &ProfileName, pid: u32) -> Result<(), CgroupError> {
        let procs = self.dir(name)?.join(PROCS);
        write(&procs, &pid.to_string()).map_err(|e| match e {
            CgroupError::Write { source, path, .. } => match source.raw_os_error() {
                Some(libc::ESRCH) => CgroupError::NoSuchProcess { pid },
                Some(libc::EACCES | libc::EPERM) => CgroupError::MoveDenied {
                    pid,
                    path: path.parent().map(Path::to_path_buf).unwrap_or(path),
                    source,
                },
                _ => CgroupError::Write {
                    path,
                    value: pid.to_string(),
                    hint:
                        "; a kernel thread or a process of another cgroup namespace cannot be moved"
                            .into(),
                    source,
                },
            },
            other => other,
        })
    }

    fn live(&self, name: &ProfileName, detail: Detail) -> Result<Live, CgroupError> {
        self.read_live(&self.dir(name)?, detail)
    }

    fn filter_devices(
        &self,
        name: &ProfileName,
        policy: Option<&Policy>,
    ) -> Result<Isolation, CgroupError> {
        let dir = self.dir(name)?;
        if let Some(why) = self.no_filters(&dir) {
            return Ok(match (policy, why) {
                (Some(_), Some(why)) => Isolation::Environment { why },
                _ => Isolation::None,
            });
        }
        let Some(policy) = policy else {
            match device::uninstall(&dir) {
                Ok(removed) => debug!(path = %dir.display(), ?removed, "no device filter wanted"),
                Err(e) if e.is_unsupported() => debug!(%e, "no device filter to take off"),
                Err(e) => return Err(e.into()),
            }
            return Ok(Isolation::None);
        };
        match device::install(&dir, policy) {
            Ok(installed) => {
                debug!(path = %dir.display(), ?installed, %policy, "device filter in force");
                Ok(Isolation::Kernel {
                    program: installed.id,
                })
            }
            Err(e) if e.is_unsupported() => Ok(Isolation::Environment { why: e.to_string() }),
            Err(e) => Err(e.into()),
        }
    }

    fn remove(&self, name: &ProfileName, kill: bool) -> Result<Removed, CgroupError> {
        let dir = self.dir(name)?;
        if !dir.is_dir() {
            return Ok(Removed {
                existed: false,
                killed: Vec::new(),
            });
        }
        let procs = dir.join(PROCS);
        let pids = read_pids(&procs)?;
        if !pids.is_empty() {
            if !kill {
                return Err(CgroupError::Busy { path: dir, pids });
            }
            kill_all(&dir, &pids)?;
            wait_empty(&dir)?;
        }
        // The kernel frees a removed cgroup's programs by itself, but only
        // once the last reference to the cgroup is gone; detaching first
        // makes sure nothing of ours outlives the profile.
        if self.no_filters(&dir).is_none() {
            match device::uninstall(&dir) {
                Ok(_) => {}
                Err(e) if e.is_unsupported() => debug!(%e, "no device filter to take off"),
                Err(e) => return Err(e.into()),
            }
        }
        remove_dir(&dir)?;
        Ok(Removed {
            existed: true,
            killed: pids,
        })
    }
}

/// Shortfalls for limits whose controller the base does not offer.
fn missing_controllers(base: &Base, enabled: &[&str], limits: &Limits) -> Vec<Shortfall> {
    let mut needed = vec![
        ("cpu", "cpu.max and cpu.weight"),
        ("memory", "memory.max and memory.high"),
    ];
    if limits.cpus.is_some() || limits.mems.is_some() {
        needed.push(("cpuset", "cpuset.cpus"));
    }
    needed
        .into_iter()
        .filter(|(controller, _)| !enabled.contains(controller))
        .map(|(controller, what)| {
            let at = base.dir.display();
            match base.delegated_to {
                Some(uid) => Shortfall::new(
                    what,
                    format!("the {controller} controller is not delegated to uid {uid} ({at})"),
                )
                .fix(format!("enable delegation {DELEGATION_FIX}")),
                None => Shortfall::new(
                    what,
                    format!("the {controller} controller is not available in {at}/{CONTROLLERS}"),
                )
                .fix(format!(
                    "free it from cgroup v1 (boot with cgroup_no_v1={controller}) or check the kernel configuration"
                )),
            }
        })
        .collect()
}

/// Enables controllers for the children of `dir`, skipping those already
/// on, one write per controller so a refusal names the one refused.
fn enable(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join(SUBTREE_CONTROL);
    let on = read_optional(&file)?.map_or_else(Vec::new, |t| stat::controllers(&t));
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| !on.iter().any(|have| have == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // All at once first: on a fake tree this leaves one readable line, and
    // on the kernel it is one call. Only a refusal needs the slow path.
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if write(&file, &all.join(" ")).is_ok() {
        return Ok(());
    }
    for controller in missing {
        write(&file, &format!("+{controller}")).map_err(|e| match e {
            CgroupError::Write {
                path,
                value,
                source,
                ..
            } => {
                let hint = if source.raw_os_error() == Some(libc::EBUSY) {
                    "; the cgroup has processes of its own, and controllers can be enabled only \
                     for cgroups whose processes live in child cgroups: move them into a child"
                } else {
                    ""
                };
                CgroupError::Write {
                    path,
                    value,
                    hint: hint.to_string(),
                    source,
                }
            }
            other => other,
        })?;
    }
    Ok(())
}

fn write_limits(dir: &Path, limits: &Limits, enabled: &[&str]) -> Result<(), CgroupError> {
    let on = |c: &str| enabled.contains(&c);
    if on("cpu") {
        let quota = match limits.cpu {
            Limit::Max => "max".to_string(),
            Limit::Value(q) => q.usec().to_string(),
        };
        write(&dir.join(CPU_MAX), &format!("{quota} {CPU_PERIOD_USEC}"))?;
        write(&dir.join(CPU_WEIGHT), &limits.cpu_weight.get().to_string())?;
    }
    if on("memory") {
        write(&dir.join(MEMORY_MAX), &kernel_bytes(limits.memory_max))?;
        write(&dir.join(MEMORY_HIGH), &kernel_bytes(limits.memory_high))?;
    }
    if on("cpuset") {
        // An empty list hands the parent's CPUs down again, which is what a
        // profile without --cpus means.
        let cpus = limits
            .cpus
            .as_ref()
            .map(CpuSet::to_string)
            .unwrap_or_default();
        write(&dir.join(CPUSET_CPUS), &cpus).map_err(|e| match e {
            CgroupError::Write {
                path,
                value,
                source,
                ..
            } if source.raw_os_error() == Some(libc::EINVAL) => CgroupError::Write {
                path,
                value,
                hint: "; name CPUs that exist and are online (see /sys/devices/system/cpu/online)"
                    .into(),
                source,
            },
            other => other,
        })?;
        // GPU placement pins memory to the GPUs' NUMA nodes; empty hands
        // the parent's nodes down again.
        let mems = limits
            .mems
            .as_ref()
            .map(CpuSet::to_string)
            .unwrap_or_default();
        write(&dir.join(CPUSET_MEMS), &mems)?;
    }
    Ok(())
}

fn kernel_bytes(limit: Limit<crate::units::Bytes>) -> String {
    match limit {
        Limit::Max => "max".to_string(),
        Limit::Value(b) => b.0.to_string(),
    }
}

/// Creates a directory; whether it was created now.
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Writes a value the way the kernel wants it: one `write(2)` call.
fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    use std::io::Write;
    debug!(path = %path.display(), value, "write");
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        hint: String::new(),
        source,
    })
}

/// Reads a file; `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_pids(procs: &Path) -> Result<Vec<u32>, CgroupError> {
    Ok(read_optional(procs)?.map_or_else(Vec::new, |t| stat::pids(&t)))
}

/// Kills everything in the cgroup: through `cgroup.kill` where the kernel
/// has it (5.14+), which also catches processes forked meanwhile; by
/// signalling each process otherwise.
fn kill_all(dir: &Path, pids: &[u32]) -> Result<(), CgroupError> {
    let kill_file = dir.join(KILL);
    if kill_file.exists() {
        return write(&kill_file, "1");
    }
    debug!(path = %dir.display(), "no cgroup.kill: signalling each process");
    for &pid in pids {
        let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
            continue;
        };
        // A process that exited meanwhile is what we want anyway.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::Kill);
    }
    Ok(())
}

/// Waits until no process is left in the cgroup.
fn wait_empty(dir: &Path) -> Result<(), CgroupError> {
    let procs = dir.join(PROCS);
    let events = dir.join(EVENTS);
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let populated = match read_optional(&events)? {
            Some(text) => stat::populated(&text).unwrap_or(true),
            None => !read_pids(&procs)?.is_empty(),
        };
        if !populated {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::KillTimeout {
                path: dir.to_path_buf(),
                pids: read_pids(&procs)?,
                secs: KILL_WAIT.as_secs(),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Removes a cgroup directory. The kernel refuses (EBUSY) for a moment
/// after the last process left while it is still being torn down, so that
/// is retried. On a plain directory (a test tree) the interface files are
/// removed first, as cgroupfs does by itself.
fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !is_cgroupfs(dir) => {
                std::fs::remove_dir_all(dir).map_err(|source| CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })?;
                return Ok(());
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Whether `path` is on a cgroup2 filesystem.
// `f_type` is i64 on x86_64 but narrower on other targets.
#[allow(clippy::useless_conversion)]
fn is_cgroupfs(path: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    rustix::fs::statfs(path)
        .map(|s| i64::from(s.f_type) == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

mod live;
#[cfg(test)]
mod tests;
