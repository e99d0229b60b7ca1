//! The device policy that hides the GPUs a profile did not reserve.
//!
//! The accelerator layer says which nodes a profile may open (its GPUs'
//! nodes, and the shared driver nodes of their vendors) and which it may
//! not (other GPUs' nodes, and the driver nodes of vendors it holds none
//! of). Every device on neither list stays allowed: a process needs
//! `/dev/null`, ptys and much else, and guessing that list is how
//! containers break. The allowed nodes get rules of their own ahead of the
//! denials, so a node on both lists stays usable.

use super::{Access, Devices, Policy, Rule};

/// The policy: `allow` allowed, then `deny` denied, then everything else
/// allowed, each for read, write and mknod.
pub fn hiding(
    allow: impl IntoIterator<Item = Devices>,
    deny: impl IntoIterator<Item = Devices>,
) -> Policy {
    let mut policy = Policy::new();
    let mut seen = Vec::new();
    for devices in allow {
        if !seen.contains(&devices) {
            seen.push(devices);
            policy.push(Rule::allow(devices, Access::ALL));
        }
    }
    for devices in deny {
        if !seen.contains(&devices) {
            seen.push(devices);
            policy.push(Rule::deny(devices, Access::ALL));
        }
    }
    policy.push(Rule::allow(Devices::ANY, Access::ALL));
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::device::{DeviceType, Program, Request, Verdict};

    fn open(major: u32, minor: u32) -> Request {
        Request {
            kind: DeviceType::Char,
            major,
            minor,
            access: Access::READ_WRITE,
        }
    }

    /// Four NVIDIA GPUs, 1 and 2 reserved, with nvidia-uvm at major 508.
    fn two_of_four() -> Policy {
        let allow = [
            Devices::char(195, 1),
            Devices::char(195, 2),
            Devices::char(195, 255),
            Devices::char(195, 254),
            Devices::char(508, 0),
            Devices::char(508, 1),
        ];
        let deny = [Devices::char(195, 0), Devices::char(195, 3)];
        hiding(allow, deny)
    }

    #[test]
    fn a_profile_sees_its_gpus_and_everything_that_is_not_a_gpu() {
        let policy = two_of_four();
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
            (
                "a gpu the accelerator layer did not list",
                open(195, 4),
                Allow,
            ),
            ("/dev/null", open(1, 3), Allow),
            ("/dev/urandom", open(1, 9), Allow),
            ("pty", open(136, 4), Allow),
            ("ptmx", open(5, 2), Allow),
            (
                "read only of a hidden gpu",
                Request {
                    access: Access::READ,
                    ..open(195, 0)
                },
                Deny,
            ),
            (
                "mknod of a hidden gpu",
                Request {
                    access: Access::MKNOD,
                    ..open(195, 3)
                },
                Deny,
            ),
            (
                "a block device with a gpu's numbers",
                Request {
                    kind: DeviceType::Block,
                    ..open(195, 0)
                },
                Allow,
            ),
        ];
        for (name, request, want) in cases {
            assert_eq!(program.interpret(&request), want, "{name}\n{policy}");
            assert_eq!(policy.decide(&request), want, "{name}\n{policy}");
        }
    }

    #[test]
    fn holding_nothing_hides_every_listed_node() {
        let deny = [
            Devices::char(195, 0),
            Devices::char(195, 255),
            Devices::char(226, 128),
            Devices::char(235, 0),
        ];
        let policy = hiding([], deny);
        let program = Program::assemble(&policy);
        for devices in deny {
            let request = open(devices.major.unwrap(), devices.minor.unwrap());
            assert_eq!(program.interpret(&request), Verdict::Deny, "{devices}");
        }
        assert_eq!(program.interpret(&open(1, 3)), Verdict::Allow);
    }

    #[test]
    fn a_node_on_both_lists_stays_allowed() {
        let node = Devices::char(226, 0);
        let policy = hiding([node], [node]);
        assert_eq!(policy.rules().len(), 2, "{policy}");
        assert_eq!(
            Program::assemble(&policy).interpret(&open(226, 0)),
            Verdict::Allow
        );
    }
}
