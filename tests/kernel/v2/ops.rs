//! `run`, `update`, `restore`, live `status` and `doctor` as root on a
//! cgroup v2 kernel, each checked against what the kernel reports.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::{cortex_bin, keyed, profile_cgroup, read, unique, wait_until, Cortex, Helper};

const KERNEL_FILES: [&str; 5] = [
    "cpu.max",
    "cpu.weight",
    "memory.max",
    "memory.high",
    "cpuset.cpus",
];

fn snapshot(name: &str) -> Vec<(String, String)> {
    KERNEL_FILES
        .iter()
        .map(|f| (f.to_string(), read(profile_cgroup(name).join(f))))
        .collect()
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn run_puts_the_command_under_the_profile_and_passes_its_status() {
    let cortex = Cortex::root();
    let name = unique("run");
    cortex
        .run(&["create", &name, "--cpu", "250", "--oom-adj", "300"])
        .expect(0, "create");
    let script = "cat /proc/self/cgroup; echo threads=$OMP_NUM_THREADS; \
                  echo oom=$(cat /proc/self/oom_score_adj); echo ppid-comm=$(cat /proc/$PPID/comm); exit 7";
    // The harness appends `--db PATH` after the arguments, where `run` would
    // hand it to the command, so the database is named before `run` too.
    let db = cortex.db();
    let db = db.to_str().unwrap();
    let out = cortex.run(&["--db", db, "run", &name, "--", "/bin/sh", "-c", script]);
    let out = out.expect(7, "run passes the command's exit status");
    assert!(
        out.stdout.contains(&format!("0::/cortex.slice/{name}\n")),
        "not in the profile's cgroup:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("threads=2\n"), "{}", out.stdout);
    assert!(out.stdout.contains("oom=300\n"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("ppid-comm=cortex"),
        "cortex stayed behind as the parent:\n{}",
        out.stdout
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn run_reports_127_and_126_like_a_shell() {
    let cortex = Cortex::root();
    let name = unique("run-missing");
    cortex
        .run(&["create", &name, "--cpu", "100"])
        .expect(0, "create");

    let db = cortex.db();
    let db = db.to_str().unwrap();
    let out = cortex
        .run(&["--db", db, "run", &name, "--", "/no/such/command"])
        .expect(127, "a missing command");
    assert!(
        out.stderr.contains("command not found: /no/such/command"),
        "{}",
        out.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-executable");
    fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let out = cortex
        .run(&["--db", db, "run", &name, "--", plain.to_str().unwrap()])
        .expect(126, "a file without the execute bit");
    assert!(out.stderr.contains("cannot execute"), "{}", out.stderr);
}

/// `run` joins an existing cgroup as it stands, and makes a missing one
/// (after a reboot without `restore`) with the profile's limits.
#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn run_joins_an_existing_cgroup_and_remakes_a_missing_one() {
    let cortex = Cortex::root();
    let name = unique("run-remake");
    cortex
        .run(&["create", &name, "--cpu", "150", "--memory", "200M"])
        .expect(0, "create");
    let db = cortex.db();
    let db = db.to_str().unwrap();
    let made = snapshot(&name);

    cortex
        .run(&["--db", db, "run", &name, "--", "/bin/true"])
        .expect(0, "run into the existing cgroup");
    assert_eq!(snapshot(&name), made, "joining changes no limit");

    fs::remove_dir(profile_cgroup(&name)).expect("the cgroup is empty again");
    let out = cortex
        .run(&[
            "--db",
            db,
            "run",
            &name,
            "--",
            "/bin/sh",
            "-c",
            "cat /proc/self/cgroup",
        ])
        .expect(0, "run with the cgroup missing");
    assert_eq!(out.stdout, format!("0::/cortex.slice/{name}\n"));
    assert_eq!(
        snapshot(&name),
        made,
        "made again with the profile's limits"
    );
    assert_eq!(read(profile_cgroup(&name).join("cpu.max")), "150000 100000");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn update_changes_the_kernel_files_while_a_process_runs() {
    let cortex = Cortex::root();
    let name = unique("update");
    cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "100",
            "--memory",
            "256M",
            "--oom-adj",
            "0",
        ])
        .expect(0, "create");
    let sleeper = Helper::start(&["sleep"]);
    cortex
        .run(&["apply", &name, "--pid", &sleeper.pid_arg()])
        .expect(0, "apply");

    cortex
        .run(&[
            "update",
            &name,
            "--cpu",
            "50",
            "--cpu-weight",
            "300",
            "--memory",
            "128M",
            "--cpus",
            "1",
            "--oom-adj",
            "200",
        ])
        .expect(0, "update");

    let dir = profile_cgroup(&name);
    assert_eq!(read(dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(dir.join("cpu.weight")), "300");
    assert_eq!(read(dir.join("memory.max")), (128u64 << 20).to_string());
    assert_eq!(read(dir.join("memory.high")), (112u64 << 20).to_string());
    assert_eq!(read(dir.join("cpuset.cpus")), "1");
    assert_eq!(
        read(format!("/proc/{}/oom_score_adj", sleeper.pid())),
        "200"
    );
    assert_eq!(
        read(dir.join("cgroup.procs")),
        sleeper.pid_arg(),
        "the process stayed"
    );
}

/// What `run` started, and what that forked, is found through the
/// cgroup, not a record: `update` moves the OOM adjustment of both.
#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn update_reaches_the_processes_run_started_and_their_children() {
    let cortex = Cortex::root();
    let name = unique("update-run");
    cortex
        .run(&["create", &name, "--oom-adj", "100"])
        .expect(0, "create");
    let mut shell = std::process::Command::new(cortex_bin())
        .args(["limits", "--db"])
        .arg(cortex.db())
        .args([
            "run",
            &name,
            "--",
            "/bin/sh",
            "-c",
            "sleep 300 & echo $!; wait",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting cortex run");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
        &mut line,
    )
    .expect("the child's pid");
    let pids = [shell.id().to_string(), line.trim().to_string()];
    for pid in &pids {
        assert_eq!(
            read(format!("/proc/{pid}/oom_score_adj")),
            "100",
            "pid {pid}"
        );
    }

    let out = cortex
        .run(&["update", &name, "--oom-adj", "300"])
        .expect(0, "update");
    for pid in &pids {
        assert_eq!(
            read(format!("/proc/{pid}/oom_score_adj")),
            "300",
            "pid {pid}"
        );
        assert!(out.stdout.contains(pid.as_str()), "{}", out.stdout);
    }
    cortex
        .run(&["delete", &name, "--force"])
        .expect(0, "delete kills both");
    shell.wait().expect("the shell is reaped");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn update_below_current_usage_needs_force() {
    let cortex = Cortex::root();
    let name = unique("shrink");
    cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "100",
            "--memory",
            "256M",
            "--oom-adj",
            "0",
        ])
        .expect(0, "create");
    let mut hog = Helper::start(&["hog", "64"]);
    cortex
        .run(&["apply", &name, "--pid", &hog.pid_arg()])
        .expect(0, "apply");
    hog.send("go");
    hog.expect_line("done");
    let current = memory_current(&name);
    assert!(current > 48 << 20, "the hog holds {current} bytes");

    let out = cortex
        .run(&["update", &name, "--memory", "16M"])
        .expect(4, "update below usage without --force");
    assert!(out.stderr.contains("add --force"), "{}", out.stderr);
    assert_eq!(
        read(profile_cgroup(&name).join("memory.max")),
        (256u64 << 20).to_string()
    );

    cortex
        .run(&["update", &name, "--memory", "16M", "--force"])
        .expect(0, "update below usage with --force");
    assert_eq!(
        read(profile_cgroup(&name).join("memory.max")),
        (16u64 << 20).to_string()
    );
    let ended = hog.wait_end(Duration::from_secs(20));
    assert!(
        ended.is_some_and(Helper::killed),
        "the hog should be OOM-killed under 16M: {ended:?}"
    );
}

fn memory_current(name: &str) -> u64 {
    read(profile_cgroup(name).join("memory.current"))
        .parse()
        .unwrap()
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn restore_recreates_removed_cgroups_and_is_idempotent() {
    let cortex = Cortex::root();
    let (a, b) = (unique("restore-a"), unique("restore-b"));
    cortex
        .run(&[
            "create", &a, "--cpu", "150", "--memory", "300M", "--cpus", "0",
        ])
        .expect(0, "create a");
    cortex
        .run(&["create", &b, "--preset", "batch", "--cpu-weight", "77"])
        .expect(0, "create b");
    let before = (snapshot(&a), snapshot(&b));

    for name in [&a, &b] {
        fs::remove_dir(profile_cgroup(name)).expect("rmdir, as a reboot would");
    }
    let out = cortex.run(&["restore"]).expect(0, "restore");
    assert!(
        out.stdout.contains(&format!("restored '{a}' (created)")),
        "{}",
        out.stdout
    );
    assert_eq!(
        (snapshot(&a), snapshot(&b)),
        before,
        "the same values again"
    );

    let out = cortex.run(&["restore"]).expect(0, "restore again");
    assert!(
        out.stdout.contains(&format!("restored '{a}' (present)")),
        "{}",
        out.stdout
    );
    assert_eq!(
        (snapshot(&a), snapshot(&b)),
        before,
        "a second restore changes nothing"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn live_status_matches_the_kernel_files() {
    let cortex = Cortex::root();
    let name = unique("live");
    cortex
        .run(&[
            "create",
            &name,
            "--cpu",
            "50",
            "--memory",
            "200M",
            "--oom-adj",
            "0",
        ])
        .expect(0, "create");
    let busy = Helper::start(&["busy"]);
    cortex
        .run(&["apply", &name, "--pid", &busy.pid_arg()])
        .expect(0, "apply");
    let dir = profile_cgroup(&name);
    wait_until(Duration::from_secs(10), || {
        (keyed(dir.join("cpu.stat"), "nr_throttled") > 2).then_some(())
    })
    .expect("the busy loop is throttled");

    let out = cortex
        .run(&["status", &name, "--json"])
        .expect(0, "status --json");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let cg = &json["cgroup"];
    assert_eq!(cg["pids"], serde_json::json!([busy.pid()]));
    assert_eq!(cg["memory"]["max"], 200u64 << 20);
    match fs::read_to_string(dir.join("memory.swap.max")) {
        Ok(text) => assert_eq!(
            cg["memory"]["swap_max"],
            text.trim()
                .parse::<u64>()
                .map_or(serde_json::Value::Null, Into::into),
            "memory.swap.max reads {text:?}"
        ),
        Err(e) => println!("memory.swap.max: {e}; swap not checked"),
    }
    let peak: u64 = read(dir.join("memory.peak")).parse().unwrap();
    assert!(
        cg["memory"]["peak"].as_u64().unwrap() <= peak,
        "peak only grows"
    );
    let throttled_now = keyed(dir.join("cpu.stat"), "nr_throttled");
    let reported = cg["cpu"]["nr_throttled"].as_u64().unwrap();
    assert!(
        reported > 2 && reported <= throttled_now,
        "{reported} vs {throttled_now}"
    );
    for resource in ["cpu", "memory", "io"] {
        let file = dir.join(format!("{resource}.pressure"));
        match fs::read_to_string(&file) {
            Ok(_) => assert!(
                cg["pressure"][resource]["some"]["avg10"].is_number(),
                "{resource} pressure missing from {cg}"
            ),
            Err(e) => println!("{}: {e}; pressure not checked", file.display()),
        }
    }

    let out = cortex.run(&["status", &name]).expect(0, "status");
    assert!(out.stdout.contains("(enforced)"), "{}", out.stdout);
    assert!(out.stdout.contains("throttled in"), "{}", out.stdout);
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn status_of_every_profile_counts_a_process_list_longer_than_a_page() {
    let cortex = Cortex::root();
    let name = unique("many");
    cortex
        .run(&["create", &name, "--memory", "512M", "--oom-adj", "0"])
        .expect(0, "create");
    let mut parent = Helper::start(&["forks", "1000"]);
    cortex
        .run(&["apply", &name, "--pid", &parent.pid_arg()])
        .expect(0, "apply");
    parent.send("go");
    parent.expect_line("done");

    // The kernel hands a list this long out over several reads, some of
    // them short before the end.
    let procs = read(profile_cgroup(&name).join("cgroup.procs"));
    let listed = procs.lines().count();
    assert!(listed > 1000, "{listed} processes in cgroup.procs");
    assert!(procs.len() > 4096, "cgroup.procs is {} bytes", procs.len());

    let table = cortex.run(&["status"]).expect(0, "status");
    let line = table
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no line for {name}:\n{}", table.stdout));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "enforced", "{line}");
    assert_eq!(fields[2], listed.to_string(), "{line}");

    let json = cortex.run(&["status", "--json"]).expect(0, "status --json");
    let all: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        all[0]["cgroup"]["pids"].as_array().map(Vec::len),
        Some(listed),
        "{}",
        all[0]["cgroup"]
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn doctor_passes_on_a_cgroup_v2_host() {
    let cortex = Cortex::root();
    let out = cortex.run(&["doctor"]);
    let out = out.expect(0, "doctor as root on cgroup v2");
    assert!(
        out.stdout.lines().any(|l| l.starts_with("ok    cgroup ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("ok    delegation ")),
        "{}",
        out.stdout
    );
    let json = cortex.run(&["doctor", "--json"]).expect(0, "doctor --json");
    let checks: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(checks
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["level"] != "fail"));
}
