//! `doctor`: what this host and this user can enforce, each check as ok,
//! warn or fail, with the fix where there is one.
//!
//! Facts about cgroupfs come from the cgroup layer; this module only
//! weighs them and reads the few other things a check needs (procfs
//! capabilities, driver and device nodes, the database path).

use std::path::{Path, PathBuf};

use crate::cgroup::host::{self, Hierarchy, Unavailable, DELEGATION_FIX};
use crate::process;
use crate::store::Store;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Works.
    Ok,
    /// Works in part; something is degraded.
    Warn,
    /// Does not work.
    Fail,
}

impl Level {
    /// The word printed for it.
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, one word.
    pub name: &'static str,
    /// How it came out.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, level: Level, detail: impl Into<String>) -> Check {
        Check {
            name,
            level,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Where doctor looks.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The cgroup2 mount.
    pub cgroup: PathBuf,
    /// procfs.
    pub proc: PathBuf,
    /// Where GPU drivers are looked for: `proc/driver/nvidia` and `dev/`
    /// under it (`/` on a real host, as for GPU discovery).
    pub accel: PathBuf,
    /// The database file.
    pub db: PathBuf,
}

/// The controllers limits are written through.
const REQUIRED: [&str; 3] = ["cpu", "memory", "pids"];
/// The controllers that add pinning and I/O figures.
const OPTIONAL: [&str; 2] = ["cpuset", "io"];

/// Runs every check for the user `uid`.
pub fn run(roots: &Roots, uid: u32) -> Vec<Check> {
    let mut checks = vec![hierarchy(&roots.cgroup)];
    match host::locate(&roots.cgroup, &roots.proc, uid) {
        Ok(base) => {
            let where_ = match base.delegated_to {
                None => format!(
                    "running as root: profiles go under {}/cortex.slice",
                    base.dir.display()
                ),
                Some(uid) => format!("subtree delegated to uid {uid}: {}", base.dir.display()),
            };
            checks.push(Check::new("delegation", Level::Ok, where_));
            checks.push(controllers(&base.controllers, base.delegated_to.is_some()));
            checks.push(if host::writable(&base.dir) {
                Check::new(
                    "write",
                    Level::Ok,
                    format!("may create cgroups in {}", base.dir.display()),
                )
            } else {
                Check::new(
                    "write",
                    Level::Fail,
                    format!("cannot write {}", base.dir.display()),
                )
                .fix("run as root, or as the user the subtree is delegated to")
            });
        }
        Err(Unavailable::NoDelegation { uid, looked }) => {
            let why = Unavailable::NoDelegation { uid, looked };
            checks.push(
                Check::new("delegation", Level::Fail, why.to_string()).fix(format!(
                    "run as root, or enable delegation {DELEGATION_FIX}"
                )),
            );
        }
        // The hierarchy check already says what is wrong.
        Err(_) => {}
    }
    checks.push(oom(&roots.proc));
    checks.push(bpf(&roots.proc));
    checks.extend(gpus(&roots.accel.join("proc"), &roots.accel.join("dev")));
    checks.push(database(&roots.db));
    checks
}

fn hierarchy(root: &Path) -> Check {
    match host::detect(root) {
        Hierarchy::Unified { controllers } if !controllers.is_empty() => Check::new(
            "cgroup",
            Level::Ok,
            format!("cgroup v2 (unified) at {}: {}", root.display(), controllers.join(" ")),
        ),
        Hierarchy::Unified { .. } => Check::new(
            "cgroup",
            Level::Fail,
            Unavailable::NoControllers { root: root.into() }.to_string(),
        ),
        Hierarchy::Hybrid => Check::new(
            "cgroup",
            Level::Fail,
            Unavailable::Hybrid { root: root.into() }.to_string(),
        )
        .fix("boot with systemd.unified_cgroup_hierarchy=1; until then profiles are stored, not enforced"),
        Hierarchy::Legacy => Check::new(
            "cgroup",
            Level::Fail,
            Unavailable::Legacy { root: root.into() }.to_string(),
        )
        .fix("boot with systemd.unified_cgroup_hierarchy=1"),
        Hierarchy::Absent => Check::new(
            "cgroup",
            Level::Fail,
            Unavailable::Absent { root: root.into() }.to_string(),
        )
        .fix(format!("mount -t cgroup2 none {}", root.display())),
    }
}

fn controllers(have: &[String], delegated: bool) -> Check {
    let missing = |list: &[&'static str]| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect()
    };
    let (required, optional) = (missing(&REQUIRED), missing(&OPTIONAL));
    let fix = if delegated {
        format!("enable delegation {DELEGATION_FIX}")
    } else {
        "check that the kernel has them and that no cgroup v1 hierarchy holds them".to_string()
    };
    if !required.is_empty() {
        Check::new(
            "controllers",
            Level::Fail,
            format!(
                "missing {}: those limits cannot be enforced",
                required.join(" ")
            ),
        )
        .fix(fix)
    } else if !optional.is_empty() {
        Check::new(
            "controllers",
            Level::Warn,
            format!(
                "{} available; missing {}: --cpus is not enforced without cpuset",
                have.join(" "),
                optional.join(" ")
            ),
        )
        .fix(fix)
    } else {
        Check::new("controllers", Level::Ok, have.join(" "))
    }
}

fn oom(proc_root: &Path) -> Check {
    if process::may_lower_oom(proc_root) {
        Check::new(
            "oom",
            Level::Ok,
            "may set negative OOM score adjustments (CAP_SYS_RESOURCE)",
        )
    } else {
        Check::new(
            "oom",
            Level::Warn,
            "no CAP_SYS_RESOURCE: negative --oom-adj values (every preset but batch) are not applied",
        )
        .fix("run as root, or use --oom-adj 0 or higher")
    }
}

fn bpf(proc_root: &Path) -> Check {
    if process::may_load_bpf(proc_root) {
        Check::new(
            "bpf",
            Level::Ok,
            "may load cgroup device programs (CAP_BPF or CAP_SYS_ADMIN)",
        )
    } else {
        Check::new(
            "bpf",
            Level::Warn,
            "cannot load cgroup device programs: GPU isolation is by environment only",
        )
        .fix("run as root for kernel-enforced GPU isolation")
    }
}

fn gpus(proc_root: &Path, dev: &Path) -> Vec<Check> {
    let nvidia_version = std::fs::read_to_string(proc_root.join("driver/nvidia/version"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string));
    let nodes = |prefix: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dev)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    };
    let render: Vec<String> = std::fs::read_dir(dev.join("dri"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("renderD"))
        .collect();
    let mut checks = Vec::new();
    match nvidia_version {
        Some(version) => {
            let nvidia = nodes("nvidia");
            checks.push(if nvidia.iter().any(|n| n == "nvidiactl") {
                Check::new(
                    "nvidia",
                    Level::Ok,
                    format!("{version}; nodes {}", nvidia.join(" ")),
                )
            } else {
                Check::new(
                    "nvidia",
                    Level::Warn,
                    format!("{version}, but {} has no nvidiactl", dev.display()),
                )
                .fix("run nvidia-modprobe or nvidia-smi once to create the device nodes")
            });
            checks.push(nvml());
        }
        None if nodes("nvidia").is_empty() => {}
        None => checks.push(
            Check::new(
                "nvidia",
                Level::Warn,
                format!(
                    "{}/nvidia* exist but no NVIDIA driver is loaded",
                    dev.display()
                ),
            )
            .fix("load the driver: modprobe nvidia"),
        ),
    }
    if dev.join("kfd").exists() {
        checks.push(Check::new(
            "amd",
            Level::Ok,
            format!("{}/kfd present (ROCm)", dev.display()),
        ));
    }
    if !render.is_empty() {
        checks.push(Check::new(
            "drm",
            Level::Ok,
            format!("{} render node(s) in {}/dri", render.len(), dev.display()),
        ));
    }
    if checks.is_empty() {
        checks.push(Check::new(
            "gpu",
            Level::Ok,
            "no GPU driver loaded: CPU limits only",
        ));
    }
    checks
}

