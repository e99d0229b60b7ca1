//! Accelerators: which GPUs a machine has, where they sit (NUMA node,
//! local CPUs), which device nodes reach them, and how they are shared
//! out to profiles.
//!
//! Discovery ([`discover`]) reads sysfs and procfs under one injectable
//! root, so tests point it at a fixture tree while the cgroup and proc
//! roots stay real. A missing driver, file or GPU gives a machine with
//! fewer facts, never an error. NVML ([`nvml`]) adds model, memory and
//! utilization where `libnvidia-ml.so.1` can be loaded. Placement and the
//! sharing arithmetic ([`place`]) are pure functions over what discovery
//! found and what the store holds.

pub mod discover;
pub mod nvml;
pub mod place;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::cpuset::CpuSet;

pub use discover::discover;

/// The GPU makers this tool knows how to tell runtimes about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// NVIDIA (PCI vendor 0x10de): CUDA.
    Nvidia,
    /// AMD (PCI vendor 0x1002): ROCm/HIP.
    Amd,
    /// Intel (PCI vendor 0x8086): oneAPI/Level Zero.
    Intel,
}

impl Vendor {
    /// The vendor of a PCI vendor id.
    pub fn from_pci(id: u16) -> Option<Vendor> {
        match id {
            0x10de => Some(Vendor::Nvidia),
            0x1002 => Some(Vendor::Amd),
            0x8086 => Some(Vendor::Intel),
            _ => None,
        }
    }

    /// The lowercase name, as stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Vendor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nvidia" => Ok(Vendor::Nvidia),
            "amd" => Ok(Vendor::Amd),
            "intel" => Ok(Vendor::Intel),
            _ => Err(()),
        }
    }
}

/// Whether a device node is a character or a block device, as a cgroup
/// device filter tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A character device (every GPU node is one).
    Char,
    /// A block device.
    Block,
}

/// One device node: what a process opens to reach a GPU or its driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DeviceNode {
    /// Character or block.
    pub kind: DeviceKind,
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
    /// Where the node lives on the machine, such as `/dev/nvidia0`. This
    /// is the machine's own path, not one under a fixture root.
    pub path: PathBuf,
}

impl DeviceNode {
    /// A character device node.
    pub fn char(major: u32, minor: u32, path: impl Into<PathBuf>) -> DeviceNode {
        DeviceNode {
            kind: DeviceKind::Char,
            major,
            minor,
            path: path.into(),
        }
    }
}

/// One GPU as discovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The machine-wide index: GPUs of every vendor in PCI bus order,
    /// starting at 0. This is what `--gpu-ids` and `cortex limits gpus`
    /// use.
    pub index: u32,
    /// The maker.
    pub vendor: Vendor,
    /// The index among this vendor's GPUs in the order its runtime counts
    /// them with the ordering variables this tool sets: PCI bus order for
    /// NVIDIA (`CUDA_DEVICE_ORDER=PCI_BUS_ID`) and Intel
    /// (`ZE_ENABLE_PCI_ID_DEVICE_ORDER=1`), KFD topology order for AMD.
    pub vendor_index: u32,
    /// The PCI address, `0000:18:00.0`.
    pub bus_id: String,
    /// The PCI device id.
    pub device_id: u16,
    /// The model name, where the driver or NVML says it.
    pub model: Option<String>,
    /// The runtime's UUID (`GPU-...`), where the driver says it.
    pub uuid: Option<String>,
    /// The NUMA node the GPU is attached to; `None` where the machine
    /// does not say (a single-node machine reports -1).
    pub numa_node: Option<u32>,
    /// The CPUs local to the GPU, from sysfs `local_cpulist`.
    pub local_cpus: CpuSet,
    /// The device nodes that reach this GPU alone.
    pub nodes: Vec<DeviceNode>,
    /// The kernel driver bound to it, if any.
    pub driver: Option<String>,
    /// Whether it is an integrated GPU (on the CPU's root bus), which
    /// placement uses only when asked by id.
    pub integrated: bool,
    /// Total memory in bytes, where NVML says it.
    pub memory_total: Option<u64>,
}

