//! GPUs: discovery, reservations, placement and the environment, with
//! discovery pointed at fixture trees shaped after real machines
//! (tests/fixtures/accel) while the cgroup root is a temp tree.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{Run, TestEnv};

const H100_UUID_0: &str = "GPU-5b1b0e3a-7c4f-2d8e-9a61-0f3c2b7d4e10";
const H100_UUID_1: &str = "GPU-8d2f4c61-1a9b-47e3-b5d0-6c8e2f1a3b22";

fn fixture(machine: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/accel")
        .join(machine)
}

/// A test environment whose GPU discovery reads a fixture machine.
struct Machine {
    env: TestEnv,
    root: PathBuf,
}

impl Machine {
    fn new(name: &str) -> Machine {
        Machine {
            env: TestEnv::new(),
            root: fixture(name),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["limits"];
        all.extend_from_slice(args);
        let mut cmd = self.env.command(&all);
        cmd.env("CORTEX_ACCEL_ROOT", &self.root);
        cmd
    }

    fn limits(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    fn cgroup_file(&self, profile: &str, file: &str) -> String {
        self.env.read(&self.env.profile_dir(profile).join(file))
    }

    /// `env NAME` as (name, value) pairs, quotes removed.
    fn vars(&self, profile: &str) -> Vec<(String, String)> {
        let run = self.limits(&["env", profile]);
        run.ok();
        run.stdout
            .lines()
            .map(|l| {
                let (name, value) = l
                    .strip_prefix("export ")
                    .and_then(|l| l.strip_suffix(';'))
                    .and_then(|l| l.split_once('='))
                    .unwrap_or_else(|| panic!("an export line: {l}"));
                (name.to_string(), value.trim_matches('\'').to_string())
            })
            .collect()
    }

    fn gpu_vars(&self, profile: &str) -> Vec<(String, String)> {
        self.vars(profile)
            .into_iter()
            .filter(|(n, _)| !n.ends_with("_NUM_THREADS"))
            .collect()
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

mod listing {
    use super::*;

    #[test]
    fn the_h100_server_lists_eight_gpus_with_numa_nodes_and_devices() {
        let m = Machine::new("h100-8x");
        let run = m.limits(&["gpus"]);
        run.ok();
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 9, "{}", run.stdout);
        assert!(lines[0].starts_with("INDEX  VENDOR  MODEL"), "{}", lines[0]);
        assert!(lines[1].starts_with("0      nvidia  NVIDIA H100 80GB HBM3  0000:18:00.0"));
        assert!(lines[5].contains(" 1     28-55,84-111 "), "{}", lines[5]);
        assert!(lines[1].ends_with("free"), "{}", lines[1]);

        let json = m.limits(&["gpus", "--json"]).json();
        let gpus = json.as_array().unwrap();
        assert_eq!(gpus.len(), 8);
        let g = &gpus[4];
        assert_eq!(g["index"], 4);
        assert_eq!(g["vendor"], "nvidia");
        assert_eq!(g["bus_id"], "0000:9a:00.0");
        assert_eq!(g["uuid"], "GPU-2f8b1d57-9c4e-4a06-b7e3-5d1f8a2c9e58");
        assert_eq!(g["numa_node"], 1);
        assert_eq!(g["local_cpus"], "28-55,84-111");
        assert_eq!(
            g["devices"][0],
            serde_json::json!({"kind": "char", "major": 195, "minor": 4, "path": "/dev/nvidia4"})
        );
        assert_eq!(g["held_by"], serde_json::json!([]));
        assert_eq!(g["free_percent"], 100);
        assert_eq!(g["live"], serde_json::Value::Null, "no NVML for a fixture");
    }

    #[test]
    fn a_machine_without_gpus_lists_none() {
        let m = Machine::new("none");
        m.limits(&["gpus"]).ok();
        assert_eq!(m.limits(&["gpus"]).stdout, "no GPUs found\n");
        assert_eq!(m.limits(&["gpus", "--json"]).json(), serde_json::json!([]));
    }

    #[test]
    fn a_missing_root_is_a_machine_without_gpus() {
        let mut m = Machine::new("none");
        m.root = m.root.join("does-not-exist");
        assert_eq!(m.limits(&["gpus"]).stdout, "no GPUs found\n");
    }
}

mod reserving {
    use super::*;

    #[test]
    fn create_reserves_gpus_and_pins_cpus_and_memory_near_them() {
        let m = Machine::new("h100-8x");
        let run = m.limits(&["create", "serve", "--gpus", "2"]);
        run.ok();
        assert!(
            run.stdout.contains("gpus 0, 1 (nvidia, 100% each)\n"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("cpus 0-3"),
            "4 cores near GPUs 0-1: {}",
            run.stdout
        );
        assert_eq!(m.cgroup_file("serve", "cpuset.cpus"), "0-3");
        assert_eq!(m.cgroup_file("serve", "cpuset.mems"), "0");

        let json = m.limits(&["gpus", "--json"]).json();
        assert_eq!(
            json[0]["held_by"],
            serde_json::json!([{"profile": "serve", "share_percent": 100}])
        );
        assert_eq!(json[0]["free_percent"], 0);

        let status = m.limits(&["status", "serve", "--json"]).json();
        assert_eq!(status["limits"]["mems"], "0");
        assert_eq!(status["limits"]["gpu_binding"], "local");
        assert_eq!(status["gpus"][1]["index"], 1);
        assert_eq!(status["gpus"][1]["uuid"], H100_UUID_1);
        assert_eq!(status["gpus"][1]["share_percent"], 100);
        let text = m.limits(&["status", "serve"]).stdout;
        assert!(
            text.contains(&format!(
                "gpu        0 nvidia 0000:18:00.0 100% {H100_UUID_0}\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn a_second_profile_goes_to_the_next_free_gpus_and_cpus() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "a", "--gpus", "2"]).ok();
        let run = m.limits(&["create", "b", "--gpus", "2"]);
        run.ok();
        assert!(
            run.stdout.contains("gpus 2, 3 (nvidia, 100% each)"),
            "{}",
            run.stdout
        );
        assert_eq!(
            m.cgroup_file("b", "cpuset.cpus"),
            "4-7",
            "CPUs a is not pinned to"
        );
        let run = m.limits(&["create", "c", "--gpus", "3"]);
        assert!(
            run.stdout.contains("gpus 4, 5, 6 (nvidia"),
            "node 1 holds all three: {}",
            run.stdout
        );
        assert_eq!(m.cgroup_file("c", "cpuset.mems"), "1");
    }

    #[test]
    fn status_reports_a_changed_cpuset_mems() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "job", "--gpu-ids", "7"]).ok();
        assert_eq!(m.cgroup_file("job", "cpuset.mems"), "1");
        let json = m.limits(&["status", "job", "--json"]).json();
        assert_eq!(json["cgroup"]["drift"], serde_json::json!([]));
        std::fs::write(m.env.profile_dir("job").join("cpuset.mems"), "0-1\n").unwrap();
        let json = m.limits(&["status", "job", "--json"]).json();
        assert_eq!(json["cgroup"]["drift"], serde_json::json!(["cpuset.mems"]));
    }

    #[test]
    fn explicit_cpus_win_over_placement() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "job", "--gpus", "1", "--cpus", "100-103"])
            .ok();
        assert_eq!(m.cgroup_file("job", "cpuset.cpus"), "100-103");
        assert_eq!(
            m.cgroup_file("job", "cpuset.mems"),
            "",
            "no memory pinning either"
        );
    }

    #[test]
    fn shares_add_up_to_one_gpu() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "batch", "--preset", "batch", "--gpu-ids", "0"])
            .ok();
        m.limits(&["create", "nb", "--preset", "interactive", "--gpu-ids", "0"])
            .code(4)
            .one_error(
                "GPU 0 has 20% free, not the 50% profile 'nb' asks for; held by 'batch' \
                 (GPU 0 at 80%): choose another GPU (see `cortex limits gpus`) or a smaller \
                 --gpu-share",
            );
        m.limits(&[
            "create",
            "nb",
            "--preset",
            "interactive",
            "--gpu-ids",
            "0",
            "--gpu-share",
            "20",
        ])
        .ok();
        let json = m.limits(&["gpus", "--json"]).json();
        assert_eq!(json[0]["held_by"].as_array().unwrap().len(), 2);
        assert_eq!(json[0]["free_percent"], 0);
        let text = m.limits(&["gpus"]).stdout;
        assert!(
            text.lines().nth(1).unwrap().ends_with("batch 80%, nb 20%"),
            "{text}"
        );

        // Placement skips the full GPU for another shared profile.
        let run = m.limits(&["create", "nb2", "--preset", "interactive", "--gpus", "1"]);
        run.ok();
        assert!(
            run.stdout.contains("gpus 1 (nvidia, 50% each)"),
            "{}",
            run.stdout
        );
    }

    #[test]
    fn not_enough_gpus_says_how_many_are_free_and_who_holds_them() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "train", "--preset", "training", "--gpus", "6"])
            .ok();
        m.limits(&["create", "x", "--gpus", "3"]).code(4).one_error(
            "not enough GPUs for profile 'x': it asks for 3 at 100% each, and 2 of the 8 GPU(s) \
             here have room for that; held by 'train' (GPUs 0, 1, 2, 3, 4, 5 at 100%): delete \
             or change one of those profiles, ask for fewer GPUs, or a smaller --gpu-share",
        );
        m.limits(&["list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            m.limits(&["list", "--json"])
                .json()
                .as_array()
                .unwrap()
                .len(),
            1,
            "the refused profile is not stored"
        );
        assert!(!m.env.profile_dir("x").exists(), "nor its cgroup");
    }

    #[test]
    fn delete_releases_the_gpus() {
        let m = Machine::new("workstation");
        m.limits(&["create", "a", "--gpus", "2"]).ok();
        m.limits(&["create", "b", "--gpus", "1"]).code(4);
        m.limits(&["delete", "a"]).ok();
        m.limits(&["create", "b", "--gpus", "1"]).ok();
    }

    #[test]
    fn bad_ids_and_machines_without_gpus() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "j", "--gpu-ids", "zero"])
            .code(2)
            .one_error("invalid GPU id 'zero' in --gpu-ids");
        m.limits(&["create", "j", "--gpu-ids", "9"])
            .code(2)
            .one_error("no GPU '9' on this machine (8 GPU(s), indices 0-7)");
        m.limits(&["create", "j", "--gpus", "3", "--gpu-ids", "1,2"])
            .code(2)
            .one_error("--gpu-ids names 2 GPU(s) but --gpus asks for 3");

        let none = Machine::new("none");
        none.limits(&["create", "j", "--gpus", "1"])
            .code(2)
            .one_error("profile 'j' asks for 1 GPU(s), but no GPU was found on this machine");
    }

    #[test]
    fn export_only_keeps_the_count_without_binding_gpus() {
        let m = Machine::new("none");
        let run = m.limits(&["create", "slurm-job", "--gpus", "4", "--gpus-export-only"]);
        run.ok();
        assert!(
            run.stdout
                .contains("gpus 4 at 100% (export only, none reserved here)"),
            "{}",
            run.stdout
        );
        let status = m.limits(&["status", "slurm-job"]).stdout;
        assert!(
            status.contains("gpus       4 kept for export only: none reserved on this machine"),
            "{status}"
        );
        let json = m.limits(&["status", "slurm-job", "--json"]).json();
        assert_eq!(json["limits"]["gpus"], 4);
        assert_eq!(json["limits"]["gpu_binding"], "export-only");
        assert_eq!(json["gpus"], serde_json::json!([]));
        assert_eq!(m.gpu_vars("slurm-job"), vec![], "names no local GPU");
    }
}