/// NVML is only opened, never called: that is all `doctor` needs to know.
fn nvml() -> Check {
    const LIBRARY: &std::ffi::CStr = c"libnvidia-ml.so.1";
    // SAFETY: dlopen with a constant name; the handle is closed at once.
    let handle = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        Check::new(
            "nvml",
            Level::Warn,
            "libnvidia-ml.so.1 cannot be loaded: GPU utilization and memory are not shown",
        )
        .fix("install the NVIDIA driver's NVML library (package libnvidia-ml1 or the driver's utils)")
    } else {
        // SAFETY: the handle came from dlopen above.
        unsafe { libc::dlclose(handle) };
        Check::new("nvml", Level::Ok, "libnvidia-ml.so.1 loads")
    }
}

fn database(db: &Path) -> Check {
    if db.exists() {
        return match Store::open_existing(db) {
            Err(e) => Check::new("database", Level::Fail, e.to_string())
                .fix("move the file away, or choose another with --db"),
            Ok(_) if !writable_path(db) => Check::new(
                "database",
                Level::Warn,
                format!(
                    "{} is readable but not writable: create, update and delete will fail",
                    db.display()
                ),
            )
            .fix("make it writable, or choose another with --db"),
            Ok(_) => Check::new("database", Level::Ok, format!("{} opens", db.display())),
        };
    }
    let mut dir = db.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        dir = d.parent();
    }
    match dir {
        Some(d) if writable_path(d) => Check::new(
            "database",
            Level::Ok,
            format!("{} will be created on the first create", db.display()),
        ),
        _ => Check::new(
            "database",
            Level::Fail,
            format!(
                "{} cannot be created: its directory is not writable",
                db.display()
            ),
        )
        .fix("choose another with --db or CORTEX_LIMITS_DB"),
    }
}

