//! GPU isolation in the kernel: from the GPUs a profile holds to the device
//! filter the cgroup layer attaches to its cgroup.
//!
//! A profile that asks for GPUs (`--gpus N`, `--gpu-ids`, `--gpus 0`) gets
//! a filter that denies the nodes of every GPU it does not hold; one that
//! asks nothing about GPUs, or keeps its count only for export, gets none.
//! Where the filter cannot be attached the profile still works, with a
//! shortfall that says only the environment hides the other GPUs.

use crate::accel::{DeviceAccess, DeviceKind, DeviceNode, GpuBinding, ReservedGpu};
use crate::cgroup::device::{gpu, DeviceType, Devices, Policy};
use crate::cgroup::{CgroupError, Driver, Isolation};
use crate::plan::Limits;
use crate::shortfall::Shortfall;
use crate::store::{Pending, Profile};

use super::{Manager, ManagerError, Status};

/// What the shortfall is called.
const WHAT: &str = "GPU isolation";

impl<D: Driver> Manager<D> {
    /// Puts the device filter of `profile`, which holds `gpus`, on its
    /// cgroup (or takes an old one off when it asks nothing about GPUs).
    /// The cgroup must exist.
    pub(super) fn isolate(
        &self,
        profile: &Profile,
        gpus: &[ReservedGpu],
    ) -> Result<Option<Shortfall>, CgroupError> {
        let policy = if filters_devices(&profile.limits) {
            device_policy(&self.machine().device_access(gpus))
        } else {
            None
        };
        Ok(
            match self
                .driver()
                .filter_devices(&profile.name, policy.as_ref())?
            {
                Isolation::Environment { why } => Some(Shortfall::new(WHAT, why).fix(
                    "until then only the environment variables hide the other GPUs \
                         (isolation: environment only)",
                )),
                Isolation::None | Isolation::Kernel { .. } => None,
            },
        )
    }

    /// [`Manager::isolate`] with the GPUs the open write has on record.
    pub(super) fn isolate_recorded(
        &self,
        tx: &Pending<'_>,
        profile: &Profile,
    ) -> Result<Option<Shortfall>, ManagerError> {
        let gpus: Vec<ReservedGpu> = tx
            .reservations()?
            .into_iter()
            .filter(|r| r.profile == profile.name.as_str())
            .map(|r| r.gpu)
            .collect();
        Ok(self.isolate(profile, &gpus)?)
    }
}

impl Status {
    /// How the profile's GPUs are kept from others now; `None` when it asks
    /// nothing about GPUs, so there is nothing to isolate.
    pub fn isolation(&self) -> Option<Isolation> {
        if !filters_devices(&self.profile.limits) {
            return None;
        }
        let why = match (&self.live, &self.unavailable) {
            (Some(live), _) if live.exists => match &live.isolation {
                Isolation::None => "no device filter is attached".to_string(),
                other => return Some(other.clone()),
            },
            (Some(_), _) => "the cgroup is missing".to_string(),
            (None, Some(why)) => why.clone(),
            (None, None) => "no cgroup".to_string(),
        };
        Some(Isolation::Environment { why })
    }
}

/// Whether a profile's limits call for a device filter.
pub(super) fn filters_devices(limits: &Limits) -> bool {
    limits.gpus.is_some() && limits.gpu_binding != GpuBinding::ExportOnly
}

/// The filter for a split of the machine's GPU nodes; `None` on a machine
/// with no GPU nodes, where there is nothing to hide.
pub fn device_policy(access: &DeviceAccess) -> Option<Policy> {
    if access.allow.is_empty() && access.deny.is_empty() {
        return None;
    }
    Some(gpu::hiding(
        access.allow.iter().map(devices),
        access.deny.iter().map(devices),
    ))
}

fn devices(node: &DeviceNode) -> Devices {
    Devices {
        kind: Some(match node.kind {
            DeviceKind::Char => DeviceType::Char,
            DeviceKind::Block => DeviceType::Block,
        }),
        major: Some(node.major),
        minor: Some(node.minor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::device::{Access, Request, Verdict};

    fn node(minor: u32) -> DeviceNode {
        DeviceNode::char(195, minor, format!("/dev/nvidia{minor}"))
    }

    #[test]
    fn the_policy_denies_exactly_the_listed_nodes() {
        let access = DeviceAccess {
            allow: vec![
                node(1),
                node(2),
                DeviceNode::char(195, 255, "/dev/nvidiactl"),
            ],
            deny: vec![node(0), node(3)],
        };
        let policy = device_policy(&access).expect("a policy");
        for (name, minor, want) in [
            ("nvidia0", 0, Verdict::Deny),
            ("nvidia1", 1, Verdict::Allow),
            ("nvidia2", 2, Verdict::Allow),
            ("nvidia3", 3, Verdict::Deny),
            ("nvidiactl", 255, Verdict::Allow),
        ] {
            let request = Request {
                kind: DeviceType::Char,
                major: 195,
                minor,
                access: Access::READ_WRITE,
            };
            assert_eq!(policy.decide(&request), want, "{name}\n{policy}");
        }
    }

    #[test]
    fn a_machine_without_gpu_nodes_gets_no_filter() {
        assert_eq!(device_policy(&DeviceAccess::default()), None);
    }
}
