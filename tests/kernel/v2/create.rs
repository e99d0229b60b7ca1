//! `create` as root: the profile's cgroup, the values written in it, and
//! the controllers enabled above it.

use std::path::Path;

use crate::support::{assert_lists, profile_cgroup, read, tree, unique, Cortex, CGROUP_ROOT};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn create_writes_the_limits_into_a_new_cgroup() {
    let cortex = Cortex::root();
    let name = unique("create");
    cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "150",
            "--cpu-weight",
            "300",
            "--memory",
            "256M",
            "--memory-high",
            "200M",
            "--cpus",
            "0-1",
        ])
        .expect(0, "create");

    let cgroup = profile_cgroup(&name);
    assert!(cgroup.is_dir(), "{} was not made", cgroup.display());
    assert_eq!(read(cgroup.join("cpu.max")), "150000 100000");
    assert_eq!(read(cgroup.join("cpu.weight")), "300");
    assert_eq!(read(cgroup.join("memory.max")), (256 * MIB).to_string());
    assert_eq!(read(cgroup.join("memory.high")), (200 * MIB).to_string());
    assert_eq!(read(cgroup.join("cpuset.cpus")), "0-1");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn create_enables_the_controllers_in_every_ancestor() {
    let cortex = Cortex::root();
    let name = unique("ancestors");
    cortex
        .run(&["create", &name, "--cpu", "100", "--cpus", "1"])
        .expect(0, "create");

    let slice = Path::new(CGROUP_ROOT).join("cortex.slice");
    for ancestor in [Path::new(CGROUP_ROOT), &slice] {
        assert_lists(
            ancestor.join("cgroup.subtree_control"),
            &["cpu", "memory", "pids", "cpuset"],
        );
    }
    assert_lists(
        profile_cgroup(&name).join("cgroup.controllers"),
        &["cpu", "memory", "pids", "cpuset"],
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn create_from_a_preset_writes_the_preset_values() {
    let cortex = Cortex::root();
    let name = unique("preset");
    cortex
        .run(&["create", &name, "--preset", "inference"])
        .expect(0, "create --preset inference");

    let cgroup = profile_cgroup(&name);
    assert_eq!(read(cgroup.join("cpu.max")), "400000 100000");
    assert_eq!(read(cgroup.join("cpu.weight")), "400");
    assert_eq!(read(cgroup.join("memory.max")), (32 * GIB).to_string());
    assert_eq!(read(cgroup.join("memory.high")), (28 * GIB).to_string());
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn create_writes_each_spelling_of_cpu_and_memory_as_the_kernel_wants() {
    // (--cpu, --memory, cpu.max, memory.max, memory.high)
    let cases = [
        (
            "250",
            "1",
            "250000 100000",
            GIB.to_string(),
            (GIB / 8 * 7).to_string(),
        ),
        (
            "12.5",
            "512M",
            "12500 100000",
            (512 * MIB).to_string(),
            (448 * MIB).to_string(),
        ),
        (
            "max",
            "max",
            "max 100000",
            "max".to_string(),
            "max".to_string(),
        ),
    ];
    let cortex = Cortex::root();
    for (cpu, memory, cpu_max, memory_max, memory_high) in cases {
        let name = unique("spelling");
        let what = format!("create --cpu {cpu} --memory {memory}");
        cortex
            .run(&["create", &name, "--cpu", cpu, "--memory", memory])
            .expect(0, &what);
        let cgroup = profile_cgroup(&name);
        assert_eq!(read(cgroup.join("cpu.max")), cpu_max, "{what}: cpu.max");
        assert_eq!(
            read(cgroup.join("memory.max")),
            memory_max,
            "{what}: memory.max"
        );
        assert_eq!(
            read(cgroup.join("memory.high")),
            memory_high,
            "{what}: memory.high (7/8 of max)"
        );
    }
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn create_twice_is_a_conflict() {
    let cortex = Cortex::root();
    let name = unique("twice");
    cortex
        .run(&["create", &name, "--cpu", "100"])
        .expect(0, "first create");
    cortex
        .run(&["create", &name, "--cpu", "200"])
        .expect(4, "second create");
    assert_eq!(
        read(profile_cgroup(&name).join("cpu.max")),
        "100000 100000",
        "the first profile was changed"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn names_that_could_leave_the_cortex_subtree_are_refused() {
    let cortex = Cortex::root();
    // Make cortex.slice exist, so a bad name has somewhere to escape from.
    cortex
        .run(&["create", &unique("anchor"), "--cpu", "100"])
        .expect(0, "create");

    let root = Path::new(CGROUP_ROOT);
    let before = tree(root);
    for bad in ["../evil", "..", "a/b", ".", "", "/abs", "x/../../evil"] {
        let out = cortex.run(&["create", bad, "--cpu", "100"]);
        let out = out.expect(2, &format!("create {bad:?}"));
        assert!(
            out.stderr.starts_with("cortex: error: ") && out.stderr.trim_end().lines().count() == 1,
            "create {bad:?}: wanted one \"cortex: error: \" line, got:\n{}",
            out.stderr
        );
    }
    assert_eq!(tree(root), before, "the cgroup tree changed");
    assert!(!root.join("evil").exists() && !root.parent().unwrap().join("evil").exists());
}