mod environment {
    use super::*;

    #[test]
    fn nvidia_gpus_by_uuid_in_pci_order() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "job", "--gpus", "2"]).ok();
        assert_eq!(
            m.gpu_vars("job"),
            pairs(&[
                ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
                (
                    "CUDA_VISIBLE_DEVICES",
                    &format!("{H100_UUID_0},{H100_UUID_1}")
                ),
            ])
        );
    }

    #[test]
    fn amd_rocr_names_the_gpus_and_hip_counts_within_them() {
        let m = Machine::new("mi300x-4x");
        m.limits(&["create", "job", "--gpu-ids", "2,3"]).ok();
        assert_eq!(
            m.gpu_vars("job"),
            pairs(&[
                ("ROCR_VISIBLE_DEVICES", "2,3"),
                ("HIP_VISIBLE_DEVICES", "0,1")
            ])
        );
    }

    #[test]
    fn intel_level_zero_mask_and_oneapi_selector() {
        let m = Machine::new("max1550-2x");
        m.limits(&["create", "job", "--gpu-ids", "1"]).ok();
        assert_eq!(
            m.gpu_vars("job"),
            pairs(&[
                ("ZE_FLAT_DEVICE_HIERARCHY", "COMPOSITE"),
                ("ZE_ENABLE_PCI_ID_DEVICE_ORDER", "1"),
                ("ZE_AFFINITY_MASK", "1"),
                ("ONEAPI_DEVICE_SELECTOR", "level_zero:0"),
            ])
        );
    }

    #[test]
    fn the_workstation_gives_the_discrete_gpu_and_leaves_the_igpu_alone() {
        let m = Machine::new("workstation");
        let run = m.limits(&["create", "job", "--gpus", "1"]);
        assert!(
            run.stdout.contains("gpus 1 (nvidia, 100% each)"),
            "{}",
            run.stdout
        );
        let vars = m.gpu_vars("job");
        assert_eq!(
            vars,
            pairs(&[
                ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
                (
                    "CUDA_VISIBLE_DEVICES",
                    "GPU-3f6a2d91-7b4c-4e08-9d25-c1a8f0e7b364"
                ),
            ]),
            "no oneAPI variable: the profile holds no Intel GPU"
        );
        assert_eq!(
            m.cgroup_file("job", "cpuset.mems"),
            "",
            "no NUMA node known"
        );
        assert_eq!(m.cgroup_file("job", "cpuset.cpus"), "0-3");
    }

    #[test]
    fn a_share_below_100_adds_the_hints_for_its_vendor() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "job", "--preset", "batch", "--gpus", "1"])
            .ok();
        let vars = m.gpu_vars("job");
        assert_eq!(
            vars[2..],
            pairs(&[
                ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "80"),
                ("TF_FORCE_GPU_ALLOW_GROWTH", "true"),
                ("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.80"),
                (
                    "PYTORCH_CUDA_ALLOC_CONF",
                    "garbage_collection_threshold:0.80"
                ),
            ])[..]
        );

        let amd = Machine::new("mi300x-4x");
        amd.limits(&["create", "job", "--preset", "interactive", "--gpus", "1"])
            .ok();
        let names: Vec<String> = amd.gpu_vars("job").into_iter().map(|(n, _)| n).collect();
        assert!(
            !names.iter().any(|n| n.starts_with("CUDA_")),
            "no CUDA variable for an AMD GPU: {names:?}"
        );
        assert!(names.contains(&"XLA_PYTHON_CLIENT_MEM_FRACTION".to_string()));
    }

    /// `run` hands the command the same GPU variables `env` prints.
    #[test]
    fn run_gives_the_command_its_gpus() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "serve", "--gpus", "1", "--oom-adj", "0"])
            .ok();
        m.limits(&["create", "cpu-only", "--gpus", "0", "--oom-adj", "0"])
            .ok();
        let seen = |profile: &str| {
            let run = m.limits(&["run", profile, "--", "env"]);
            run.ok();
            let mut vars: Vec<(String, String)> = run
                .stdout
                .lines()
                .filter_map(|l| l.split_once('='))
                .filter(|(n, _)| m.gpu_vars(profile).iter().any(|(want, _)| want == n))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            vars.sort();
            let mut want = m.gpu_vars(profile);
            want.sort();
            (vars, want)
        };
        let (got, want) = seen("serve");
        assert!(
            want.contains(&("CUDA_VISIBLE_DEVICES".to_string(), H100_UUID_0.to_string())),
            "{want:?}"
        );
        assert_eq!(got, want);
        let (got, want) = seen("cpu-only");
        assert!(want
            .iter()
            .any(|(n, v)| n == "CUDA_VISIBLE_DEVICES" && v.is_empty()));
        assert_eq!(got, want);
    }

    #[test]
    fn zero_gpus_hide_all_and_no_request_leaves_them_alone() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "cpu-only", "--gpus", "0"]).ok();
        assert_eq!(
            m.gpu_vars("cpu-only"),
            pairs(&[
                ("CUDA_VISIBLE_DEVICES", ""),
                ("HIP_VISIBLE_DEVICES", ""),
                ("ROCR_VISIBLE_DEVICES", ""),
                ("ONEAPI_DEVICE_SELECTOR", "*:cpu"),
            ])
        );
        assert_eq!(m.cgroup_file("cpu-only", "cpuset.cpus"), "", "no placement");
        m.limits(&["create", "plain"]).ok();
        assert_eq!(m.gpu_vars("plain"), vec![]);
        let json = m.limits(&["gpus", "--json"]).json();
        assert!(json
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["held_by"] == serde_json::json!([])));
    }
}

