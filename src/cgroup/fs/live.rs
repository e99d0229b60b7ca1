//! Reading a profile cgroup's live state.
//!
//! `status` without a name reads every profile's cgroup, so this is the
//! hot path of a large store: the directory is opened once and each file
//! is opened relative to it, which spares the kernel a walk of the whole
//! path per file; files are read without asking their size first
//! (cgroupfs reports 4096 or 0 for every file anyway), and a file of one
//! record is read with one call.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::super::files::*;
use super::super::stat;
use super::super::{CgroupError, Detail, Live};
use super::FsDriver;
use crate::cpuset::CpuSet;

/// A cgroup directory held open while its files are read.
struct OpenDir<'a> {
    fd: OwnedFd,
    path: &'a Path,
}

impl<'a> OpenDir<'a> {
    /// Opens `path`; `None` when there is no such directory.
    fn open(path: &'a Path) -> Result<Option<OpenDir<'a>>, CgroupError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(OpenDir { fd, path })),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(CgroupError::Read {
                path: path.to_path_buf(),
                source: e.into(),
            }),
        }
    }

    /// The text of `file`; `None` where it does not exist (its controller
    /// is not enabled) or, for pressure files, where PSI is turned off.
    fn read(&self, file: &str) -> Result<Option<String>, CgroupError> {
        let failed = |source: io::Error| CgroupError::Read {
            path: self.path.join(file),
            source,
        };
        let fd = match rustix::fs::openat(
            &self.fd,
            file,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(failed(e.into())),
        };
        match read_all(&fd, file != PROCS) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidData, e))),
            // With PSI disabled (`psi=0`) the pressure files exist but
            // reading them fails: that is "no figures", not an error.
            Err(Errno::OPNOTSUPP) => Ok(None),
            Err(e) => Err(failed(e.into())),
        }
    }

    /// `file` parsed as one number.
    fn number(&self, file: &str) -> Result<Option<u64>, CgroupError> {
        Ok(self.read(file)?.and_then(|t| t.trim().parse().ok()))
    }
}

/// Reads a file to its end, a page at a time.
///
/// Every cgroup interface file but the process and thread lists is one
/// record, which kernfs hands out whole to the first read that has room
/// for it and then ends; for those (`one_record`) a read that leaves room
/// in the page is the last, which saves a call per file. Lists of many
/// records can come back short before their end, so they are read until a
/// read returns nothing.
fn read_all(fd: &OwnedFd, one_record: bool) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut page = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut page) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&page[..n]);
                if one_record && n < page.len() {
                    return Ok(out);
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

impl FsDriver {
    /// The live state of the cgroup at `path`; see [`Detail`] for what
    /// each level reads.
    pub(super) fn read_live(&self, path: &Path, detail: Detail) -> Result<Live, CgroupError> {
        let Some(dir) = OpenDir::open(path)? else {
            return Ok(Live {
                path: path.to_path_buf(),
                ..Live::default()
            });
        };
        let mut live = Live {
            path: path.to_path_buf(),
            exists: true,
            pids: dir.read(PROCS)?.map_or_else(Vec::new, |t| stat::pids(&t)),
            cpu_max: dir.read(CPU_MAX)?.and_then(|t| stat::cpu_max(&t)),
            cpu_weight: dir.number(CPU_WEIGHT)?,
            memory_current: dir.number(MEMORY_CURRENT)?,
            memory_max: dir.read(MEMORY_MAX)?.and_then(|t| stat::byte_limit(&t)),
            memory_high: dir.read(MEMORY_HIGH)?.and_then(|t| stat::byte_limit(&t)),
            cpu_stat: dir.read(CPU_STAT)?.map(|t| stat::CpuStat::parse(&t)),
            memory_events: dir
                .read(MEMORY_EVENTS)?
                .map(|t| stat::MemoryEvents::parse(&t)),
            ..Live::default()
        };
        let cpuset = |file| -> Result<Option<CpuSet>, CgroupError> {
            Ok(dir.read(file)?.and_then(|t| CpuSet::parse(&t).ok()))
        };
        live.cpuset_cpus = cpuset(CPUSET_CPUS)?;
        live.cpuset_mems = cpuset(CPUSET_MEMS)?;
        if detail == Detail::Full {
            live.memory_peak = dir.number(MEMORY_PEAK)?;
            live.swap_current = dir.number(MEMORY_SWAP_CURRENT)?;
            live.swap_max = dir
                .read(MEMORY_SWAP_MAX)?
                .and_then(|t| stat::byte_limit(&t));
            let pressure = |file| -> Result<Option<stat::Pressure>, CgroupError> {
                Ok(dir.read(file)?.and_then(|t| stat::Pressure::parse(&t)))
            };
            live.cpu_pressure = pressure(CPU_PRESSURE)?;
            live.memory_pressure = pressure(MEMORY_PRESSURE)?;
            live.io_pressure = pressure(IO_PRESSURE)?;
            live.isolation = self.isolation(path);
        }
        Ok(live)
    }
}
