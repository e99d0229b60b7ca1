//! A smoke test for a host run by systemd: the ground the systemd driver
//! will stand on.

use crate::support::{profile_cgroup, read, require_vm, unique, Cortex};

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn systemd_is_pid_1_and_create_makes_the_cgroup() {
    require_vm();
    assert_eq!(read("/proc/1/comm"), "systemd", "PID 1 is not systemd");

    let cortex = Cortex::root();
    let name = unique("smoke");
    cortex
        .run(&["create", &name, "--cpu", "50", "--memory", "256M"])
        .expect(0, "create");
    let cgroup = profile_cgroup(&name);
    assert!(cgroup.is_dir(), "{} was not made", cgroup.display());
    assert_eq!(read(cgroup.join("cpu.max")), "50000 100000");
    assert_eq!(read(cgroup.join("memory.max")), "268435456");

    cortex.run(&["delete", &name]).expect(0, "delete");
    assert!(
        !cgroup.exists(),
        "{} is still there after delete",
        cgroup.display()
    );
}
