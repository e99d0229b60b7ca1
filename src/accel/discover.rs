//! Finding GPUs in sysfs and procfs under one root.
//!
//! The PCI bus lists every GPU, driver or not: its class, vendor, NUMA
//! node and local CPUs. The NVIDIA driver adds a UUID, model and device
//! minor in procfs; AMD's KFD topology maps GPUs to render minors and to
//! ROCm's order; DRM nodes serve every vendor. Each reader returns what it
//! finds; an absent file is a fact the machine does not have, not an
//! error. Parsers take `&str` and are tested on the kernel's formats.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use tracing::debug;

use super::{DeviceNode, Gpu, Machine, Vendor};
use crate::cpuset::CpuSet;

/// PCI devices, one directory each, named by address.
pub const PCI_DEVICES: &str = "sys/bus/pci/devices";
/// The NVIDIA driver's per-GPU directories.
pub const NVIDIA_GPUS: &str = "proc/driver/nvidia/gpus";
/// The character and block majors the kernel handed out.
pub const PROC_DEVICES: &str = "proc/devices";
/// AMD's KFD character device, `major:minor`.
pub const KFD_DEV: &str = "sys/class/kfd/kfd/dev";
/// AMD's KFD topology: one directory per CPU or GPU node.
pub const KFD_NODES: &str = "sys/class/kfd/kfd/topology/nodes";

/// NVIDIA's registered character major for `/dev/nvidia*`.
pub const NVIDIA_MAJOR: u32 = 195;
/// The minor of `/dev/nvidiactl`.
pub const NVIDIACTL_MINOR: u32 = 255;
/// The minor of `/dev/nvidia-modeset`.
pub const NVIDIA_MODESET_MINOR: u32 = 254;

/// Finds the GPUs under `root` (`/` on a real machine): reads
/// `sys/bus/pci/devices`, `proc/driver/nvidia`, `proc/devices`, the KFD
/// topology and `dev/`. Never fails: what cannot be read is left out.
pub fn discover(root: &Path) -> Machine {
    let pci = root.join(PCI_DEVICES);
    let mut found: Vec<Gpu> = Vec::new();
    let mut entries: Vec<String> = match fs::read_dir(&pci) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            debug!(path = %pci.display(), %e, "no PCI bus to read: no GPUs");
            Vec::new()
        }
    };
    entries.sort();
    for bus_id in entries {
        if let Some(gpu) = pci_gpu(&pci.join(&bus_id), &bus_id) {
            found.push(gpu);
        }
    }

    let nvidia = nvidia_info(root);
    let kfd = kfd_nodes(root);
    for gpu in &mut found {
        match gpu.vendor {
            Vendor::Nvidia => {
                if let Some(info) = nvidia.get(&gpu.bus_id) {
                    gpu.model = info.model.clone().or(gpu.model.take());
                    gpu.uuid = info.uuid.clone();
                    if let Some(minor) = info.minor {
                        gpu.nodes.insert(
                            0,
                            DeviceNode::char(NVIDIA_MAJOR, minor, format!("/dev/nvidia{minor}")),
                        );
                    }
                }
            }
            Vendor::Amd => {
                if let Some(node) = kfd.iter().find(|n| n.bus_id == gpu.bus_id) {
                    gpu.uuid = node.unique_id.map(|id| format!("GPU-{id:016x}"));
                }
            }
            Vendor::Intel => {}
        }
    }
    number(&mut found, &kfd);

    let mut shared_nodes = Vec::new();
    let has = |v: Vendor| found.iter().any(|g| g.vendor == v);
    if has(Vendor::Nvidia) && !nvidia.is_empty() {
        let mut nodes = vec![DeviceNode::char(
            NVIDIA_MAJOR,
            NVIDIACTL_MINOR,
            "/dev/nvidiactl",
        )];
        if root.join("dev/nvidia-modeset").exists() {
            nodes.push(DeviceNode::char(
                NVIDIA_MAJOR,
                NVIDIA_MODESET_MINOR,
                "/dev/nvidia-modeset",
            ));
        }
        let devices = read(&root.join(PROC_DEVICES)).unwrap_or_default();
        if let Some(major) = char_major(&devices, "nvidia-uvm") {
            nodes.push(DeviceNode::char(major, 0, "/dev/nvidia-uvm"));
            nodes.push(DeviceNode::char(major, 1, "/dev/nvidia-uvm-tools"));
        }
        shared_nodes.extend(nodes.into_iter().map(|n| (Vendor::Nvidia, n)));
    }
    if has(Vendor::Amd) {
        if let Some((major, minor)) = read(&root.join(KFD_DEV)).and_then(|t| dev_numbers(&t)) {
            shared_nodes.push((Vendor::Amd, DeviceNode::char(major, minor, "/dev/kfd")));
        }
    }
    Machine {
        gpus: found,
        shared_nodes,
    }
}

