//! Loading a device program and attaching it to a cgroup with `bpf(2)`.
//!
//! Programs are attached with `BPF_F_ALLOW_MULTI`, the mode systemd uses
//! too: the kernel then runs every program from the cgroup up to the root
//! and allows an access only if all of them do, so a filter here can only
//! narrow what an ancestor allows. Multi mode also stacks a second attach
//! on the first, so an update swaps the old program for the new one in
//! one step with `BPF_F_REPLACE` (Linux 5.6), and on older kernels attaches
//! the new one before detaching the old, so that no moment is unfiltered.
//! The program is named [`PROGRAM_NAME`]; only programs of that name are
//! replaced or detached.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use tracing::debug;

use super::{DeviceError, Policy, Program};

/// The name the kernel shows for programs loaded here (at most 15 bytes).
pub const PROGRAM_NAME: &str = "cortex_devices";

/// `bpf(2)` commands.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
const BPF_F_REPLACE: u32 = 1 << 2;

/// How much verifier log to keep when a load fails.
const LOG_SIZE: usize = 64 * 1024;
/// More programs than this on one cgroup is not something cortex made.
const MAX_QUERY: usize = 64;

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: u32,
}

/// `union bpf_attr` for `BPF_PROG_QUERY`, without the newer fields.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`, up to the name.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// Calls `bpf(2)`, returning the non-negative result.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` prefix of `union
    // bpf_attr` for `cmd`, and the size passed is its size; pointers inside
    // it point to buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor to us alone.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

/// Kernels before 5.11 charge BPF memory to `RLIMIT_MEMLOCK`, whose default
/// (64 KiB on many distributions) is too small for a program. Raising it is
/// harmless where it is no longer read; a failure is left for the load to
/// report.
pub fn raise_memlock() {
    let infinity = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct passed and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &infinity) } != 0 {
        debug!(error = %io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}

/// A program loaded into the kernel, kept alive by its descriptor until it
/// is attached.
#[derive(Debug)]
pub struct Loaded {
    fd: OwnedFd,
    /// The kernel's id for the program.
    pub id: u32,
}

/// Loads a program; on a refusal, loads it again with the verifier's log on
/// to say why.
pub fn load(program: &Program) -> Result<Loaded, DeviceError> {
    raise_memlock();
    let bytes = program.bytes();
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    let attr = |log: &mut Vec<u8>| LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: bytes.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        ..LoadAttr::default()
    };

    let first = bpf(BPF_PROG_LOAD, &mut attr(&mut Vec::new()));
    let error = match first {
        Ok(fd) => return loaded(owned_fd(fd)),
        Err(e) => e,
    };
    match error.raw_os_error() {
        Some(libc::ENOSYS) => return Err(DeviceError::NoBpf),
        Some(libc::EPERM) => {
            return Err(DeviceError::Permission {
                op: "loading",
                source: error,
            })
        }
        _ => {}
    }

    let mut log = vec![0u8; LOG_SIZE];
    let again = bpf(BPF_PROG_LOAD, &mut attr(&mut log));
    if let Ok(fd) = again {
        debug!("the program loaded on the second try");
        return loaded(owned_fd(fd));
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end])
        .trim()
        .replace('\n', "; ");
    // An unknown program type is refused before the verifier writes a line.
    if log.is_empty() && error.raw_os_error() == Some(libc::EINVAL) {
        return Err(DeviceError::NoCgroupBpf { source: error });
    }
    Err(DeviceError::Rejected { log, source: error })
}

fn loaded(fd: OwnedFd) -> Result<Loaded, DeviceError> {
    let (id, _) = info(&fd).map_err(|source| DeviceError::Permission {
        op: "reading",
        source,
    })?;
    Ok(Loaded { fd, id })
}

/// A program's id and name.
fn info(fd: &OwnedFd) -> io::Result<(u32, String)> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok((info.id, String::from_utf8_lossy(&info.name[..end]).into()))
}

/// A program attached to a cgroup, opened by id.
struct Attached {
    id: u32,
    fd: OwnedFd,
}

/// The cgroup's directory, open for `bpf(2)`.
struct Cgroup {
    path: PathBuf,
    dir: File,
}

impl Cgroup {
    fn open(path: &Path) -> Result<Cgroup, DeviceError> {
        let dir = File::open(path).map_err(|source| DeviceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Cgroup {
            path: path.to_path_buf(),
            dir,
        })
    }

