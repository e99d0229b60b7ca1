//! The device policy that hides the GPUs a profile did not reserve.
//!
//! Each unreserved GPU's nodes are denied (NVIDIA `/dev/nvidiaN`, char
//! 195:N; the `/dev/dri` card and render nodes, char 226), and so are a
//! vendor's shared control nodes when the profile holds no GPU of that
//! vendor (NVIDIA's `nvidiactl` 195:255, `nvidia-modeset` 195:254 and
//! `nvidia-uvm`; AMD's `/dev/kfd`). Every other device stays allowed: a
//! process needs `/dev/null`, ptys and much else, and guessing that list is
//! how containers break. The reserved nodes are allowed by rules of their
//! own before the denials, so a GPU listed twice is never hidden.

use std::collections::BTreeSet;

use super::{Access, DeviceType, Devices, Policy, Rule};

/// NVIDIA's fixed character major: GPUs, `nvidiactl`, `nvidia-modeset`.
pub const NVIDIA_MAJOR: u32 = 195;
/// `/dev/nvidiactl`.
pub const NVIDIACTL_MINOR: u32 = 255;
/// `/dev/nvidia-modeset`.
pub const NVIDIA_MODESET_MINOR: u32 = 254;
/// The DRM major of `/dev/dri/card*` and `/dev/dri/renderD*`.
pub const DRM_MAJOR: u32 = 226;

/// Who made a GPU, for its shared control nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Vendor {
    /// NVIDIA: `nvidiactl`, `nvidia-modeset`, `nvidia-uvm`.
    Nvidia,
    /// AMD: `/dev/kfd`.
    Amd,
    /// Others: no control nodes known.
    Other,
}

/// A device node by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node {
    /// Block or char (GPUs are char devices).
    pub kind: DeviceType,
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
}

impl Node {
    /// A character device node.
    pub fn char(major: u32, minor: u32) -> Node {
        Node {
            kind: DeviceType::Char,
            major,
            minor,
        }
    }

    fn devices(&self) -> Devices {
        Devices {
            kind: Some(self.kind),
            major: Some(self.major),
            minor: Some(self.minor),
        }
    }
}

/// One GPU as the filter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// Its vendor.
    pub vendor: Vendor,
    /// Its own device nodes: `/dev/nvidiaN`, `/dev/dri/cardN`,
    /// `/dev/dri/renderDN`.
    pub nodes: Vec<Node>,
    /// Whether the profile reserved it.
    pub reserved: bool,
}

/// The dynamic majors of the shared control nodes, from `/proc/devices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlMajors {
    /// `nvidia-uvm` (its minors are `nvidia-uvm` and `nvidia-uvm-tools`).
    pub nvidia_uvm: Option<u32>,
    /// `kfd`, minor 0.
    pub kfd: Option<u32>,
}

