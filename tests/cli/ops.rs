//! `update`, `restore`, `run`, `doctor`, completions and the man page,
//! against a temp cgroupfs tree.

use std::fs;

use crate::support::TestEnv;

#[test]
fn update_rewrites_the_record_and_the_cgroup() {
    let env = TestEnv::new();
    env.limits(&["create", "job", "--preset", "batch"]).ok();
    let run = env.limits(&[
        "update", "job", "--cpu", "150", "--memory", "2G", "--cpus", "0-1",
    ]);
    run.ok();
    assert!(
        run.stdout
            .starts_with("updated profile 'job': cpu 1.5 cores"),
        "{}",
        run.stdout
    );
    let dir = env.profile_dir("job");
    assert_eq!(env.read(&dir.join("cpu.max")), "150000 100000");
    assert_eq!(
        env.read(&dir.join("cpu.weight")),
        "50",
        "kept from the stored profile"
    );
    assert_eq!(env.read(&dir.join("memory.max")), (2u64 << 30).to_string());
    assert_eq!(
        env.read(&dir.join("memory.high")),
        (1792u64 << 20).to_string()
    );
    assert_eq!(env.read(&dir.join("cpuset.cpus")), "0-1");

    let json = env.limits(&["status", "job", "--json"]).json();
    assert_eq!(json["preset"], "batch");
    assert_eq!(json["limits"]["cpu_percent"], 150.0);
    assert_eq!(json["cgroup"]["enforced"], true);

    env.limits(&["update", "job", "--preset", "interactive"])
        .ok();
    assert_eq!(
        env.read(&dir.join("cpu.max")),
        "200000 100000",
        "preset values again"
    );
    assert_eq!(
        env.read(&dir.join("cpuset.cpus")),
        "",
        "the new preset pins nothing"
    );
}

#[test]
fn update_refuses_bad_input_and_unknown_profiles() {
    let env = TestEnv::new();
    env.limits(&["create", "job"]).ok();
    env.limits(&["update", "job", "--memory", "1G", "--memory-high", "2G"])
        .code(2)
        .one_error("is above memory max");
    env.limits(&["update", "job", "--preset", "gaming"])
        .code(2)
        .one_error("unknown preset 'gaming'");
    env.limits(&["update", "nope", "--cpu", "100"])
        .code(3)
        .one_error("no profile named 'nope'");
    assert_eq!(
        env.read(&env.profile_dir("job").join("cpu.max")),
        "400000 100000"
    );
}

#[test]
fn update_below_usage_needs_force() {
    let env = TestEnv::new();
    env.limits(&["create", "job", "--memory", "1G"]).ok();
    env.write(
        "cgroup/cortex.slice/job/memory.current",
        &format!("{}\n", 600u64 << 20),
    );
    env.limits(&["update", "job", "--memory", "512M"])
        .code(4)
        .one_error("is below what it uses now (600M): the kernel would reclaim");
    assert_eq!(
        env.read(&env.profile_dir("job").join("memory.max")),
        (1u64 << 30).to_string()
    );
    env.limits(&["update", "job", "--memory", "512M", "--force"])
        .ok();
    assert_eq!(
        env.read(&env.profile_dir("job").join("memory.max")),
        (512u64 << 20).to_string()
    );
}

#[test]
fn restore_recreates_what_is_stored() {
    let env = TestEnv::new();
    env.limits(&["create", "a", "--cpu", "50"]).ok();
    env.limits(&["create", "b", "--preset", "training"]).ok();
    fs::remove_dir_all(env.cgroup_root().join("cortex.slice")).unwrap();
    let run = env.limits(&["restore"]);
    run.ok();
    assert_eq!(
        run.stdout,
        "restored 'a' (created)\nrestored 'b' (created)\n"
    );
    assert_eq!(
        env.read(&env.profile_dir("a").join("cpu.max")),
        "50000 100000"
    );
    assert_eq!(env.read(&env.profile_dir("b").join("cpu.weight")), "200");
    let again = env.limits(&["restore"]);
    again.ok();
    assert_eq!(
        again.stdout,
        "restored 'a' (present)\nrestored 'b' (present)\n"
    );
}

#[test]
fn restore_on_a_host_without_cgroup_v2_is_not_possible() {
    let env = TestEnv::hybrid();
    env.limits(&["create", "a"]).code(5);
    env.limits(&["restore"])
        .code(6)
        .one_error("hybrid cgroup host");
}

#[test]
fn run_execs_with_the_profile_environment() {
    let env = TestEnv::new();
    env.limits(&["create", "job", "--cpu", "300", "--oom-adj", "100"])
        .ok();
    let run = env.limits(&[
        "run",
        "job",
        "--",
        "sh",
        "-c",
        "echo $OMP_NUM_THREADS $(cat /proc/self/oom_score_adj) $$; exit 3",
    ]);
    run.code(3);
    let words: Vec<&str> = run.stdout.split_whitespace().collect();
    assert_eq!(&words[..2], ["3", "100"], "{}", run.stdout);
    // The shell is the process cortex moved: its pid is in cgroup.procs.
    assert_eq!(
        env.read(&env.profile_dir("job").join("cgroup.procs")),
        words[2]
    );
}

#[test]
fn run_reports_missing_and_unexecutable_commands() {
    let env = TestEnv::new();
    env.limits(&["create", "job", "--oom-adj", "0"]).ok();
    env.limits(&["run", "job", "--", "/no/such/program"])
        .code(127)
        .one_error("command not found: /no/such/program");
    env.write("plain.sh", "#!/bin/sh\n");
    let plain = env.path("plain.sh");
    env.limits(&["run", "job", "--", plain.to_str().unwrap()])
        .code(126)
        .one_error("cannot execute");
    env.limits(&["run", "nope", "--", "true"])
        .code(3)
        .one_error("no profile named 'nope'");
}

