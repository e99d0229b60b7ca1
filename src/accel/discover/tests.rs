//! Discovery against fixture trees shaped after real machines
//! (tests/fixtures/accel), and the parsers on the kernel's formats.

use std::path::PathBuf;

use super::*;
use crate::accel::DeviceKind;

fn fixture(machine: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/accel")
        .join(machine)
}

/// (index, vendor, vendor index, PCI address, NUMA node, local CPUs).
type Summary<'a> = (u32, Vendor, u32, &'a str, Option<u32>, String);

fn summary(m: &Machine) -> Vec<Summary<'_>> {
    m.gpus
        .iter()
        .map(|g| {
            (
                g.index,
                g.vendor,
                g.vendor_index,
                g.bus_id.as_str(),
                g.numa_node,
                g.local_cpus.to_string(),
            )
        })
        .collect()
}

#[test]
fn eight_h100s_on_two_numa_nodes() {
    let m = discover(&fixture("h100-8x"));
    assert_eq!(
        m.gpus.len(),
        8,
        "the BMC's VGA, NICs and bridges are not GPUs"
    );
    let s = summary(&m);
    assert_eq!(
        s[0],
        (
            0,
            Vendor::Nvidia,
            0,
            "0000:18:00.0",
            Some(0),
            "0-27,56-83".into()
        )
    );
    assert_eq!(s[3].4, Some(0));
    assert_eq!(
        s[4],
        (
            4,
            Vendor::Nvidia,
            4,
            "0000:9a:00.0",
            Some(1),
            "28-55,84-111".into()
        )
    );
    assert_eq!(s[7].3, "0000:db:00.0");
    let total: usize = m.gpus.iter().map(|g| g.local_cpus.len()).sum();
    assert_eq!(total, 8 * 56, "each GPU sees its socket's 56 CPUs of 112");

    let g = &m.gpus[2];
    assert_eq!(g.model.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(
        g.uuid.as_deref(),
        Some("GPU-0e7a9c34-58b2-4f1d-a3c6-9d4b1e8f7c35")
    );
    assert_eq!(g.driver.as_deref(), Some("nvidia"));
    assert_eq!(g.device_id, 0x2330);
    assert!(!g.integrated);
    assert_eq!(
        g.nodes,
        vec![
            DeviceNode::char(195, 2, "/dev/nvidia2"),
            DeviceNode::char(226, 3, "/dev/dri/card3"),
            DeviceNode::char(226, 130, "/dev/dri/renderD130"),
        ]
    );
    let shared: Vec<(Vendor, &str, u32, u32)> = m
        .shared_nodes
        .iter()
        .map(|(v, n)| (*v, n.path.to_str().unwrap(), n.major, n.minor))
        .collect();
    assert_eq!(
        shared,
        vec![
            (Vendor::Nvidia, "/dev/nvidiactl", 195, 255),
            (Vendor::Nvidia, "/dev/nvidia-modeset", 195, 254),
            (Vendor::Nvidia, "/dev/nvidia-uvm", 237, 0),
            (Vendor::Nvidia, "/dev/nvidia-uvm-tools", 237, 1),
        ]
    );
}

#[test]
fn four_mi300x_in_kfd_order() {
    let m = discover(&fixture("mi300x-4x"));
    let s = summary(&m);
    assert_eq!(
        s.iter()
            .map(|g| (g.0, g.1, g.2, g.3, g.4))
            .collect::<Vec<_>>(),
        vec![
            (0, Vendor::Amd, 0, "0000:05:00.0", Some(0)),
            (1, Vendor::Amd, 1, "0000:26:00.0", Some(0)),
            (2, Vendor::Amd, 2, "0000:85:00.0", Some(1)),
            (3, Vendor::Amd, 3, "0000:a6:00.0", Some(1)),
        ]
    );
    assert_eq!(m.gpus[0].uuid.as_deref(), Some("GPU-1a01989e81d9b5d2"));
    assert_eq!(
        m.gpus[1].nodes.last(),
        Some(&DeviceNode::char(226, 129, "/dev/dri/renderD129"))
    );
    assert_eq!(
        m.shared_nodes,
        vec![(Vendor::Amd, DeviceNode::char(511, 0, "/dev/kfd"))]
    );
}

#[test]
fn two_intel_max_gpus() {
    let m = discover(&fixture("max1550-2x"));
    let s = summary(&m);
    assert_eq!(s.len(), 2, "the Intel host bridge is not a GPU");
    assert_eq!(s[0].1, Vendor::Intel);
    assert_eq!((s[0].4, s[1].4), (Some(0), Some(1)));
    assert!(m.gpus.iter().all(|g| !g.integrated && g.uuid.is_none()));
    assert!(m.shared_nodes.is_empty());
}

#[test]
fn a_workstation_with_an_igpu_and_one_nvidia_gpu() {
    let m = discover(&fixture("workstation"));
    let s = summary(&m);
    assert_eq!(
        s.iter()
            .map(|g| (g.0, g.1, g.2, g.3, g.4))
            .collect::<Vec<_>>(),
        vec![
            (0, Vendor::Intel, 0, "0000:00:02.0", None),
            (1, Vendor::Nvidia, 0, "0000:01:00.0", None),
        ],
        "PCI order; the GPU's audio function is not a GPU; numa_node -1 is unknown"
    );
    assert!(m.gpus[0].integrated);
    assert!(!m.gpus[1].integrated);
    assert_eq!(m.gpus[1].model.as_deref(), Some("NVIDIA GeForce RTX 4090"));
}

#[test]
fn a_machine_without_gpus() {
    assert_eq!(discover(&fixture("none")), Machine::default());
}

#[test]
fn missing_files_give_fewer_facts_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(discover(dir.path()), Machine::default(), "empty root");
    assert_eq!(discover(&dir.path().join("absent")), Machine::default());

    // A GPU whose driver is not loaded: no procfs, no DRM, no numa file.
    let dev = dir.path().join("sys/bus/pci/devices/0000:41:00.0");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("class"), "0x030200\n").unwrap();
    std::fs::write(dev.join("vendor"), "0x10de\n").unwrap();
    let m = discover(dir.path());
    assert_eq!(m.gpus.len(), 1);
    let g = &m.gpus[0];
    assert_eq!(
        (g.uuid.as_ref(), g.numa_node, g.driver.as_ref()),
        (None, None, None)
    );
    assert!(g.nodes.is_empty() && g.local_cpus.is_empty());
    assert!(m.shared_nodes.is_empty(), "no driver, no driver nodes");
}

