//! Tests for a hybrid host: cgroup v1 controllers, and a cgroup2 at
//! /sys/fs/cgroup/unified with none. Nothing can be enforced there; the
//! tool must say so and keep working where no kernel is needed.

use std::path::Path;

use crate::support::{read, require_vm, unique, Cortex, Helper, CGROUP_ROOT};

fn assert_hybrid_host() {
    require_vm();
    let unified = Path::new(CGROUP_ROOT).join("unified/cgroup.controllers");
    assert_eq!(
        read(&unified),
        "",
        "{} lists controllers: not a hybrid host",
        unified.display()
    );
    assert!(
        Path::new(CGROUP_ROOT)
            .join("memory/memory.limit_in_bytes")
            .exists(),
        "no cgroup v1 memory hierarchy: not a hybrid host"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn host_has_v1_controllers_and_an_empty_cgroup2() {
    assert_hybrid_host();
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn create_stores_the_profile_and_says_it_is_not_enforced() {
    assert_hybrid_host();
    let cortex = Cortex::root();
    let name = unique("hybrid");

    let out = cortex.run(&["create", &name, "--cpu", "50", "--memory", "1"]);
    let out = out.expect(5, "create on a hybrid host");
    assert!(
        out.stderr.contains("not enforced"),
        "no \"not enforced\" warning:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hybrid") || out.stderr.contains("cgroup v1"),
        "the warning names neither hybrid nor cgroup v1:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("cortex: warning: ")),
        "warnings start with \"cortex: warning: \":\n{}",
        out.stderr
    );

    let list = cortex.run(&["list"]).expect(0, "list after create");
    assert!(
        list.stdout.contains(&name),
        "list does not show {name}:\n{}",
        list.stdout
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn commands_that_need_no_kernel_still_work() {
    assert_hybrid_host();
    let cortex = Cortex::root();
    let name = unique("hybrid");
    cortex
        .run(&["create", &name, "--preset", "inference"])
        .expect(5, "create");

    let env = cortex.run(&["env", &name]).expect(0, "env");
    assert!(!env.stdout.trim().is_empty(), "env printed nothing");
    cortex.run(&["list"]).expect(0, "list");
    cortex.run(&["list", "--json"]).expect(0, "list --json");
    cortex.run(&["presets"]).expect(0, "presets");
    cortex.run(&["status"]).expect(0, "status");
    cortex.run(&["status", &name]).expect(0, "status NAME");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn apply_is_not_possible_without_cgroup_v2() {
    assert_hybrid_host();
    let cortex = Cortex::root();
    let name = unique("hybrid");
    cortex
        .run(&["create", &name, "--cpu", "50"])
        .expect(5, "create");
    let target = Helper::start(&["sleep"]);
    let out = cortex.run(&["apply", &name, "--pid", &target.pid_arg()]);
    out.expect(6, "apply on a hybrid host");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn doctor_fails_on_a_hybrid_host_and_says_how_to_fix_it() {
    assert_hybrid_host();
    let cortex = Cortex::root();
    let out = cortex.run(&["doctor"]).expect(1, "doctor on a hybrid host");
    let cgroup = out
        .stdout
        .lines()
        .find(|l| l.starts_with("fail  cgroup "))
        .unwrap_or_else(|| panic!("no failing cgroup check:\n{}", out.stdout));
    assert!(cgroup.contains("hybrid cgroup host"), "{cgroup}");
    assert!(
        out.stdout
            .contains("fix: boot with systemd.unified_cgroup_hierarchy=1"),
        "{}",
        out.stdout
    );
}
