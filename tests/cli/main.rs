//! Binary-level tests: the real `cortex` binary against a temp database
//! and a temp directory shaped like cgroupfs. A plain directory enforces
//! nothing; these check what is written, printed and returned. The VM
//! tests (tests/kernel.rs) check the same binary on a real kernel.

mod gpus;
mod ops;
mod support;

use std::fs;

use support::{has_cap_sys_resource, Sleeper, TestEnv};

mod create {
    use super::*;

    #[test]
    fn writes_the_preset_into_the_cgroup() {
        let env = TestEnv::new();
        let run = env.limits(&["create", "job", "--preset", "batch"]);
        run.ok();
        assert!(run
            .stdout
            .starts_with("created profile 'job' from preset batch: cpu 8 cores"));
        let dir = env.profile_dir("job");
        assert!(run.stdout.contains(&format!("cgroup {}", dir.display())));
        assert_eq!(env.read(&dir.join("cpu.max")), "800000 100000");
        assert_eq!(env.read(&dir.join("cpu.weight")), "50");
        assert_eq!(env.read(&dir.join("memory.max")), (64u64 << 30).to_string());
        assert_eq!(
            env.read(&dir.join("memory.high")),
            (56u64 << 30).to_string()
        );
        assert_eq!(
            env.read(&dir.join("cpuset.cpus")),
            "",
            "no --cpus: the parent's CPUs"
        );
        assert_eq!(
            env.read(&env.cgroup_root().join("cgroup.subtree_control")),
            "+cpu +cpuset +io +memory +pids"
        );
    }

