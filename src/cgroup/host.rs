//! What kind of cgroup host this is, and where this user may create
//! cgroups.
//!
//! Root works under `<root>/cortex.slice`. Anyone else needs a subtree
//! delegated to them the way systemd does it: a `user@UID.service`
//! directory owned by the user, with controllers enabled above it.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::files::{CONTROLLERS, PROCS, PROC_SELF_CGROUP, SUBTREE_CONTROL};
use super::stat;

/// The shape of the cgroup filesystem at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 mounted at the root, with these controllers available.
    Unified {
        /// The root's `cgroup.controllers`.
        controllers: Vec<String>,
    },
    /// cgroup v1 controllers, with an empty cgroup2 at `<root>/unified`.
    Hybrid,
    /// cgroup v1 only.
    Legacy,
    /// No cgroup filesystem at the root.
    Absent,
}

/// Reads the hierarchy at a cgroup root.
pub fn detect(root: &Path) -> Hierarchy {
    if let Ok(text) = std::fs::read_to_string(root.join(CONTROLLERS)) {
        return Hierarchy::Unified {
            controllers: stat::controllers(&text),
        };
    }
    if root.join("unified").join(CONTROLLERS).exists() {
        return Hierarchy::Hybrid;
    }
    let v1_mounted = root.join(PROCS).exists()
        || std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("tasks").exists());
    if v1_mounted {
        Hierarchy::Legacy
    } else {
        Hierarchy::Absent
    }
}

/// Why no cgroup can be made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// A hybrid host: controllers on v1, an empty cgroup2.
    Hybrid {
        /// The cgroup root.
        root: PathBuf,
    },
    /// Only cgroup v1.
    Legacy {
        /// The cgroup root.
        root: PathBuf,
    },
    /// Nothing mounted.
    Absent {
        /// The cgroup root.
        root: PathBuf,
    },
    /// cgroup2 is mounted but offers no controllers.
    NoControllers {
        /// The cgroup root.
        root: PathBuf,
    },
    /// Not root, and no subtree is delegated to this user.
    NoDelegation {
        /// The user.
        uid: u32,
        /// Where a delegated subtree was looked for.
        looked: Vec<PathBuf>,
    },
}

/// The drop-in that makes systemd delegate every controller this tool
/// uses to user sessions.
pub const DELEGATION_FIX: &str = "as root: mkdir -p /etc/systemd/system/user@.service.d && \
printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > \
/etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload, then log in again";

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Hybrid { root } => write!(
                f,
                "{} is a hybrid cgroup host: its controllers are on cgroup v1 and the cgroup2 \
                 hierarchy at {} has none, so cgroup v2 limits cannot be enforced here (boot with \
                 systemd.unified_cgroup_hierarchy=1 to use cgroup v2)",
                root.display(),
                root.join("unified").display()
            ),
            Unavailable::Legacy { root } => write!(
                f,
                "{} has only cgroup v1 hierarchies, so cgroup v2 limits cannot be enforced here \
                 (boot with systemd.unified_cgroup_hierarchy=1 to use cgroup v2)",
                root.display()
            ),
            Unavailable::Absent { root } => write!(
                f,
                "no cgroup filesystem is mounted at {}: mount cgroup2 there \
                 (mount -t cgroup2 none {}) or point --cgroup-root at it",
                root.display(),
                root.display()
            ),
            Unavailable::NoControllers { root } => write!(
                f,
                "the cgroup2 hierarchy at {} offers no controllers (they are bound to cgroup v1), \
                 so limits cannot be enforced here",
                root.display()
            ),
            Unavailable::NoDelegation { uid, looked } => {
                let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no cgroup subtree is delegated to uid {uid} (looked for a user@{uid}.service \
                     owned by it: {}); run as root, or enable delegation {DELEGATION_FIX}",
                    looked.join(", ")
                )
            }
        }
    }
}