    fn error(&self, op: &'static str, source: io::Error) -> DeviceError {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) if op == "query" => DeviceError::Permission {
                op: "reading",
                source,
            },
            Some(libc::ENOSYS) => DeviceError::NoBpf,
            Some(libc::EPERM) => DeviceError::Kernel {
                op,
                path: self.path.clone(),
                hint: "; an ancestor cgroup may hold a device program that allows no \
                       other (attached without BPF_F_ALLOW_MULTI): see bpftool cgroup tree"
                    .into(),
                source,
            },
            _ => DeviceError::Kernel {
                op,
                path: self.path.clone(),
                hint: String::new(),
                source,
            },
        }
    }

    /// The ids of the device programs attached to this cgroup itself.
    fn query(&self) -> Result<Vec<u32>, DeviceError> {
        let mut ids = [0u32; MAX_QUERY];
        let mut attr = QueryAttr {
            target_fd: self.dir.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: MAX_QUERY as u32,
            ..QueryAttr::default()
        };
        bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| self.error("query", e))?;
        Ok(ids[..(attr.prog_cnt as usize).min(MAX_QUERY)].to_vec())
    }

    /// The programs attached here that cortex loaded.
    fn ours(&self) -> Result<Vec<Attached>, DeviceError> {
        let mut ours = Vec::new();
        for id in self.query()? {
            let mut attr = GetFdAttr {
                prog_id: id,
                ..GetFdAttr::default()
            };
            let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
                Ok(fd) => owned_fd(fd),
                // Detached and freed since the query.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(self.error("query", e)),
            };
            let (_, name) = info(&fd).map_err(|e| self.error("query", e))?;
            if name == PROGRAM_NAME {
                ours.push(Attached { id, fd });
            } else {
                debug!(id, name, path = %self.path.display(), "leaving a device program that is not ours");
            }
        }
        Ok(ours)
    }

    fn attach(&self, program: &Loaded, replace: Option<&Attached>) -> io::Result<()> {
        let mut attr = AttachAttr {
            target_fd: self.dir.as_raw_fd() as u32,
            attach_bpf_fd: program.fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            ..AttachAttr::default()
        };
        if let Some(old) = replace {
            attr.attach_flags |= BPF_F_REPLACE;
            attr.replace_bpf_fd = old.fd.as_raw_fd() as u32;
        }
        bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
    }

    fn detach(&self, program: &Attached) -> Result<(), DeviceError> {
        let mut attr = AttachAttr {
            target_fd: self.dir.as_raw_fd() as u32,
            attach_bpf_fd: program.fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..AttachAttr::default()
        };
        match bpf(BPF_PROG_DETACH, &mut attr) {
            Ok(_) => Ok(()),
            // Someone detached it meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(self.error("detach", e)),
        }
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The id of the program now attached.
    pub id: u32,
    /// The ids of the programs it took the place of.
    pub replaced: Vec<u32>,
}

/// Puts `policy` in force on the cgroup at `path`, replacing the program an
/// earlier call attached.
pub fn install(path: &Path, policy: &Policy) -> Result<Installed, DeviceError> {
    let cgroup = Cgroup::open(path)?;
    let program = load(&Program::assemble(policy))?;
    let old = cgroup.ours()?;
    debug!(id = program.id, path = %path.display(), replacing = ?old.iter().map(|a| a.id).collect::<Vec<_>>(), "attaching the device program");

    let mut rest = old.iter();
    match rest.next() {
        None => cgroup
            .attach(&program, None)
            .map_err(|e| cgroup.error("attach", e))?,
        Some(first) => match cgroup.attach(&program, Some(first)) {
            Ok(()) => {}
            // No BPF_F_REPLACE before 5.6: stack, then take the old one off.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                debug!("no BPF_F_REPLACE: attaching beside the old program");
                cgroup
                    .attach(&program, None)
                    .map_err(|e| cgroup.error("attach", e))?;
                cgroup.detach(first)?;
            }
            Err(e) => return Err(cgroup.error("replace", e)),
        },
    }
    for extra in rest {
        cgroup.detach(extra)?;
    }
    Ok(Installed {
        id: program.id,
        replaced: old.iter().map(|a| a.id).collect(),
    })
}

/// Detaches every program of ours from the cgroup at `path`; their ids.
pub fn uninstall(path: &Path) -> Result<Vec<u32>, DeviceError> {
    let cgroup = Cgroup::open(path)?;
    let ours = cgroup.ours()?;
    for program in &ours {
        cgroup.detach(program)?;
    }
    Ok(ours.iter().map(|a| a.id).collect())
}

/// The ids of the programs of ours attached to the cgroup at `path`.
pub fn installed(path: &Path) -> Result<Vec<u32>, DeviceError> {
    Ok(Cgroup::open(path)?.ours()?.iter().map(|a| a.id).collect())
}

/// Whether a program with this id is still loaded anywhere (needs root).
pub fn exists(id: u32) -> io::Result<bool> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..GetFdAttr::default()
    };
    match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => {
            drop(owned_fd(fd));
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
