//! Processes: finding one by pid without being fooled by pid reuse, and
//! setting its OOM priority.
//!
//! A pid names a process only until it exits; the number can then be
//! handed to a new process. A [`Target`] holds a pidfd, which always names
//! the process it was opened for, and the process's start time, so after
//! moving "pid N" we can tell whether N was still the same process.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::event::{poll, PollFd, PollFlags};
use thiserror::Error;

use crate::cpuset::CpuSet;
use crate::error::ErrorKind;
use crate::plan::OomScoreAdj;

/// `CAP_SYS_RESOURCE`: needed to lower an OOM score adjustment.
const CAP_SYS_RESOURCE: u32 = 24;
/// `CAP_SYS_ADMIN`: loads BPF programs on kernels before 5.8.
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF`: loads BPF programs (Linux 5.8 and later).
const CAP_BPF: u32 = 39;

/// What went wrong with a process.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// No process has this id.
    #[error("no process with pid {pid}: check the number (ps -p {pid})")]
    NoSuchProcess {
        /// The pid.
        pid: u32,
    },
    /// A pid that must not be moved.
    #[error("refusing to move pid {pid}: {why}")]
    Refused {
        /// The pid.
        pid: u32,
        /// Why.
        why: &'static str,
    },
    /// The process ended, or its pid went to another process, mid-way.
    #[error("process {pid} exited while it was being applied{}", if *.reused { ", and its pid now names another process" } else { "" })]
    Vanished {
        /// The pid.
        pid: u32,
        /// Whether another process took the pid meanwhile.
        reused: bool,
    },
    /// Reading procfs failed.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the OOM adjustment.
    #[error("cannot write '{value}' to {path}")]
    OomWrite {
        /// The file.
        path: PathBuf,
        /// The value.
        value: i16,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The CPU affinity could not be set.
    #[error("cannot pin this process to CPUs {cpus}")]
    Affinity {
        /// The CPU list.
        cpus: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A pidfd could not be opened.
    #[error("cannot open a pidfd for process {pid} (Linux 5.3 or later is needed)")]
    Pidfd {
        /// The pid.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProcessError::NoSuchProcess { .. } | ProcessError::Vanished { .. } => {
                ErrorKind::NotFound
            }
            ProcessError::Refused { .. } => ErrorKind::BadInput,
            ProcessError::OomWrite { source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::Failure,
        }
    }

    /// Whether this is the kernel refusing for lack of privilege.
    pub fn is_permission(&self) -> bool {
        matches!(self, ProcessError::OomWrite { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)))
    }
}

/// A process pinned down by a pidfd and its start time.
#[derive(Debug)]
pub struct Target {
    pid: u32,
    start_time: u64,
    pidfd: OwnedFd,
}

impl Target {
    /// Finds the process with this pid.
    pub fn open(proc_root: &Path, pid: u32) -> Result<Target, ProcessError> {
        if pid == 1 {
            return Err(ProcessError::Refused {
                pid,
                why: "it is init, and every other process would follow it",
            });
        }
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or(ProcessError::NoSuchProcess { pid })?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
            .map_err(|e| match e {
                rustix::io::Errno::SRCH => ProcessError::NoSuchProcess { pid },
                e => ProcessError::Pidfd {
                    pid,
                    source: e.into(),
                },
            })?;
        // Read the start time only now that the pidfd holds the process:
        // if it is still alive afterwards, the start time is its own.
        let start_time = start_time(proc_root, pid)?;
        let target = Target {
            pid,
            start_time,
            pidfd,
        };
        if target.exited() {
            return Err(ProcessError::NoSuchProcess { pid });
        }
        Ok(target)
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The start time, in clock ticks since boot.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Checks that the pid still names this process: it has not exited,
    /// and the pid's start time is unchanged.
    pub fn verify(&self, proc_root: &Path) -> Result<(), ProcessError> {
        let now = start_time(proc_root, self.pid).ok();
        if self.exited() || now != Some(self.start_time) {
            return Err(ProcessError::Vanished {
                pid: self.pid,
                reused: now.is_some_and(|t| t != self.start_time),
            });
        }
        Ok(())
    }

    /// A pidfd polls readable once its process has exited.
    fn exited(&self) -> bool {
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        matches!(poll(&mut fds, 0), Ok(n) if n > 0)
    }
}

/// The start time of a process (field 22 of `/proc/PID/stat`).
pub fn start_time(proc_root: &Path, pid: u32) -> Result<u64, ProcessError> {
    let path = proc_root.join(pid.to_string()).join("stat");
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ProcessError::NoSuchProcess { pid },
        _ => ProcessError::Read {
            path: path.clone(),
            source,
        },
    })?;
    parse_start_time(&text).ok_or_else(|| ProcessError::Read {
        path,
        source: io::Error::new(io::ErrorKind::InvalidData, "no start time in the stat line"),
    })
}

/// Field 22 of a stat line. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so counting starts after
/// the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is the 20th of them.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Writes a process's `oom_score_adj`.
pub fn set_oom_score_adj(proc_root: &Path, pid: u32, adj: OomScoreAdj) -> Result<(), ProcessError> {
    let path = proc_root.join(pid.to_string()).join("oom_score_adj");
    std::fs::write(&path, adj.get().to_string()).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ProcessError::NoSuchProcess { pid },
        _ => ProcessError::OomWrite {
            path,
            value: adj.get(),
            source,
        },
    })
}

/// Pins this process (and what it execs) to `cpus`.
pub fn pin_self(cpus: &CpuSet) -> Result<(), ProcessError> {
    let mut set = rustix::process::CpuSet::new();
    for cpu in cpus.iter() {
        let cpu = cpu as usize;
        if cpu >= rustix::process::CpuSet::MAX_CPU {
            break;
        }
        set.set(cpu);
    }
    rustix::process::sched_setaffinity(None, &set).map_err(|e| ProcessError::Affinity {
        cpus: cpus.to_string(),
        source: e.into(),
    })
}

/// Pins every thread of a running process to `cpus`: affinity is per
/// thread, so each one under `/proc/PID/task` is set. Threads started
/// later inherit it from the thread that starts them.
pub fn pin_threads(proc_root: &Path, pid: u32, cpus: &CpuSet) -> Result<(), ProcessError> {
    let mut set = rustix::process::CpuSet::new();
    for cpu in cpus.iter().map(|c| c as usize) {
        if cpu < rustix::process::CpuSet::MAX_CPU {
            set.set(cpu);
        }
    }
    let tasks = proc_root.join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(&tasks).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ProcessError::NoSuchProcess { pid },
        _ => ProcessError::Read {
            path: tasks.clone(),
            source,
        },
    })?;
    for tid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Some(tid) = rustix::process::Pid::from_raw(tid) else {
            continue;
        };
        match rustix::process::sched_setaffinity(Some(tid), &set) {
            // A thread that exited meanwhile needs no pinning.
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                return Err(ProcessError::Affinity {
                    cpus: cpus.to_string(),
                    source: e.into(),
                })
            }
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Replaces this process with `program`, with `vars` added to the
/// environment. Returns only on failure.
pub fn exec(program: &OsStr, args: &[OsString], vars: &[(&str, &str)]) -> ExecError {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(program);
    command.args(args).envs(vars.iter().copied());
    let source = command.exec();
    match source.kind() {
        io::ErrorKind::NotFound => ExecError::NotFound {
            program: program.to_string_lossy().into_owned(),
            source,
        },
        _ => ExecError::NotExecutable {
            program: program.to_string_lossy().into_owned(),
            source,
        },
    }
}

/// Why a command could not be started.
#[derive(Debug, Error)]
pub enum ExecError {
    /// No such file on the PATH or at the path given.
    #[error("command not found: {program}")]
    NotFound {
        /// The command.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Found, but the kernel would not execute it.
    #[error("cannot execute {program}")]
    NotExecutable {
        /// The command.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ExecError {
    /// The shell's conventional exit status: 127 for not found, 126 for
    /// found but not executable.
    pub fn status(&self) -> u8 {
        match self {
            ExecError::NotFound { .. } => 127,
            ExecError::NotExecutable { .. } => 126,
        }
    }
}

/// Whether this process may lower OOM adjustments (has
/// `CAP_SYS_RESOURCE` in its effective set).
pub fn may_lower_oom(proc_root: &Path) -> bool {
    has_capability(proc_root, CAP_SYS_RESOURCE)
}

/// Whether this process may load BPF programs (`CAP_BPF`, or
/// `CAP_SYS_ADMIN` which covers it on every kernel).
pub fn may_load_bpf(proc_root: &Path) -> bool {
    has_capability(proc_root, CAP_BPF) || has_capability(proc_root, CAP_SYS_ADMIN)
}

fn has_capability(proc_root: &Path, cap: u32) -> bool {
    std::fs::read_to_string(proc_root.join("self/status"))
        .ok()
        .and_then(|s| effective_caps(&s))
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// The `CapEff` mask of a status file.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let plain = "4242 (sleep) S 1 4242 4242 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 \
                     8723451 2330624 192 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(parse_start_time(plain), Some(8_723_451));
        let odd = "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_start_time(odd), Some(99));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn capability_mask() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffff));
        assert!(effective_caps(status).unwrap() & (1 << CAP_SYS_RESOURCE) != 0);
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(effective_caps(user), Some(0));
    }

    #[test]
    fn a_live_child_is_found_and_verified() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let proc_root = Path::new("/proc");
        let target = Target::open(proc_root, child.id()).unwrap();
        assert_eq!(target.pid(), child.id());
        target.verify(proc_root).unwrap();

        child.kill().unwrap();
        child.wait().unwrap();
        let err = target.verify(proc_root).unwrap_err();
        assert!(
            matches!(err, ProcessError::Vanished { reused: false, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_pid_is_not_found() {
        // Pids above the kernel's limit (at most 2^22) never exist.
        let err = Target::open(Path::new("/proc"), 5_000_000).unwrap_err();
        assert!(
            matches!(err, ProcessError::NoSuchProcess { pid: 5_000_000 }),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = Target::open(Path::new("/proc"), 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
    }

    #[test]
    fn oom_adjustment_of_a_child_reads_back() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let proc_root = Path::new("/proc");
        let adj = OomScoreAdj::new(300).unwrap();
        set_oom_score_adj(proc_root, child.id(), adj).unwrap();
        let back = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", child.id())).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(back.trim(), "300");
    }

    #[test]
    fn pin_threads_sets_every_thread_of_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mine = rustix::process::sched_getaffinity(None).unwrap();
        let first = (0..rustix::process::CpuSet::MAX_CPU)
            .find(|&c| mine.is_set(c))
            .unwrap() as u32;
        let result = pin_threads(Path::new("/proc"), pid, &[first].into_iter().collect());
        let theirs = rustix::process::sched_getaffinity(rustix::process::Pid::from_raw(pid as i32));
        child.kill().unwrap();
        child.wait().unwrap();
        result.unwrap();
        let theirs = theirs.unwrap();
        assert_eq!(theirs.count(), 1);
        assert!(theirs.is_set(first as usize));

        let err = pin_threads(Path::new("/proc"), u32::MAX - 1, &[0].into_iter().collect());
        assert!(
            matches!(err, Err(ProcessError::NoSuchProcess { .. })),
            "{err:?}"
        );
    }
}