/// Where profile cgroups go for this caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The directory that holds `cortex.slice`.
    pub dir: PathBuf,
    /// The user it is delegated to; `None` for root.
    pub delegated_to: Option<u32>,
    /// The controllers available in it (its `cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// Finds where this caller may create cgroups: the root for uid 0, the
/// delegated `user@UID.service` subtree for anyone else.
pub fn locate(root: &Path, proc_root: &Path, uid: u32) -> Result<Base, Unavailable> {
    let controllers = match detect(root) {
        Hierarchy::Unified { controllers } => controllers,
        Hierarchy::Hybrid => return Err(Unavailable::Hybrid { root: root.into() }),
        Hierarchy::Legacy => return Err(Unavailable::Legacy { root: root.into() }),
        Hierarchy::Absent => return Err(Unavailable::Absent { root: root.into() }),
    };
    if controllers.is_empty() {
        return Err(Unavailable::NoControllers { root: root.into() });
    }
    if uid == 0 {
        return Ok(Base {
            dir: root.to_path_buf(),
            delegated_to: None,
            controllers,
        });
    }
    find_delegated(root, proc_root, uid)
}

/// Finds the subtree delegated to `uid`: the `user@UID.service` ancestor
/// of the caller's own cgroup, or else the one where systemd puts it.
fn find_delegated(root: &Path, proc_root: &Path, uid: u32) -> Result<Base, Unavailable> {
    let mut looked = Vec::new();
    let unit = format!("user@{uid}.service");
    let own = std::fs::read_to_string(proc_root.join(PROC_SELF_CGROUP)).unwrap_or_default();
    if let Some(found) = own_unit_ancestor(&own, &unit) {
        let dir = root.join(found);
        if delegated(&dir, uid) {
            return Ok(delegated_base(dir, uid));
        }
        looked.push(dir);
    }
    let conventional = root
        .join("user.slice")
        .join(format!("user-{uid}.slice"))
        .join(&unit);
    if !looked.contains(&conventional) {
        if delegated(&conventional, uid) {
            return Ok(delegated_base(conventional, uid));
        }
        looked.push(conventional);
    }
    Err(Unavailable::NoDelegation { uid, looked })
}

fn delegated_base(dir: PathBuf, uid: u32) -> Base {
    let controllers = std::fs::read_to_string(dir.join(CONTROLLERS))
        .map(|t| stat::controllers(&t))
        .unwrap_or_default();
    Base {
        dir,
        delegated_to: Some(uid),
        controllers,
    }
}

/// The path, relative to the root, of the `unit` ancestor in the v2 line
/// (`0::/user.slice/.../user@1000.service/app.slice/x.scope`).
fn own_unit_ancestor<'a>(proc_cgroup: &'a str, unit: &str) -> Option<&'a str> {
    let path = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/');
    let end = path.find(unit)? + unit.len();
    let found = &path[..end];
    (found.ends_with(unit) && (end == path.len() || path[end..].starts_with('/'))).then_some(found)
}

/// Whether this process may create cgroups in `dir` and enable
/// controllers for them.
pub fn writable(dir: &Path) -> bool {
    use rustix::fs::{access, Access};
    access(dir, Access::WRITE_OK).is_ok()
        && access(dir.join(SUBTREE_CONTROL), Access::WRITE_OK).is_ok()
}