/// Whether this process may write `path` (a file, or a directory to
/// create files in).
fn writable_path(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn roots(dir: &Path) -> Roots {
        Roots {
            cgroup: dir.join("cgroup"),
            proc: dir.join("proc"),
            accel: dir.to_path_buf(),
            db: dir.join("state/limits.db"),
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
    }

    #[test]
    fn a_unified_root_host() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        fs::create_dir_all(&r.cgroup).unwrap();
        fs::write(
            r.cgroup.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(r.cgroup.join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir_all(r.proc.join("self")).unwrap();
        fs::write(r.proc.join("self/status"), "CapEff:\t000001ffffffffff\n").unwrap();
        fs::create_dir_all(r.accel.join("dev")).unwrap();
        let checks = run(&r, 0);
        assert_eq!(find(&checks, "cgroup").level, Level::Ok);
        assert_eq!(find(&checks, "controllers").level, Level::Ok);
        assert_eq!(find(&checks, "oom").level, Level::Ok);
        assert_eq!(find(&checks, "bpf").level, Level::Ok);
        assert_eq!(
            find(&checks, "gpu").detail,
            "no GPU driver loaded: CPU limits only"
        );
        let db = find(&checks, "database");
        assert_eq!(db.level, Level::Ok, "{db:?}");
        assert!(db.detail.ends_with("will be created on the first create"));
        assert!(!r.db.exists(), "doctor creates nothing");
    }

    #[test]
    fn a_hybrid_host_fails_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        fs::create_dir_all(r.cgroup.join("unified")).unwrap();
        fs::write(r.cgroup.join("unified/cgroup.controllers"), "").unwrap();
        fs::create_dir_all(r.proc.join("self")).unwrap();
        fs::write(r.proc.join("self/status"), "CapEff:\t0000000000000000\n").unwrap();
        let checks = run(&r, 0);
        let cgroup = find(&checks, "cgroup");
        assert_eq!(cgroup.level, Level::Fail);
        assert!(
            cgroup.detail.contains("hybrid cgroup host"),
            "{}",
            cgroup.detail
        );
        assert!(cgroup
            .fix
            .as_deref()
            .unwrap()
            .contains("systemd.unified_cgroup_hierarchy=1"));
        assert_eq!(find(&checks, "oom").level, Level::Warn);
        assert_eq!(find(&checks, "bpf").level, Level::Warn);
        assert!(
            checks.iter().all(|c| c.name != "delegation"),
            "nothing to delegate"
        );
    }

    #[test]
    fn missing_controllers_and_drivers() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        fs::create_dir_all(&r.cgroup).unwrap();
        fs::write(r.cgroup.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::create_dir_all(r.accel.join("proc/driver/nvidia")).unwrap();
        fs::write(
            r.accel.join("proc/driver/nvidia/version"),
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n",
        )
        .unwrap();
        fs::create_dir_all(r.accel.join("dev")).unwrap();
        fs::write(r.accel.join("dev").join("nvidia0"), "").unwrap();
        let checks = run(&r, 0);
        let controllers = find(&checks, "controllers");
        assert_eq!(controllers.level, Level::Warn);
        assert!(
            controllers.detail.contains("missing cpuset io"),
            "{}",
            controllers.detail
        );
        let nvidia = find(&checks, "nvidia");
        assert_eq!(nvidia.level, Level::Warn);
        assert!(nvidia.detail.contains("550.54.15"), "{}", nvidia.detail);
        assert_eq!(
            find(&checks, "nvml").level,
            Level::Warn,
            "no NVML on a test machine"
        );
    }

    #[test]
    fn a_database_that_is_not_sqlite_fails() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        fs::create_dir_all(r.db.parent().unwrap()).unwrap();
        fs::write(
            &r.db,
            "plain text, long enough to be read as a header...........",
        )
        .unwrap();
        let checks = run(&r, 0);
        let db = find(&checks, "database");
        assert_eq!(db.level, Level::Fail);
        assert!(db.detail.contains("not SQLite"), "{}", db.detail);
    }
}
