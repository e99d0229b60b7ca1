//! `delete`: refused while processes are inside; `--force` kills them and
//! removes the cgroup.

use std::time::Duration;

use crate::support::{profile_cgroup, unique, Cortex, Helper};

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn delete_refuses_while_busy_and_force_kills_what_is_inside() {
    let cortex = Cortex::root();
    let name = unique("delete");
    cortex
        .run(&["create", &name, "--cpu", "100"])
        .expect(0, "create");
    let mut target = Helper::start(&["sleep"]);
    cortex
        .run(&["apply", &name, "--pid", &target.pid_arg()])
        .expect(0, "apply");
    let cgroup = profile_cgroup(&name);

    cortex
        .run(&["delete", &name])
        .expect(4, "delete with a process inside");
    assert!(
        cgroup.is_dir(),
        "{} went away although delete was refused",
        cgroup.display()
    );
    assert!(
        target.ended().is_none(),
        "the process died although delete was refused"
    );

    cortex
        .run(&["delete", &name, "--force"])
        .expect(0, "delete --force");
    assert!(
        !cgroup.exists(),
        "{} is still there after delete --force",
        cgroup.display()
    );
    let status = target
        .wait_end(Duration::from_secs(10))
        .expect("the process outlived delete --force");
    assert!(
        Helper::killed(status),
        "the process ended with {status}, not SIGKILL"
    );
    cortex
        .run(&["status", &name])
        .expect(3, "status after delete");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn delete_removes_an_empty_profile() {
    let cortex = Cortex::root();
    let name = unique("empty");
    cortex
        .run(&["create", &name, "--cpu", "100"])
        .expect(0, "create");
    cortex.run(&["delete", &name]).expect(0, "delete");
    assert!(!profile_cgroup(&name).exists());
    let list = cortex.run(&["list"]).expect(0, "list");
    assert!(
        !list.stdout.contains(&name),
        "list still shows {name}:\n{}",
        list.stdout
    );
}
