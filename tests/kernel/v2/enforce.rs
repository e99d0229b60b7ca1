//! The kernel enforcing what `create` wrote: CPU quota, memory.max,
//! memory.high and cpuset, measured on processes put under a profile with
//! `apply`.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::{keyed, profile_cgroup, read, unique, wait_until, Cortex, Helper};

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn half_a_core_holds_a_busy_loop_to_half_a_cpu() {
    let cortex = Cortex::root();
    let name = unique("cpu");
    cortex
        .run(&["create", &name, "--cpu", "50"])
        .expect(0, "create --cpu 50");
    let busy = Helper::start(&["busy"]);
    cortex
        .run(&["apply", &name, "--pid", &busy.pid_arg()])
        .expect(0, "apply");
    let stat = profile_cgroup(&name).join("cpu.stat");

    thread::sleep(Duration::from_millis(500));
    let (usage0, throttled0, start) = (
        keyed(&stat, "usage_usec"),
        keyed(&stat, "nr_throttled"),
        Instant::now(),
    );
    thread::sleep(Duration::from_secs(4));
    let (usage1, throttled1, wall) = (
        keyed(&stat, "usage_usec"),
        keyed(&stat, "nr_throttled"),
        start.elapsed(),
    );

    let rate = (usage1 - usage0) as f64 / 1e6 / wall.as_secs_f64();
    println!(
        "--cpu 50: {rate:.3} CPU-s/s over {wall:?}, nr_throttled {throttled0} -> {throttled1}"
    );
    assert!(
        (0.45..=0.55).contains(&rate),
        "a busy loop under --cpu 50 used {rate:.3} CPU-seconds per second (wanted 0.5 +- 0.05)"
    );
    assert!(
        throttled1 > throttled0,
        "nr_throttled did not grow ({throttled0} -> {throttled1})"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn memory_max_oom_kills_inside_the_cgroup_only() {
    let cortex = Cortex::root();
    let name = unique("oom");
    // memory.high no lower than max, so the hog meets max without being
    // throttled first.
    cortex
        .run(&["create", &name, "--memory", "64M", "--memory-high", "64M"])
        .expect(0, "create");

    let mut outside = Helper::start(&["hog", "96"]);
    outside.send("go");
    outside.expect_line("done");

    let mut inside = Helper::start(&["hog", "256"]);
    cortex
        .run(&["apply", &name, "--pid", &inside.pid_arg()])
        .expect(0, "apply");
    inside.send("go");
    let status = inside
        .wait_end(Duration::from_secs(60))
        .expect("the hog outlived memory.max");

    assert!(
        Helper::killed(status),
        "the hog ended with {status}, not SIGKILL"
    );
    let events = profile_cgroup(&name).join("memory.events");
    assert!(
        keyed(&events, "oom_kill") >= 1,
        "memory.events:\n{}",
        read(&events)
    );
    assert!(
        outside.ended().is_none(),
        "the process outside the cgroup was killed too"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn memory_high_throttles_before_max() {
    let cortex = Cortex::root();
    let name = unique("high");
    cortex
        .run(&["create", &name, "--memory", "512M", "--memory-high", "32M"])
        .expect(0, "create");
    let mut hog = Helper::start(&["hog", "48"]);
    cortex
        .run(&["apply", &name, "--pid", &hog.pid_arg()])
        .expect(0, "apply");
    hog.send("go");

    let events = profile_cgroup(&name).join("memory.events");
    let high = wait_until(Duration::from_secs(30), || {
        Some(keyed(&events, "high")).filter(|n| *n > 0)
    });
    assert!(
        high.is_some(),
        "memory.events high stayed 0:\n{}",
        read(&events)
    );
    assert_eq!(
        keyed(&events, "max"),
        0,
        "memory.max was reached:\n{}",
        read(&events)
    );
    assert_eq!(
        keyed(&events, "oom_kill"),
        0,
        "memory.events:\n{}",
        read(&events)
    );
    assert!(hog.ended().is_none(), "the throttled process died");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn cpus_confines_the_process_to_the_listed_cpu() {
    let cortex = Cortex::root();
    let name = unique("cpuset");
    cortex
        .run(&["create", &name, "--cpus", "1"])
        .expect(0, "create --cpus 1");
    let busy = Helper::start(&["busy"]);
    cortex
        .run(&["apply", &name, "--pid", &busy.pid_arg()])
        .expect(0, "apply");

    assert_eq!(
        read(profile_cgroup(&name).join("cpuset.cpus.effective")),
        "1"
    );
    let status = read(format!("/proc/{}/status", busy.pid()));
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim);
    assert_eq!(allowed, Some("1"), "Cpus_allowed_list of the process");
}