mod isolation {
    use super::*;

    /// A temp tree is not cgroupfs, so no device filter can be attached:
    /// a profile asking about GPUs says only the environment hides them,
    /// one asking nothing about GPUs has nothing to isolate.
    #[test]
    fn status_says_when_only_the_environment_hides_gpus() {
        let m = Machine::new("h100-8x");
        m.limits(&["create", "held", "--gpus", "1"]).ok();
        m.limits(&["create", "none", "--gpus", "0"]).ok();
        m.limits(&["create", "plain"]).ok();
        m.limits(&["create", "far", "--gpus", "2", "--gpus-export-only"])
            .ok();

        for name in ["held", "none"] {
            let text = m.limits(&["status", name]).stdout;
            assert!(
                text.contains("isolation  environment only"),
                "{name}: {text}"
            );
            let json = m.limits(&["status", name, "--json"]).json();
            assert_eq!(json["isolation"]["mode"], "environment", "{name}");
            assert_eq!(json["isolation"]["program_id"], serde_json::Value::Null);
            assert!(json["isolation"]["reason"].is_string(), "{name}: {json}");
        }
        for name in ["plain", "far"] {
            let text = m.limits(&["status", name]).stdout;
            assert!(!text.contains("isolation"), "{name}: {text}");
            let json = m.limits(&["status", name, "--json"]).json();
            assert_eq!(json["isolation"], serde_json::Value::Null, "{name}");
        }
    }
}

