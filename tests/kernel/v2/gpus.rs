//! GPU placement on the real kernel: a profile whose GPU sits on NUMA node
//! 0 with CPU 1 local to it gets `cpuset.cpus` 1 and `cpuset.mems` 0, and
//! a process applied to it can run and allocate only there. Discovery reads
//! a small tree made here (`--accel-root`), shaped like sysfs and procfs on
//! a machine with two NVIDIA GPUs, one per CPU.

use std::fs;
use std::path::Path;

use crate::support::{profile_cgroup, read, unique, Cortex, Helper};

/// Writes a two-GPU machine under `root`: GPU 0 local to CPU 0, GPU 1
/// local to CPU 1, both on node 0 (the VM has one).
fn two_gpus(root: &Path) {
    for (i, bus) in ["0000:01:00.0", "0000:02:00.0"].into_iter().enumerate() {
        let dev = root.join("sys/bus/pci/devices").join(bus);
        fs::create_dir_all(&dev).unwrap();
        for (file, text) in [
            ("class", "0x030200\n".to_string()),
            ("vendor", "0x10de\n".to_string()),
            ("device", "0x2330\n".to_string()),
            ("numa_node", "0\n".to_string()),
            ("local_cpulist", format!("{i}\n")),
        ] {
            fs::write(dev.join(file), text).unwrap();
        }
        let info = root.join("proc/driver/nvidia/gpus").join(bus);
        fs::create_dir_all(&info).unwrap();
        fs::write(
            info.join("information"),
            format!(
                "Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd\n\
                 Bus Location: \t {bus}\nDevice Minor: \t {i}\n"
            ),
        )
        .unwrap();
    }
}

fn status_list(pid: u32, key: &str) -> String {
    let status = read(format!("/proc/{pid}/status"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn a_profile_runs_on_the_cpus_and_memory_node_of_its_gpu() {
    let cortex = Cortex::root();
    let accel = tempfile::tempdir().unwrap();
    two_gpus(accel.path());
    let root = accel.path().to_str().unwrap();

    let first = unique("gpu-a");
    cortex
        .run(&[
            "create",
            &first,
            "--gpus",
            "1",
            "--cpu",
            "100",
            "--accel-root",
            root,
        ])
        .expect(0, "create the first");
    let name = unique("gpu-b");
    let created = cortex
        .run(&[
            "create",
            &name,
            "--gpus",
            "1",
            "--cpu",
            "100",
            "--accel-root",
            root,
        ])
        .expect(0, "create the second");
    assert!(
        created.stdout.contains("gpus 1 (nvidia, 100% each)"),
        "{}",
        created.stdout
    );

    let cgroup = profile_cgroup(&name);
    assert_eq!(read(cgroup.join("cpuset.cpus")), "1");
    assert_eq!(read(cgroup.join("cpuset.mems")), "0");
    assert_eq!(read(cgroup.join("cpuset.cpus.effective")), "1");
    assert_eq!(read(cgroup.join("cpuset.mems.effective")), "0");

    let helper = Helper::start(&["sleep"]);
    cortex
        .run(&[
            "apply",
            &name,
            "--pid",
            &helper.pid_arg(),
            "--accel-root",
            root,
        ])
        .expect(0, "apply");
    assert_eq!(status_list(helper.pid(), "Cpus_allowed_list:"), "1");
    assert_eq!(status_list(helper.pid(), "Mems_allowed_list:"), "0");

    let env = cortex.run(&["env", &name]).expect(0, "env");
    assert!(
        env.stdout
            .contains("export CUDA_VISIBLE_DEVICES='GPU-00000001-aaaa-bbbb-cccc-dddddddddddd';"),
        "{}",
        env.stdout
    );

    cortex
        .run(&[
            "create",
            &unique("gpu-c"),
            "--gpus",
            "1",
            "--accel-root",
            root,
        ])
        .expect(4, "no third GPU");
    drop(helper);
    cortex
        .run(&["delete", &name, "--force"])
        .expect(0, "delete");
    cortex.run(&["delete", &first]).expect(0, "delete");
}