    #[test]
    fn overrides_reach_the_kernel_files() {
        let env = TestEnv::new();
        env.limits(&[
            "create",
            "job",
            "--cpu",
            "250",
            "--cpus",
            "0-3,8",
            "--cpu-weight",
            "900",
            "--memory",
            "1.5",
            "--memory-high",
            "1G",
            "--oom-adj",
            "-100",
        ])
        .ok();
        let dir = env.profile_dir("job");
        assert_eq!(env.read(&dir.join("cpu.max")), "250000 100000");
        assert_eq!(env.read(&dir.join("cpu.weight")), "900");
        assert_eq!(env.read(&dir.join("cpuset.cpus")), "0-3,8");
        assert_eq!(
            env.read(&dir.join("memory.max")),
            (1536u64 << 20).to_string()
        );
        assert_eq!(env.read(&dir.join("memory.high")), (1u64 << 30).to_string());
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_written() {
        let long = "x".repeat(65);
        let cases: &[(&[&str], &str)] = &[
            (&[""], "invalid profile name ''"),
            (&["."], "invalid profile name '.'"),
            (&[".."], "invalid profile name '..'"),
            (&["../evil"], "invalid profile name '../evil'"),
            (&["a/b"], "invalid profile name 'a/b'"),
            (&["-x"], "unexpected argument"),
            (&[&long], "longer than 64 characters"),
            (&["a b"], "invalid profile name 'a b'"),
            (&["cgroup.procs"], "clashes with cgroup interface files"),
            (&["job", "--memory", "0"], "'0' is too small"),
            (&["job", "--memory", "-1G"], "'-1G' is not a size"),
            (
                &["job", "--memory", "99999999999999999999G"],
                "is too large",
            ),
            (&["job", "--memory", "lots"], "'lots' is not a size"),
            (&["job", "--memory-high", "0B"], "'0B' is too small"),
            (
                &["job", "--memory", "1G", "--memory-high", "2G"],
                "is above memory max",
            ),
            (&["job", "--cpu", "0"], "invalid CPU quota '0'"),
            (&["job", "--cpu", "-5"], "invalid CPU quota '-5'"),
            (&["job", "--cpu", "99999999"], "more than 8192 cores"),
            (&["job", "--cpu", "lots"], "invalid CPU quota 'lots'"),
            (
                &["job", "--oom-adj", "1001"],
                "invalid OOM score adjustment '1001'",
            ),
            (
                &["job", "--oom-adj", "-1001"],
                "invalid OOM score adjustment '-1001'",
            ),
            (&["job", "--cpu-weight", "0"], "invalid CPU weight '0'"),
            (
                &["job", "--cpu-weight", "10001"],
                "invalid CPU weight '10001'",
            ),
            (&["job", "--cpus", "4-2"], "runs backwards"),
            (&["job", "--cpus", ""], "name at least one CPU"),
            (&["job", "--gpus", "-1"], "invalid GPU count '-1'"),
            (&["job", "--gpu-share", "101"], "invalid GPU share '101'"),
            (&["job", "--preset", "gaming"], "unknown preset 'gaming'"),
        ];
        for (args, part) in cases {
            let env = TestEnv::new();
            let before = env.cgroup_tree();
            let mut all = vec!["create"];
            all.extend_from_slice(args);
            let run = env.limits(&all);
            run.code(2);
            if part.starts_with("unexpected") {
                assert!(run.stderr.contains(part), "{args:?}: {}", run.stderr);
            } else {
                run.one_error(part);
            }
            assert_eq!(
                env.cgroup_tree(),
                before,
                "{args:?} touched the cgroup root"
            );
            assert!(!env.db().exists(), "{args:?} created the database");
        }
    }

    #[test]
    fn a_taken_name_is_a_conflict() {
        let env = TestEnv::new();
        env.limits(&["create", "job"]).ok();
        env.limits(&["create", "job", "--cpu", "100"])
            .code(4)
            .one_error("a profile named 'job' already exists");
        assert_eq!(
            env.read(&env.profile_dir("job").join("cpu.max")),
            "400000 100000",
            "the loser changed nothing"
        );
    }

    #[test]
    fn of_concurrent_creates_exactly_one_wins() {
        let env = TestEnv::new();
        let children: Vec<_> = (0..8)
            .map(|i| {
                env.command(&[
                    "limits",
                    "create",
                    "job",
                    "--cpu-weight",
                    &(100 + i).to_string(),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let codes: Vec<i32> = outputs.iter().map(|o| o.status.code().unwrap()).collect();
        assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
        assert_eq!(codes.iter().filter(|&&c| c == 4).count(), 7, "{codes:?}");
        for o in outputs.iter().filter(|o| o.status.code() == Some(4)) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("already exists"), "{err}");
        }
        let listed = env.limits(&["list", "--json"]).json();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let weight = listed[0]["limits"]["cpu_weight"]
            .as_u64()
            .unwrap()
            .to_string();
        assert_eq!(env.read(&env.profile_dir("job").join("cpu.weight")), weight);
    }

    #[test]
    fn a_host_without_cgroup_v2_stores_the_profile_and_says_so() {
        let env = TestEnv::hybrid();
        let run = env.limits(&["create", "job"]);
        run.code(5);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", run.stderr);
        assert!(lines[0].starts_with("cortex: warning: the limits of 'job' not enforced: "));
        assert!(lines[0].contains("hybrid cgroup host"), "{}", lines[0]);
        assert!(!env.cgroup_root().join("cortex.slice").exists());

        env.limits(&["env", "job"]).ok();
        env.limits(&["presets"]).ok();
        let list = env.limits(&["list"]);
        list.ok();
        assert!(list.stdout.contains("job "), "{}", list.stdout);
        let status = env.limits(&["status", "job", "--json"]);
        status.ok();
        let json = status.json();
        assert_eq!(json["cgroup"]["enforced"], false);
        assert!(json["cgroup"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("hybrid"));
        env.limits(&["apply", "job", "--pid", &std::process::id().to_string()])
            .code(6)
            .one_error("hybrid cgroup host");
        env.limits(&["delete", "job"]).ok();
    }

    #[test]
    fn without_any_cgroup_filesystem_the_message_says_how_to_mount_one() {
        let env = TestEnv::bare();
        let run = env.limits(&["create", "job"]);
        run.code(5);
        assert!(
            run.stderr.contains("no cgroup filesystem is mounted at"),
            "{}",
            run.stderr
        );
    }
}

mod apply {
    use super::*;

    #[test]
    fn moves_the_process_and_sets_its_oom_priority() {
        let env = TestEnv::new();
        env.limits(&["create", "job", "--oom-adj", "150"]).ok();
        let sleeper = Sleeper::start();
        let pid = sleeper.pid().to_string();
        let run = env.limits(&["apply", "job", "--pid", &pid]);
        run.ok();
        assert!(run.stdout.contains("oom_score_adj 150"), "{}", run.stdout);
        assert_eq!(env.read(&env.profile_dir("job").join("cgroup.procs")), pid);
        let adj = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        assert_eq!(adj.trim(), "150");

        let status = env.limits(&["status", "job", "--json"]).json();
        assert_eq!(
            status["applied"][0]["pid"].as_u64(),
            Some(u64::from(sleeper.pid()))
        );
        assert_eq!(status["applied"][0]["alive"], true);
    }

    #[test]
    fn a_negative_oom_priority_needs_cap_sys_resource() {
        let env = TestEnv::new();
        env.limits(&["create", "job", "--oom-adj", "-300"]).ok();
        let sleeper = Sleeper::start();
        let pid = sleeper.pid().to_string();
        let run = env.limits(&["apply", "job", "--pid", &pid]);
        let adj = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        if has_cap_sys_resource() {
            run.ok();
            assert_eq!(adj.trim(), "-300");
        } else {
            run.code(5);
            assert!(
                run.stderr.contains("needs CAP_SYS_RESOURCE"),
                "{}",
                run.stderr
            );
            assert_eq!(adj.trim(), "0", "nothing claimed that was not done");
            assert!(
                run.stdout.contains("oom_score_adj unchanged"),
                "{}",
                run.stdout
            );
        }
        assert_eq!(env.read(&env.profile_dir("job").join("cgroup.procs")), pid);
    }

    #[test]
    fn refuses_missing_processes_and_profiles() {
        let env = TestEnv::new();
        env.limits(&["create", "job"]).ok();
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        env.limits(&["apply", "job", "--pid", &gone.to_string()])
            .code(3)
            .one_error(&format!("no process with pid {gone}"));
        env.limits(&["apply", "job", "--pid", "abc"])
            .code(2)
            .one_error("invalid pid 'abc'");
        env.limits(&["apply", "job", "--pid", "0"])
            .code(2)
            .one_error("invalid pid '0'");
        env.limits(&["apply", "job", "--pid", "1"])
            .code(2)
            .one_error("refusing to move pid 1");
        let sleeper = Sleeper::start();
        env.limits(&["apply", "nope", "--pid", &sleeper.pid().to_string()])
            .code(3)
            .one_error("no profile named 'nope'");
        assert!(
            !env.profile_dir("job").join("cgroup.procs").exists(),
            "no refused apply wrote a pid"
        );
    }

    #[test]
    fn recreates_a_missing_cgroup() {
        let env = TestEnv::new();
        env.limits(&["create", "job"]).ok();
        fs::remove_dir_all(env.profile_dir("job")).unwrap();
        let sleeper = Sleeper::start();
        env.limits(&["status", "job"]).ok();
        let status = env.limits(&["status", "job", "--json"]).json();
        assert_eq!(status["cgroup"]["exists"], false);
        env.limits(&["apply", "job", "--pid", &sleeper.pid().to_string()])
            .code(if has_cap_sys_resource() { 0 } else { 5 });
        assert_eq!(
            env.read(&env.profile_dir("job").join("cpu.max")),
            "400000 100000"
        );
    }
}

mod env_output {
    use super::*;

    #[test]
    fn prints_shell_exports_that_evaluate() {
        let env = TestEnv::new();
        env.limits(&["create", "job", "--cpu", "250", "--gpus", "0"])
            .ok();
        let run = env.limits(&["env", "job"]);
        run.ok();
        assert_eq!(
            run.stdout,
            "export OMP_NUM_THREADS='2';\nexport MKL_NUM_THREADS='2';\n\
             export OPENBLAS_NUM_THREADS='2';\nexport NUMEXPR_NUM_THREADS='2';\n\
             export CUDA_VISIBLE_DEVICES='';\nexport HIP_VISIBLE_DEVICES='';\n\
             export ROCR_VISIBLE_DEVICES='';\nexport ONEAPI_DEVICE_SELECTOR='*:cpu';\n"
        );
        let script = format!(
            "eval $('{}' limits env job); echo \"$OMP_NUM_THREADS|${{CUDA_VISIBLE_DEVICES-unset}}|$ONEAPI_DEVICE_SELECTOR\"",
            env!("CARGO_BIN_EXE_cortex")
        );
        let shell = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("CORTEX_LIMITS_DB", env.db())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&shell.stdout), "2||*:cpu\n");
    }

    #[test]
    fn fish_syntax() {
        let env = TestEnv::new();
        env.limits(&["create", "job", "--cpu", "100"]).ok();
        let run = env.limits(&["env", "job", "--shell", "fish"]);
        run.ok();
        assert!(
            run.stdout.starts_with("set -gx OMP_NUM_THREADS '1';\n"),
            "{}",
            run.stdout
        );
    }

    #[test]
    fn an_unknown_profile_is_not_found_and_creates_no_database() {
        let env = TestEnv::new();
        env.limits(&["env", "nope"])
            .code(3)
            .one_error("no profile named 'nope'");
        assert!(!env.db().exists());
    }
}

mod reading {
    use super::*;

    #[test]
    fn presets_as_table_and_json() {
        let env = TestEnv::new();
        let run = env.limits(&["presets"]);
        run.ok();
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(
            lines[0],
            "PRESET       CORES  WEIGHT  MEMORY  HIGH  GPU   OOM   USE"
        );
        assert_eq!(
            lines[1],
            "inference    4      400     32G     28G   100%  -500  low-latency serving"
        );
        let json = env.limits(&["presets", "--json"]).json();
        let training = &json[1];
        assert_eq!(training["name"], "training");
        assert_eq!(training["limits"]["cpu_percent"], 1600.0);
        assert_eq!(training["limits"]["memory_max"], 128u64 << 30);
        assert_eq!(training["limits"]["memory_high"], 112u64 << 30);
        assert_eq!(training["limits"]["oom_score_adj"], -800);
        assert_eq!(training["limits"]["gpu_share_percent"], 100);
        assert_eq!(training["limits"]["cpus"], serde_json::Value::Null);
    }

    #[test]
    fn list_and_status_of_an_empty_store() {
        let env = TestEnv::new();
        let list = env.limits(&["list", "--json"]);
        list.ok();
        assert_eq!(list.json(), serde_json::json!([]));
        env.limits(&["status", "--json"]).ok();
        env.limits(&["status", "nope"])
            .code(3)
            .one_error("no profile named 'nope'");
        assert!(!env.db().exists(), "reading never creates the database");
    }

    #[test]
    fn status_shows_configured_and_live_state() {
        let env = TestEnv::new();
        env.limits(&["create", "job", "--memory", "64M", "--cpu", "50"])
            .ok();
        let dir = env.profile_dir("job");
        env.write(
            &format!("cgroup/cortex.slice/job/{}", "memory.current"),
            "1052672\n",
        );
        env.write(
            "cgroup/cortex.slice/job/cpu.stat",
            "usage_usec 2000000\nuser_usec 1990000\nsystem_usec 10000\nnr_periods 40\nnr_throttled 38\nthrottled_usec 1900000\n",
        );
        env.write(
            "cgroup/cortex.slice/job/memory.events",
            "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        env.write("cgroup/cortex.slice/job/cgroup.procs", "812\n813\n");

        let json = env.limits(&["status", "job", "--json"]).json();
        assert_eq!(json["name"], "job");
        assert_eq!(json["limits"]["cpu_percent"], 50.0);
        assert_eq!(json["limits"]["memory_max"], 64u64 << 20);
        let cg = &json["cgroup"];
        assert_eq!(cg["path"], dir.display().to_string());
        assert_eq!(cg["exists"], true);
        assert_eq!(cg["enforced"], true);
        assert_eq!(cg["pids"], serde_json::json!([812, 813]));
        assert_eq!(cg["memory"]["current"], 1_052_672);
        assert_eq!(cg["memory"]["max"], 64u64 << 20);
        assert_eq!(cg["memory"]["high"], 56u64 << 20);
        assert_eq!(cg["cpu"]["nr_throttled"], 38);
        assert_eq!(cg["memory_events"]["oom_kill"], 1);

        let text = env.limits(&["status", "job"]);
        text.ok();
        assert!(text.stdout.contains("(enforced)"), "{}", text.stdout);
        assert!(
            text.stdout.contains("processes  2: 812, 813"),
            "{}",
            text.stdout
        );
        assert!(text.stdout.contains("oom_kill 1"), "{}", text.stdout);

        fs::write(dir.join("memory.max"), "max\n").unwrap();
        let json = env.limits(&["status", "job", "--json"]).json();
        assert_eq!(json["cgroup"]["enforced"], false);
        assert_eq!(json["cgroup"]["drift"], serde_json::json!(["memory.max"]));
        let all = env.limits(&["status"]);
        all.ok();
        assert!(
            all.stdout
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("job   drifted  2"),
            "{}",
            all.stdout
        );
    }

    #[test]
    fn list_shows_every_profile_in_order() {
        let env = TestEnv::new();
        for name in ["zeta", "alpha", "mid"] {
            env.limits(&["create", name, "--preset", "interactive"])
                .ok();
        }
        let run = env.limits(&["list"]);
        run.ok();
        let names: Vec<&str> = run
            .stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        let env = TestEnv::new();
        for i in 0..200 {
            env.limits(&["create", &format!("p{i}")]).ok();
        }
        let mut child = env
            .command(&["limits", "list"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }
}

mod delete {
    use super::*;

    #[test]
    fn refuses_while_processes_are_inside() {
        let env = TestEnv::new();
        env.limits(&["create", "job"]).ok();
        env.write("cgroup/cortex.slice/job/cgroup.procs", "4242\n");
        env.limits(&["delete", "job"])
            .code(4)
            .one_error("still holds 1 process(es) (4242): stop them first, or use --force");
        assert!(env.profile_dir("job").exists());
        env.limits(&["env", "job"]).ok();

        env.write("cgroup/cortex.slice/job/cgroup.procs", "");
        let run = env.limits(&["delete", "job"]);
        run.ok();
        assert!(run
            .stdout
            .starts_with("deleted profile 'job' and its cgroup"));
        assert!(!env.profile_dir("job").exists());
        env.limits(&["env", "job"]).code(3);
        env.limits(&["delete", "job"])
            .code(3)
            .one_error("no profile named 'job'");
    }
}

mod database {
    use super::*;

    #[test]
    fn a_file_that_is_not_sqlite_is_named() {
        let env = TestEnv::new();
        env.write("state/limits.db", &"not a database at all\n".repeat(20));
        env.limits(&["create", "job"])
            .code(1)
            .one_error("is not a cortex profile database (not SQLite)");
        env.limits(&["list"]).code(1).one_error("not SQLite");
        assert!(
            !env.profile_dir("job").exists(),
            "no cgroup without a record"
        );
    }

    #[test]
    fn an_unusable_path_is_named() {
        let env = TestEnv::new();
        // A directory where the file should be.
        fs::create_dir_all(env.db()).unwrap();
        env.limits(&["create", "job"]).code(1).one_error(&format!(
            "cannot open the profile database {}",
            env.db().display()
        ));
        assert!(!env.profile_dir("job").exists());
    }
}

mod help {
    use super::*;

    #[test]
    fn documents_exit_codes() {
        let env = TestEnv::new();
        let run = env.run(&["limits", "--help"]);
        run.ok();
        assert!(run.stdout.contains("Exit codes:"), "{}", run.stdout);
        assert!(run.stdout.contains("5  partly done"), "{}", run.stdout);
        let create = env.run(&["limits", "create", "--help"]);
        assert!(
            create.stdout.contains("a bare number is GiB"),
            "{}",
            create.stdout
        );
    }
}