impl ControlMajors {
    /// Reads the character section of `/proc/devices`.
    pub fn parse(proc_devices: &str) -> ControlMajors {
        let mut majors = ControlMajors::default();
        for line in proc_devices.lines() {
            if line.trim_end().ends_with("devices:") && line.starts_with("Block") {
                break;
            }
            let mut words = line.split_whitespace();
            let (Some(major), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(major) = major.parse() else { continue };
            match name {
                "nvidia-uvm" => majors.nvidia_uvm = Some(major),
                "kfd" => majors.kfd = Some(major),
                _ => {}
            }
        }
        majors
    }

    /// A vendor's shared control nodes.
    fn of(&self, vendor: Vendor) -> Vec<Devices> {
        match vendor {
            Vendor::Nvidia => {
                let mut nodes = vec![
                    Devices::char(NVIDIA_MAJOR, NVIDIACTL_MINOR),
                    Devices::char(NVIDIA_MAJOR, NVIDIA_MODESET_MINOR),
                ];
                nodes.extend(self.nvidia_uvm.map(Devices::char_major));
                nodes
            }
            Vendor::Amd => self.kfd.map(|m| Devices::char(m, 0)).into_iter().collect(),
            Vendor::Other => Vec::new(),
        }
    }
}

/// The policy for a profile: its reserved GPUs' nodes and the control nodes
/// of their vendors allowed, the other GPUs' nodes and the control nodes of
/// vendors it holds none of denied, everything else allowed.
pub fn policy(gpus: &[Gpu], control: &ControlMajors) -> Policy {
    let held: BTreeSet<Vendor> = gpus
        .iter()
        .filter(|g| g.reserved)
        .map(|g| g.vendor)
        .collect();
    let present: BTreeSet<Vendor> = gpus.iter().map(|g| g.vendor).collect();
    let reserved: BTreeSet<Node> = gpus
        .iter()
        .filter(|g| g.reserved)
        .flat_map(|g| g.nodes.iter().copied())
        .collect();
    let hidden: BTreeSet<Node> = gpus
        .iter()
        .filter(|g| !g.reserved)
        .flat_map(|g| g.nodes.iter().copied())
        .filter(|n| !reserved.contains(n))
        .collect();

    let mut policy = Policy::new();
    for node in &reserved {
        policy.push(Rule::allow(node.devices(), Access::ALL));
    }
    for vendor in &held {
        for devices in control.of(*vendor) {
            policy.push(Rule::allow(devices, Access::ALL));
        }
    }
    for node in &hidden {
        policy.push(Rule::deny(node.devices(), Access::ALL));
    }
    for vendor in present.difference(&held) {
        for devices in control.of(*vendor) {
            policy.push(Rule::deny(devices, Access::ALL));
        }
    }
    policy.push(Rule::allow(Devices::ANY, Access::ALL));
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::device::{Program, Request, Verdict};

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n\
        136 pts\n195 nvidia-frontend\n226 drm\n235 kfd\n508 nvidia-uvm\n\nBlock devices:\n\
        7 loop\n  8 sd\n509 nvidia-uvm\n";

    fn nvidia(index: u32, reserved: bool) -> Gpu {
        Gpu {
            vendor: Vendor::Nvidia,
            nodes: vec![Node::char(NVIDIA_MAJOR, index)],
            reserved,
        }
    }

    fn amd(index: u32, reserved: bool) -> Gpu {
        Gpu {
            vendor: Vendor::Amd,
            nodes: vec![
                Node::char(DRM_MAJOR, index),
                Node::char(DRM_MAJOR, 128 + index),
            ],
            reserved,
        }
    }

    fn open(major: u32, minor: u32) -> Request {
        Request {
            kind: DeviceType::Char,
            major,
            minor,
            access: Access::READ_WRITE,
        }
    }

    #[test]
    fn control_majors_come_from_the_character_section() {
        assert_eq!(
            ControlMajors::parse(PROC_DEVICES),
            ControlMajors {
                nvidia_uvm: Some(508),
                kfd: Some(235),
            }
        );
        assert_eq!(ControlMajors::parse(""), ControlMajors::default());
    }

    #[test]
    fn a_profile_sees_its_gpus_and_everything_that_is_not_a_gpu() {
        let gpus: Vec<Gpu> = (0..4).map(|i| nvidia(i, i == 1 || i == 2)).collect();
        let policy = policy(&gpus, &ControlMajors::parse(PROC_DEVICES));
        let program = Program::assemble(&policy);
        use Verdict::{Allow, Deny};
        let cases = [
            ("nvidia0", open(195, 0), Deny),
            ("nvidia1", open(195, 1), Allow),
            ("nvidia2", open(195, 2), Allow),
            ("nvidia3", open(195, 3), Deny),
            ("nvidiactl", open(195, 255), Allow),
            ("nvidia-modeset", open(195, 254), Allow),
            ("nvidia-uvm", open(508, 0), Allow),
            ("nvidia-uvm-tools", open(508, 1), Allow),
            ("/dev/null", open(1, 3), Allow),
            ("/dev/urandom", open(1, 9), Allow),
            ("pty", open(136, 4), Allow),
            ("ptmx", open(5, 2), Allow),
            (
                "mknod of a hidden gpu",
                Request {
                    access: Access::MKNOD,
                    ..open(195, 3)
                },
                Deny,
            ),
        ];
        for (name, request, want) in cases {
            assert_eq!(program.interpret(&request), want, "{name}\n{policy}");
            assert_eq!(policy.decide(&request), want, "{name}\n{policy}");
        }
    }

    #[test]
    fn no_nvidia_gpu_held_hides_the_control_nodes_too() {
        let gpus: Vec<Gpu> = (0..2).map(|i| nvidia(i, false)).collect();
        let policy = policy(&gpus, &ControlMajors::parse(PROC_DEVICES));
        for (name, request) in [
            ("nvidia0", open(195, 0)),
            ("nvidiactl", open(195, 255)),
            ("nvidia-modeset", open(195, 254)),
            ("nvidia-uvm", open(508, 0)),
        ] {
            assert_eq!(policy.decide(&request), Verdict::Deny, "{name}\n{policy}");
        }
        assert_eq!(policy.decide(&open(1, 3)), Verdict::Allow);
        // An AMD node is not an NVIDIA GPU's business.
        assert_eq!(policy.decide(&open(235, 0)), Verdict::Allow);
    }

    #[test]
    fn amd_gpus_share_kfd_and_keep_their_own_dri_nodes() {
        let gpus = vec![amd(0, false), amd(1, true)];
        let policy = policy(&gpus, &ControlMajors::parse(PROC_DEVICES));
        for (name, request, want) in [
            ("card0", open(226, 0), Verdict::Deny),
            ("renderD128", open(226, 128), Verdict::Deny),
            ("card1", open(226, 1), Verdict::Allow),
            ("renderD129", open(226, 129), Verdict::Allow),
            ("kfd", open(235, 0), Verdict::Allow),
            ("another dri node", open(226, 2), Verdict::Allow),
        ] {
            assert_eq!(policy.decide(&request), want, "{name}\n{policy}");
        }

        let none = policy_for_none(&gpus);
        assert_eq!(none.decide(&open(235, 0)), Verdict::Deny, "kfd\n{none}");
    }

    fn policy_for_none(gpus: &[Gpu]) -> Policy {
        let unreserved: Vec<Gpu> = gpus
            .iter()
            .cloned()
            .map(|g| Gpu {
                reserved: false,
                ..g
            })
            .collect();
        policy(&unreserved, &ControlMajors::parse(PROC_DEVICES))
    }

    #[test]
    fn a_node_both_reserved_and_not_stays_allowed() {
        let shared = Gpu {
            vendor: Vendor::Other,
            nodes: vec![Node::char(DRM_MAJOR, 0)],
            reserved: false,
        };
        let mine = Gpu {
            reserved: true,
            ..shared.clone()
        };
        let policy = policy(&[shared, mine], &ControlMajors::default());
        assert_eq!(policy.decide(&open(226, 0)), Verdict::Allow, "{policy}");
    }
}
