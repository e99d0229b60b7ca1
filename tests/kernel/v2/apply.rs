//! `apply` as root: moving a running process, all its threads, under a
//! profile, and setting its OOM priority.

use std::fs;

use crate::support::{cgroup_of, profile_cgroup, read, unique, Cortex, Helper};

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn apply_moves_every_thread_into_the_cgroup() {
    let cortex = Cortex::root();
    let name = unique("threads");
    cortex
        .run(&["create", &name, "--cpu", "100"])
        .expect(0, "create");
    let target = Helper::start(&["threads", "4"]);

    cortex
        .run(&["apply", &name, "--pid", &target.pid_arg()])
        .expect(0, "apply");

    let want = format!("/cortex.slice/{name}");
    let tasks: Vec<_> = fs::read_dir(format!("/proc/{}/task", target.pid()))
        .expect("listing the target's threads")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        tasks.len(),
        5,
        "the target should have 5 threads: {tasks:?}"
    );
    for task in &tasks {
        assert_eq!(
            cgroup_of(task.join("cgroup")),
            want,
            "thread {}",
            task.display()
        );
    }
    assert_eq!(
        read(profile_cgroup(&name).join("cgroup.procs")),
        target.pid_arg()
    );
    assert_eq!(
        read(profile_cgroup(&name).join("cgroup.threads"))
            .lines()
            .count(),
        5
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn apply_writes_the_oom_score_adj() {
    let cortex = Cortex::root();
    for adj in ["-300", "250"] {
        let name = unique("oom");
        cortex
            .run(&["create", &name, "--cpu", "100", "--oom-adj", adj])
            .expect(0, "create");
        let target = Helper::start(&["sleep"]);
        cortex
            .run(&["apply", &name, "--pid", &target.pid_arg()])
            .expect(0, "apply");
        let path = format!("/proc/{}/oom_score_adj", target.pid());
        assert_eq!(read(&path), adj, "{path} after apply with --oom-adj {adj}");
    }
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn apply_to_a_missing_pid_or_profile_is_not_found() {
    let cortex = Cortex::root();
    let name = unique("missing");
    cortex
        .run(&["create", &name, "--cpu", "100"])
        .expect(0, "create");
    let pid_max: u64 = read("/proc/sys/kernel/pid_max").parse().unwrap();
    let no_pid = (pid_max - 1).to_string();
    cortex
        .run(&["apply", &name, "--pid", &no_pid])
        .expect(3, "apply to a pid nobody has");

    let target = Helper::start(&["sleep"]);
    cortex
        .run(&["apply", &unique("nobody"), "--pid", &target.pid_arg()])
        .expect(3, "apply an unknown profile");
    assert_eq!(
        cgroup_of(format!("/proc/{}/cgroup", target.pid())),
        "/",
        "the target was moved anyway"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn status_json_reports_what_the_kernel_holds() {
    let cortex = Cortex::root();
    let name = unique("status");
    cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "50",
            "--memory",
            "256M",
            "--memory-high",
            "200M",
        ])
        .expect(0, "create");
    let target = Helper::start(&["sleep"]);
    cortex
        .run(&["apply", &name, "--pid", &target.pid_arg()])
        .expect(0, "apply");

    let out = cortex
        .run(&["status", &name, "--json"])
        .expect(0, "status --json");
    let status: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", out.stdout));
    let cgroup = &status["cgroup"];
    assert_eq!(status["name"], name.as_str());
    assert_eq!(
        cgroup["path"],
        profile_cgroup(&name).display().to_string().as_str()
    );
    assert_eq!(cgroup["exists"], true, "{status:#}");
    assert_eq!(cgroup["enforced"], true, "{status:#}");
    assert_eq!(
        cgroup["pids"],
        serde_json::json!([target.pid()]),
        "{status:#}"
    );
    assert_eq!(cgroup["memory"]["max"], 256u64 << 20, "{status:#}");
    assert_eq!(cgroup["memory"]["high"], 200u64 << 20, "{status:#}");
    // Memory charged before the move stays where it was charged, so
    // current may well be 0 here: only its presence is checked.
    assert!(cgroup["memory"]["current"].is_u64(), "{status:#}");
    assert!(cgroup["cpu"]["usage_usec"].is_u64(), "{status:#}");
    assert_eq!(cgroup["memory_events"]["oom_kill"], 0, "{status:#}");
    let applied = status["applied"].as_array().expect("an applied array");
    assert!(
        applied.iter().any(|a| a["pid"] == target.pid()),
        "the applied list lacks {}: {status:#}",
        target.pid()
    );
}