/// The static binary loads NVML with glibc's dlopen: `doctor` finds a
/// stand-in library (tests/fixtures/nvml) through the loader's path, and
/// says so when there is none.
#[test]
fn doctor_loads_nvml_into_the_static_binary() {
    let m = Machine::new("h100-8x");
    let nvml = |library_path: Option<&std::path::Path>| {
        let mut cmd = m.command(&["doctor", "--json"]);
        cmd.env_remove("LD_LIBRARY_PATH");
        if let Some(dir) = library_path {
            cmd.env("LD_LIBRARY_PATH", dir);
        }
        let json = Run::from(cmd.output().unwrap()).json();
        json.as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "nvml")
            .cloned()
            .expect("an nvml check")
    };
    let without = nvml(None);
    assert_eq!(without["level"], "warn", "{without}");

    let dir = tempfile::tempdir().unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nvml/stand_in.c");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.path().join("libnvidia-ml.so.1"))
        .arg(source)
        .stdout(Stdio::null())
        .output()
        .expect("cc, the C compiler Rust links with, builds the stand-in NVML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with = nvml(Some(dir.path()));
    assert_eq!(with["level"], "ok", "{with}");
    assert_eq!(with["detail"], "libnvidia-ml.so.1 loads");
}

/// Twenty creates at once against eight exclusive GPUs: the database's
/// write lock makes each check-and-reserve atomic, so exactly eight win
/// and no GPU is reserved twice.
#[test]
fn twenty_parallel_creates_share_eight_gpus_without_overlap() {
    let m = Machine::new("h100-8x");
    m.limits(&["presets"]).ok();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let name = format!("job{i:02}");
            m.command(&["create", &name, "--gpus", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    let won = runs.iter().filter(|r| r.code == 0).count();
    let refused: Vec<&Run> = runs.iter().filter(|r| r.code != 0).collect();
    assert_eq!(won, 8, "exactly eight creates win");
    for r in &refused {
        r.code(4).one_error("not enough GPUs for profile 'job");
        assert!(
            r.stderr.contains("0 of the 8 GPU(s) here have room"),
            "{}",
            r.stderr
        );
    }

    let json = m.limits(&["gpus", "--json"]).json();
    let mut holders: Vec<String> = Vec::new();
    for gpu in json.as_array().unwrap() {
        let held = gpu["held_by"].as_array().unwrap();
        assert_eq!(held.len(), 1, "GPU {} held once: {held:?}", gpu["index"]);
        holders.push(held[0]["profile"].as_str().unwrap().to_string());
    }
    holders.sort();
    holders.dedup();
    assert_eq!(holders.len(), 8, "eight different profiles hold them");
    let stored = m.limits(&["list", "--json"]).json();
    assert_eq!(
        stored.as_array().unwrap().len(),
        8,
        "the refused are not stored"
    );
}