/// Gives each GPU its machine-wide index (PCI order) and its index in its
/// vendor's runtime order.
fn number(gpus: &mut [Gpu], kfd: &[KfdNode]) {
    for (i, gpu) in gpus.iter_mut().enumerate() {
        gpu.index = i as u32;
    }
    for vendor in [Vendor::Nvidia, Vendor::Amd, Vendor::Intel] {
        let mut order: Vec<usize> = (0..gpus.len())
            .filter(|&i| gpus[i].vendor == vendor)
            .collect();
        if vendor == Vendor::Amd {
            // ROCm counts GPU agents in KFD node order; GPUs KFD does not
            // know come after, in PCI order.
            let rank = |bus: &str| {
                kfd.iter()
                    .position(|n| n.bus_id == bus)
                    .unwrap_or(usize::MAX)
            };
            order.sort_by_key(|&i| rank(&gpus[i].bus_id));
        }
        for (n, i) in order.into_iter().enumerate() {
            gpus[i].vendor_index = n as u32;
        }
    }
}

/// A GPU from its PCI directory, or `None` if the device is not one.
fn pci_gpu(dir: &Path, bus_id: &str) -> Option<Gpu> {
    let class = read(&dir.join("class")).and_then(|t| hex(&t))?;
    let vendor_id = read(&dir.join("vendor")).and_then(|t| hex(&t))?;
    let vendor = Vendor::from_pci(u16::try_from(vendor_id).ok()?)?;
    if !is_gpu_class(class, vendor) {
        return None;
    }
    let device_id = read(&dir.join("device"))
        .and_then(|t| hex(&t))
        .and_then(|d| u16::try_from(d).ok())
        .unwrap_or(0);
    let numa_node = read(&dir.join("numa_node")).and_then(|t| numa(&t));
    let local_cpus = read(&dir.join("local_cpulist"))
        .and_then(|t| CpuSet::parse(&t).ok())
        .unwrap_or_default();
    let driver = fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let mut nodes = Vec::new();
    if let Ok(drm) = fs::read_dir(dir.join("drm")) {
        let mut names: Vec<String> = drm
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("card") || n.starts_with("renderD"))
            .collect();
        names.sort();
        for name in names {
            if let Some((major, minor)) =
                read(&dir.join("drm").join(&name).join("dev")).and_then(|t| dev_numbers(&t))
            {
                nodes.push(DeviceNode::char(major, minor, format!("/dev/dri/{name}")));
            }
        }
    }
    Some(Gpu {
        index: 0,
        vendor,
        vendor_index: 0,
        bus_id: bus_id.to_string(),
        device_id,
        model: None,
        uuid: None,
        numa_node,
        local_cpus,
        nodes,
        driver,
        integrated: vendor == Vendor::Intel && pci_bus(bus_id) == Some(0),
        memory_total: None,
    })
}

/// Whether a PCI class is a GPU for this vendor: any display controller
/// (0x03xxxx), and for AMD also a processing accelerator (0x12xxxx), the
/// class of the Instinct MI200/MI300 parts. Intel's 0x12 devices are NPUs,
/// not GPUs.
pub fn is_gpu_class(class: u32, vendor: Vendor) -> bool {
    match class >> 16 {
        0x03 => true,
        0x12 => vendor == Vendor::Amd,
        _ => false,
    }
}

