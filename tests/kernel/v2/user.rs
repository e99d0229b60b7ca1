//! An unprivileged user (uid 1000) with a subtree delegated the way systemd
//! delegates one: `cpu memory pids` only, the user owning
//! `user@1000.service` and its process files, the user's processes in the
//! leaf `init.scope` below it.

use std::fs;
use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::{
    cgroup_of, read, require_vm, unique, write, Cortex, Helper, CGROUP_ROOT, USER,
};

const DELEGATED: &str = "+cpu +memory +pids";

/// Sets up the delegated subtree once and returns `user@1000.service`.
pub(super) fn delegated() -> &'static Path {
    static SERVICE: OnceLock<PathBuf> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let root = Path::new(CGROUP_ROOT);
        let user_slice = root.join("user.slice");
        let slice = user_slice.join(format!("user-{USER}.slice"));
        let service = slice.join(format!("user@{USER}.service"));
        let scope = service.join("init.scope");
        require_vm();
        fs::create_dir_all(&scope).expect("making the user's cgroups");
        for parent in [root, &user_slice, &slice] {
            write(parent.join("cgroup.subtree_control"), DELEGATED);
        }
        give_to_user(&service);
        give_to_user(&scope);
        service
    })
}

/// Hands `dir` and the files that move processes to the user, as systemd
/// does for a delegated unit.
fn give_to_user(dir: &Path) {
    chown(dir, Some(USER), Some(USER)).unwrap();
    for file in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
        chown(dir.join(file), Some(USER), Some(USER)).unwrap();
    }
}

/// Starts a helper as the user and moves it, as root, into the user's
/// `init.scope`, where systemd would have started it.
fn user_process(role: &[&str]) -> Helper {
    let helper = Helper::start_as_user(role);
    write(
        delegated().join("init.scope/cgroup.procs"),
        &helper.pid_arg(),
    );
    helper
}

fn user_cgroup(name: &str) -> PathBuf {
    delegated().join("cortex.slice").join(name)
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn user_creates_and_applies_inside_the_delegated_subtree() {
    delegated();
    let cortex = Cortex::user();
    let name = unique("user");
    // --oom-adj 0: a negative one (as in the default profile) is beyond the
    // user, and has a test of its own.
    cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "50",
            "--memory",
            "128M",
            "--oom-adj",
            "0",
        ])
        .expect(0, "create as uid 1000");

    let cgroup = user_cgroup(&name);
    assert!(cgroup.is_dir(), "{} was not made", cgroup.display());
    assert_eq!(
        fs::metadata(&cgroup).unwrap().uid(),
        USER,
        "{} is not the user's",
        cgroup.display()
    );
    assert_eq!(read(cgroup.join("cpu.max")), "50000 100000");
    assert_eq!(read(cgroup.join("memory.max")), (128u64 << 20).to_string());

    let target = user_process(&["sleep"]);
    cortex
        .run(&["apply", &name, "--pid", &target.pid_arg()])
        .expect(0, "apply as uid 1000");
    let want = format!("/user.slice/user-{USER}.slice/user@{USER}.service/cortex.slice/{name}");
    assert_eq!(cgroup_of(format!("/proc/{}/cgroup", target.pid())), want);
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn user_negative_oom_adj_is_reported_as_not_enforced() {
    delegated();
    let cortex = Cortex::user();
    let name = unique("useroom");
    let created = cortex.run(&["create", &name, "--cpu", "100", "--oom-adj", "-100"]);
    assert!(
        [0, 5].contains(&created.code),
        "create --oom-adj -100 as uid 1000: exit {}\n{}",
        created.code,
        created.stderr
    );

    let target = user_process(&["sleep"]);
    let out = cortex
        .run(&["apply", &name, "--pid", &target.pid_arg()])
        .expect(5, "apply as uid 1000");
    assert!(
        out.stderr.contains("CAP_SYS_RESOURCE"),
        "the warning does not name CAP_SYS_RESOURCE:\n{}",
        out.stderr
    );
    let pid = target.pid();
    assert_eq!(read(format!("/proc/{pid}/oom_score_adj")), "0");
    assert!(
        cgroup_of(format!("/proc/{pid}/cgroup")).ends_with(&format!("/cortex.slice/{name}")),
        "the process was not moved"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn user_cpus_without_a_delegated_cpuset_is_reported_as_not_enforced() {
    delegated();
    let cortex = Cortex::user();
    let name = unique("usercpus");
    let out = cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "100",
            "--cpus",
            "1",
            "--oom-adj",
            "0",
        ])
        .expect(5, "create --cpus 1 as uid 1000");
    let text = out.stderr.to_lowercase();
    assert!(
        text.contains("cpuset") && text.contains("delegat"),
        "the warning does not say cpuset is not delegated:\n{}",
        out.stderr
    );
    let cgroup = user_cgroup(&name);
    assert!(
        cgroup.is_dir(),
        "{} was not made; cortex said:\n{}{}",
        cgroup.display(),
        out.stdout,
        out.stderr
    );
    assert_eq!(
        read(cgroup.join("cpu.max")),
        "100000 100000",
        "the limits that can be enforced were not"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn user_finds_the_delegated_subtree_it_runs_in() {
    // A user@1000.service away from the usual place: cortex must find it as
    // the ancestor of its own cgroup, not by the usual path.
    let root = Path::new(CGROUP_ROOT);
    let slice = root.join("elsewhere.slice");
    let service = slice.join(format!("user@{USER}.service"));
    let scope = service.join("init.scope");
    require_vm();
    fs::create_dir_all(&scope).expect("making the user's cgroups");
    write(root.join("cgroup.subtree_control"), DELEGATED);
    write(slice.join("cgroup.subtree_control"), DELEGATED);
    give_to_user(&service);
    give_to_user(&scope);

    let cortex = Cortex::user();
    let name = unique("nested");
    let args = ["create", &name, "--cpu", "50", "--oom-adj", "0"];
    let out = cortex
        .run_in(&scope, &args)
        .expect(0, "create as uid 1000 from init.scope");

    let cgroup = service.join("cortex.slice").join(&name);
    assert!(
        cgroup.is_dir(),
        "{} was not made; cortex said:\n{}{}",
        cgroup.display(),
        out.stdout,
        out.stderr
    );
    assert_eq!(read(cgroup.join("cpu.max")), "50000 100000");
    let usual = root.join(format!(
        "user.slice/user-{USER}.slice/user@{USER}.service/cortex.slice/{name}"
    ));
    assert!(!usual.exists(), "{} was made as well", usual.display());
}