#[test]
fn amd_order_follows_the_kfd_topology() {
    let dir = tempfile::tempdir().unwrap();
    for bus in ["0000:05:00.0", "0000:26:00.0"] {
        let dev = dir.path().join("sys/bus/pci/devices").join(bus);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("class"), "0x120000\n").unwrap();
        std::fs::write(dev.join("vendor"), "0x1002\n").unwrap();
    }
    // KFD lists 0000:26:00.0 before 0000:05:00.0.
    for (node, location) in [(1, 0x2600), (2, 0x0500)] {
        let dir = dir
            .path()
            .join(format!("sys/class/kfd/kfd/topology/nodes/{node}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("properties"),
            format!("simd_count 1216\nlocation_id {location}\ndomain 0\nunique_id 0\n"),
        )
        .unwrap();
    }
    let m = discover(dir.path());
    let order: Vec<(u32, u32)> = m.gpus.iter().map(|g| (g.index, g.vendor_index)).collect();
    assert_eq!(order, vec![(0, 1), (1, 0)]);
    assert_eq!(m.gpus[0].uuid, None, "unique_id 0 means none");
}

#[test]
fn parsers_take_the_kernel_formats() {
    let cases: &[(&str, Option<u32>)] = &[
        ("0x030200\n", Some(0x030200)),
        ("0x10de\n", Some(0x10de)),
        ("10de", Some(0x10de)),
        ("", None),
        ("zz", None),
    ];
    for (text, want) in cases {
        assert_eq!(hex(text), *want, "{text:?}");
    }
    assert_eq!(numa("-1\n"), None);
    assert_eq!(numa("1\n"), Some(1));
    assert_eq!(dev_numbers("226:128\n"), Some((226, 128)));
    assert_eq!(dev_numbers("226\n"), None);
    let devices = "Character devices:\n  1 mem\n195 nvidia\n237 nvidia-uvm\n\nBlock devices:\n237 nvidia-uvm\n";
    assert_eq!(char_major(devices, "nvidia-uvm"), Some(237));
    assert_eq!(char_major(devices, "kfd"), None);
    assert!(is_gpu_class(0x030000, Vendor::Intel));
    assert!(is_gpu_class(0x120000, Vendor::Amd));
    assert!(!is_gpu_class(0x120000, Vendor::Intel), "an Intel NPU");
    assert!(!is_gpu_class(0x040300, Vendor::Nvidia), "HDMI audio");
}

#[test]
fn nvidia_information_file() {
    let text = "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t GPU-5b1b0e3a-7c4f-2d8e-9a61-0f3c2b7d4e10\nBus Location: \t 0000:18:00.0\nDevice Minor: \t 0\nGPU Excluded:\t No\n";
    assert_eq!(
        parse_information(text),
        NvidiaInfo {
            model: Some("NVIDIA H100 80GB HBM3".into()),
            uuid: Some("GPU-5b1b0e3a-7c4f-2d8e-9a61-0f3c2b7d4e10".into()),
            bus_location: Some("0000:18:00.0".into()),
            minor: Some(0),
        }
    );
    assert_eq!(
        parse_information("GPU UUID: \t N/A\n").uuid,
        None,
        "N/A is no value"
    );
}

#[test]
fn kfd_properties() {
    let gpu = "cpu_cores_count 0\nsimd_count 1216\nlocation_id 9728\ndomain 0\ndrm_render_minor 129\nunique_id 9821734455120941377\n";
    assert_eq!(
        parse_kfd_properties(gpu),
        Some(KfdNode {
            bus_id: "0000:26:00.0".into(),
            unique_id: Some(9821734455120941377),
            render_minor: Some(129),
        })
    );
    assert_eq!(
        parse_kfd_properties("cpu_cores_count 96\nsimd_count 0\n"),
        None,
        "a CPU node"
    );
}

#[test]
fn device_access_splits_held_from_others() {
    let m = discover(&fixture("h100-8x"));
    let held = [crate::accel::ReservedGpu::of(&m.gpus[1], 100)];
    let access = m.device_access(&held);
    assert!(access
        .allow
        .contains(&DeviceNode::char(195, 1, "/dev/nvidia1")));
    assert!(access
        .allow
        .contains(&DeviceNode::char(195, 255, "/dev/nvidiactl")));
    assert!(access
        .deny
        .contains(&DeviceNode::char(195, 0, "/dev/nvidia0")));
    assert!(!access.deny.iter().any(|n| n.minor == 1 && n.major == 195));
    assert_eq!(
        access.allow.len() + access.deny.len(),
        m.all_nodes().count()
    );
    assert!(access
        .allow
        .iter()
        .chain(&access.deny)
        .all(|n| n.kind == DeviceKind::Char));

    let none = m.device_access(&[]);
    assert!(none.allow.is_empty(), "holding nothing allows no GPU node");
}