/// Everything discovery found on one machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// The GPUs, by index.
    pub gpus: Vec<Gpu>,
    /// Device nodes every process using a vendor's GPUs needs, whichever
    /// GPUs it has (`/dev/nvidiactl`, `/dev/nvidia-uvm`, `/dev/kfd`),
    /// with the vendor they belong to.
    pub shared_nodes: Vec<(Vendor, DeviceNode)>,
}

impl Machine {
    /// The GPU at a PCI address.
    pub fn by_bus_id(&self, bus_id: &str) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.bus_id == bus_id)
    }

    /// Every device node of every GPU and driver: what a device filter
    /// must consider.
    pub fn all_nodes(&self) -> impl Iterator<Item = &DeviceNode> {
        self.gpus
            .iter()
            .flat_map(|g| g.nodes.iter())
            .chain(self.shared_nodes.iter().map(|(_, n)| n))
    }

    /// Which device nodes a profile holding `reserved` may open and which
    /// it may not. Shared driver nodes are allowed for the vendors it
    /// holds GPUs of; every node of a GPU it does not hold is denied.
    pub fn device_access(&self, reserved: &[ReservedGpu]) -> DeviceAccess {
        let held = |g: &Gpu| reserved.iter().any(|r| r.bus_id == g.bus_id);
        let mut access = DeviceAccess::default();
        for gpu in &self.gpus {
            let list = if held(gpu) {
                &mut access.allow
            } else {
                &mut access.deny
            };
            list.extend(gpu.nodes.iter().cloned());
        }
        for (vendor, node) in &self.shared_nodes {
            if reserved.iter().any(|r| r.vendor == *vendor) {
                access.allow.push(node.clone());
            } else {
                access.deny.push(node.clone());
            }
        }
        access
    }
}

/// The device nodes a profile may open and those it may not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceAccess {
    /// Nodes of its GPUs and the driver nodes they need.
    pub allow: Vec<DeviceNode>,
    /// Nodes of other GPUs, and driver nodes of vendors it holds none of.
    pub deny: Vec<DeviceNode>,
}

/// A GPU held by a profile, as the store records it. It carries what the
/// environment needs, so `env` reads no sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservedGpu {
    /// The PCI address: what identifies the GPU across boots.
    pub bus_id: String,
    /// The machine-wide index when reserved.
    pub index: u32,
    /// The maker.
    pub vendor: Vendor,
    /// The index among the vendor's GPUs (see [`Gpu::vendor_index`]).
    pub vendor_index: u32,
    /// The runtime UUID, where known.
    pub uuid: Option<String>,
    /// The share of the GPU held, in percent.
    pub share: u8,
}

impl ReservedGpu {
    /// A reservation of `share` percent of `gpu`.
    pub fn of(gpu: &Gpu, share: u8) -> ReservedGpu {
        ReservedGpu {
            bus_id: gpu.bus_id.clone(),
            index: gpu.index,
            vendor: gpu.vendor,
            vendor_index: gpu.vendor_index,
            uuid: gpu.uuid.clone(),
            share,
        }
    }
}

/// How a profile's GPU request relates to this machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuBinding {
    /// The GPUs are reserved on this machine (the default).
    #[default]
    Local,
    /// The count is kept for export to another machine; no local GPU is
    /// reserved or named.
    ExportOnly,
}

impl GpuBinding {
    /// The name, as stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            GpuBinding::Local => "local",
            GpuBinding::ExportOnly => "export-only",
        }
    }
}

impl FromStr for GpuBinding {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(GpuBinding::Local),
            "export-only" => Ok(GpuBinding::ExportOnly),
            _ => Err(()),
        }
    }
}