#[test]
fn doctor_explains_a_hybrid_host() {
    let env = TestEnv::hybrid();
    let run = env.limits(&["doctor"]);
    run.code(1);
    assert!(
        run.stdout.starts_with("fail  cgroup       "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("fix: boot with systemd.unified_cgroup_hierarchy=1"),
        "{}",
        run.stdout
    );
    let json = env.limits(&["doctor", "--json"]);
    json.code(1);
    let checks = json.json();
    assert_eq!(checks[0]["check"], "cgroup");
    assert_eq!(checks[0]["level"], "fail");
}

#[test]
fn completions_and_man_page_come_from_the_command_line() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = env.run(&["completions", shell]);
        run.ok();
        assert!(run.stdout.contains("cortex"), "{shell}");
        assert!(
            run.stdout.contains("restore"),
            "{shell} completes the limits commands"
        );
    }
    let man = env.run(&["man"]);
    man.ok();
    assert!(man.stdout.starts_with(".ie"), "roff: {}", &man.stdout[..40]);
    assert!(man.stdout.contains("cortex"));
}

#[test]
fn exited_processes_are_forgotten_at_the_next_apply() {
    let env = TestEnv::new();
    env.limits(&["create", "job", "--oom-adj", "0"]).ok();
    let mut first = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    env.limits(&["apply", "job", "--pid", &first.id().to_string()])
        .ok();
    first.kill().unwrap();
    first.wait().unwrap();
    let second = crate::support::Sleeper::start();
    env.limits(&["apply", "job", "--pid", &second.pid().to_string()])
        .ok();
    let json = env.limits(&["status", "job", "--json"]).json();
    let pids: Vec<u64> = json["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [u64::from(second.pid())]);
}

/// `cortex limits ARGS` with GPU discovery reading a fixture machine.
fn on_machine(env: &TestEnv, machine: &str, args: &[&str]) -> crate::support::Run {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/accel")
        .join(machine);
    let mut all = vec!["limits"];
    all.extend_from_slice(args);
    let out = env
        .command(&all)
        .env("CORTEX_ACCEL_ROOT", root)
        .output()
        .unwrap();
    crate::support::Run::from(out)
}

fn holders(env: &TestEnv) -> Vec<Vec<String>> {
    let json = on_machine(env, "h100-8x", &["gpus", "--json"]).json();
    json.as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["held_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["profile"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn update_places_a_changed_gpu_request_again() {
    let env = TestEnv::new();
    on_machine(&env, "h100-8x", &["create", "a", "--gpus", "2"]).ok();
    on_machine(&env, "h100-8x", &["create", "b", "--gpus", "6"]).ok();
    let held_by_a = |env: &TestEnv| {
        holders(env)
            .iter()
            .filter(|h| h.iter().any(|p| p == "a"))
            .count()
    };
    assert_eq!(held_by_a(&env), 2);

    on_machine(&env, "h100-8x", &["update", "a", "--gpus", "3"])
        .code(4)
        .one_error("not enough GPUs for profile 'a'");
    assert_eq!(
        held_by_a(&env),
        2,
        "a refused update keeps the old reservation"
    );

    on_machine(&env, "h100-8x", &["update", "a", "--gpu-share", "50"]).ok();
    assert_eq!(
        held_by_a(&env),
        2,
        "its own old shares do not count against it"
    );

    on_machine(&env, "h100-8x", &["delete", "b"]).ok();
    on_machine(&env, "h100-8x", &["update", "a", "--gpus", "3"]).ok();
    assert_eq!(held_by_a(&env), 3);
    let status = on_machine(&env, "h100-8x", &["status", "a", "--json"]).json();
    assert_eq!(status["limits"]["gpus"], 3);
    assert_eq!(status["limits"]["gpu_share_percent"], 50);
}

/// A store large enough that `status` reads it on several threads still
/// shows every profile once, in name order, each with its own cgroup.
#[test]
fn status_of_a_large_store_is_complete_and_in_order() {
    use cortex_limits::plan::{Limits, Overrides, ProfileName};
    use cortex_limits::preset::Preset;
    use cortex_limits::store::{self, Profile, Store};

    let env = TestEnv::new();
    env.limits(&["create", "seed"]).ok();
    let mut db = Store::open(&env.db()).unwrap();
    let tx = db.begin().unwrap();
    let count = 1_500;
    for i in 0..count {
        let limits = Limits::resolve(Preset::Batch, &Overrides::default()).unwrap();
        tx.insert(&Profile {
            name: ProfileName::new(&format!("p{i:04}")).unwrap(),
            preset: Preset::Batch,
            limits,
            created_at: store::now(),
            updated_at: store::now(),
        })
        .unwrap();
        if i % 2 == 0 {
            std::fs::create_dir_all(env.profile_dir(&format!("p{i:04}"))).unwrap();
        }
    }
    tx.commit().unwrap();
    drop(db);

    let json = env.limits(&["status", "--json"]).json();
    let all = json.as_array().unwrap();
    assert_eq!(all.len(), count + 1);
    let names: Vec<&str> = all.iter().map(|s| s["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "in name order");
    for s in &all[..count] {
        let name = s["name"].as_str().unwrap();
        let even = name[1..].parse::<usize>().unwrap() % 2 == 0;
        assert_eq!(s["cgroup"]["exists"], even, "{name}: {s}");
    }
}