/// Delegated the way systemd does it: the directory and its
/// `cgroup.procs` belong to the user.
fn delegated(dir: &Path, uid: u32) -> bool {
    let owned = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.uid() == uid)
            .unwrap_or(false)
    };
    owned(dir) && owned(&dir.join(PROCS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn detects_hierarchies() {
        let unified = tree(&[("cgroup.controllers", "cpuset cpu io memory pids\n")]);
        assert_eq!(
            detect(unified.path()),
            Hierarchy::Unified {
                controllers: vec!["cpuset", "cpu", "io", "memory", "pids"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            }
        );
        let hybrid = tree(&[("unified/cgroup.controllers", ""), ("memory/tasks", "1\n")]);
        assert_eq!(detect(hybrid.path()), Hierarchy::Hybrid);
        let legacy = tree(&[("cpu/tasks", "1\n"), ("memory/tasks", "1\n")]);
        assert_eq!(detect(legacy.path()), Hierarchy::Legacy);
        let empty = tree(&[]);
        assert_eq!(detect(empty.path()), Hierarchy::Absent);
    }

    #[test]
    fn root_works_at_the_root() {
        let t = tree(&[("cgroup.controllers", "cpu memory pids\n")]);
        let base = locate(t.path(), t.path(), 0).unwrap();
        assert_eq!(base.dir, t.path());
        assert_eq!(base.delegated_to, None);
        assert_eq!(base.controllers, ["cpu", "memory", "pids"]);
    }

    #[test]
    fn hybrid_and_empty_roots_are_unavailable() {
        let hybrid = tree(&[("unified/cgroup.controllers", "")]);
        assert!(matches!(
            locate(hybrid.path(), hybrid.path(), 0),
            Err(Unavailable::Hybrid { .. })
        ));
        let bare = tree(&[("cgroup.controllers", "\n")]);
        assert!(matches!(
            locate(bare.path(), bare.path(), 0),
            Err(Unavailable::NoControllers { .. })
        ));
    }

    #[test]
    fn finds_the_unit_in_the_own_cgroup() {
        let line = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n";
        assert_eq!(
            own_unit_ancestor(line, "user@1000.service"),
            Some("user.slice/user-1000.slice/user@1000.service")
        );
        assert_eq!(
            own_unit_ancestor(
                "0::/user.slice/user-1000.slice/session-3.scope\n",
                "user@1000.service"
            ),
            None
        );
        assert_eq!(
            own_unit_ancestor("0::/x/user@1000.service-evil/y\n", "user@1000.service"),
            None
        );
        assert_eq!(
            own_unit_ancestor("12:cpu:/user@1000.service\n", "user@1000.service"),
            None,
            "v1 lines do not count"
        );
    }

    #[test]
    fn a_user_without_delegation_is_told_where_it_looked() {
        // The temp tree belongs to root (the tests' uid), never to uid 4242.
        let t = tree(&[
            ("cgroup.controllers", "cpu memory pids\n"),
            (
                "user.slice/user-4242.slice/user@4242.service/cgroup.procs",
                "",
            ),
        ]);
        let err = locate(t.path(), t.path(), 4242).unwrap_err();
        let Unavailable::NoDelegation { uid, looked } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*uid, 4242);
        assert_eq!(
            looked,
            &[t.path()
                .join("user.slice/user-4242.slice/user@4242.service")]
        );
        assert!(err
            .to_string()
            .contains("Delegate=cpu cpuset io memory pids"));
    }

    #[test]
    fn a_user_with_delegation_works_below_it() {
        // The temp files belong to whoever runs the tests, so the lookup is
        // asked for as that owner.
        let t = tree(&[("cgroup.controllers", "cpu memory pids\n")]);
        let owner = fs::metadata(t.path()).unwrap().uid();
        let unit = format!("user.slice/user-{owner}.slice/user@{owner}.service");
        let t = tree(&[
            ("cgroup.controllers", "cpu memory pids\n"),
            ("self/cgroup", &format!("0::/{unit}/init.scope\n")),
            (&format!("{unit}/cgroup.controllers"), "cpu memory\n"),
            (&format!("{unit}/cgroup.procs"), ""),
        ]);
        let base = find_delegated(t.path(), t.path(), owner).unwrap();
        assert_eq!(base.dir, t.path().join(&unit));
        assert_eq!(base.delegated_to, Some(owner));
        assert_eq!(base.controllers, ["cpu", "memory"]);
    }
}