/// The bus number of a PCI address (`0000:18:00.0` is 0x18).
fn pci_bus(bus_id: &str) -> Option<u32> {
    let mut parts = bus_id.split(':');
    let (_, bus) = (parts.next()?, parts.next()?);
    u32::from_str_radix(bus, 16).ok()
}

/// A sysfs hex value such as `0x030200` and its newline.
pub fn hex(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(digits, 16).ok()
}

/// A PCI device's `numa_node`: `-1` means the machine does not say.
pub fn numa(text: &str) -> Option<u32> {
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

/// A sysfs `dev` file: `226:128`.
pub fn dev_numbers(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The character major `/proc/devices` lists for a driver name.
pub fn char_major(text: &str, name: &str) -> Option<u32> {
    let chars = text.split("Block devices:").next()?;
    chars.lines().find_map(|line| {
        let (major, n) = line.trim().split_once(' ')?;
        (n.trim() == name).then(|| major.parse().ok()).flatten()
    })
}

/// What the NVIDIA driver says about one GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NvidiaInfo {
    /// `Model:`.
    pub model: Option<String>,
    /// `GPU UUID:`.
    pub uuid: Option<String>,
    /// `Bus Location:`, lowercased.
    pub bus_location: Option<String>,
    /// `Device Minor:`: N in `/dev/nvidiaN`.
    pub minor: Option<u32>,
}

/// Parses `/proc/driver/nvidia/gpus/<bus>/information`: `Key: value`
/// lines, padded with tabs and spaces.
pub fn parse_information(text: &str) -> NvidiaInfo {
    let mut info = NvidiaInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let known = (!value.is_empty() && value != "N/A").then(|| value.to_string());
        match key.trim() {
            "Model" => info.model = known,
            "GPU UUID" => info.uuid = known,
            "Bus Location" => info.bus_location = known.map(|b| b.to_ascii_lowercase()),
            "Device Minor" => info.minor = value.parse().ok(),
            _ => {}
        }
    }
    info
}

fn nvidia_info(root: &Path) -> BTreeMap<String, NvidiaInfo> {
    let dir = root.join(NVIDIA_GPUS);
    let Ok(entries) = fs::read_dir(&dir) else {
        debug!(path = %dir.display(), "no NVIDIA driver information");
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let info = parse_information(&read(&e.path().join("information"))?);
            let bus = info
                .bus_location
                .clone()
                .unwrap_or_else(|| e.file_name().to_string_lossy().to_ascii_lowercase());
            Some((bus, info))
        })
        .collect()
}

/// A GPU node of the KFD topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KfdNode {
    /// Its PCI address, from `domain` and `location_id`.
    pub bus_id: String,
    /// `unique_id`, which ROCm shows as `GPU-<hex>`.
    pub unique_id: Option<u64>,
    /// `drm_render_minor`.
    pub render_minor: Option<u32>,
}

/// Parses a KFD node's `properties` (`key value` lines); `None` for a CPU
/// node, which has no SIMDs.
pub fn parse_kfd_properties(text: &str) -> Option<KfdNode> {
    let props: BTreeMap<&str, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect();
    if props.get("simd_count").copied().unwrap_or(0) == 0 {
        return None;
    }
    // location_id packs bus, device and function as the PCI BDF does.
    let location = *props.get("location_id")?;
    let domain = props.get("domain").copied().unwrap_or(0);
    let bus_id = format!(
        "{domain:04x}:{:02x}:{:02x}.{:x}",
        (location >> 8) & 0xff,
        (location >> 3) & 0x1f,
        location & 0x7
    );
    Some(KfdNode {
        bus_id,
        unique_id: props.get("unique_id").copied().filter(|&u| u != 0),
        render_minor: props
            .get("drm_render_minor")
            .and_then(|&m| u32::try_from(m).ok()),
    })
}

fn kfd_nodes(root: &Path) -> Vec<KfdNode> {
    let dir = root.join(KFD_NODES);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.into_iter()
        .filter_map(|id| read(&dir.join(id.to_string()).join("properties")))
        .filter_map(|t| parse_kfd_properties(&t))
        .collect()
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests;
