//! The device filter: which device nodes the processes of a cgroup may
//! open, enforced by the kernel.
//!
//! On cgroup v2 the kernel asks an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE`, attached to the cgroup, whether an open or
//! mknod of a device node is allowed. A [`Policy`] is an ordered list of
//! rules with a default of deny; [`program`] assembles it into instructions,
//! [`bpf`] loads and attaches them, and [`gpu`] builds the policy that hides
//! the GPUs a profile did not reserve.

pub mod bpf;
pub mod gpu;
pub mod program;

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::error::ErrorKind;

pub use bpf::{install, installed, uninstall, Installed};
pub use program::Program;

/// Block or character device, as the kernel names them to the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceType {
    /// A block device (`b`).
    Block,
    /// A character device (`c`).
    Char,
}

impl DeviceType {
    /// The kernel's code in `access_type` (`BPF_DEVCG_DEV_*`).
    pub fn code(self) -> u32 {
        match self {
            DeviceType::Block => 1,
            DeviceType::Char => 2,
        }
    }

    /// The letter `ls -l` and the v1 device controller use.
    pub fn letter(self) -> char {
        match self {
            DeviceType::Block => 'b',
            DeviceType::Char => 'c',
        }
    }
}

/// A set of the three kinds of device access: read, write, mknod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access(u32);

impl Access {
    /// Making a device node (`BPF_DEVCG_ACC_MKNOD`).
    pub const MKNOD: Access = Access(1);
    /// Opening for reading (`BPF_DEVCG_ACC_READ`).
    pub const READ: Access = Access(2);
    /// Opening for writing (`BPF_DEVCG_ACC_WRITE`).
    pub const WRITE: Access = Access(4);
    /// Reading and writing.
    pub const READ_WRITE: Access = Access(2 | 4);
    /// All three.
    pub const ALL: Access = Access(1 | 2 | 4);

    /// The kernel's bits, as in the high half of `access_type`.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set for the given bits; bits other than the three are dropped.
    pub fn from_bits(bits: u32) -> Access {
        Access(bits & Access::ALL.0)
    }

    /// Whether every access in `other` is in this set.
    pub fn contains(self, other: Access) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether the two sets share an access.
    pub fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.contains(bit) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// What a rule decides when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the access through.
    Allow,
    /// Refuse it: the open or mknod fails with EPERM.
    Deny,
}

/// One device node, or a family of them when a field is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Devices {
    /// Block or char; `None` for both.
    pub kind: Option<DeviceType>,
    /// The major number; `None` for any.
    pub major: Option<u32>,
    /// The minor number; `None` for any.
    pub minor: Option<u32>,
}

impl Devices {
    /// Every device.
    pub const ANY: Devices = Devices {
        kind: None,
        major: None,
        minor: None,
    };

    /// One character device.
    pub fn char(major: u32, minor: u32) -> Devices {
        Devices {
            kind: Some(DeviceType::Char),
            major: Some(major),
            minor: Some(minor),
        }
    }

    /// Every character device with this major.
    pub fn char_major(major: u32) -> Devices {
        Devices {
            kind: Some(DeviceType::Char),
            major: Some(major),
            minor: None,
        }
    }

    /// Whether a device falls in this family.
    pub fn matches(&self, kind: DeviceType, major: u32, minor: u32) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let kind = self.kind.map_or('a', DeviceType::letter);
        write!(f, "{kind} {}:{}", number(self.major), number(self.minor))
    }
}

/// One rule: a verdict for some accesses to some devices.
///
/// An allow rule matches a request when it grants every access asked for
/// (a read+write open does not match a read-only allow); a deny rule
/// matches when it names any of them (a read+write open matches a
/// write-only deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What happens on a match.
    pub verdict: Verdict,
    /// The devices.
    pub devices: Devices,
    /// The accesses; never empty in a [`Policy`].
    pub access: Access,
}

impl Rule {
    /// An allow rule.
    pub fn allow(devices: Devices, access: Access) -> Rule {
        Rule {
            verdict: Verdict::Allow,
            devices,
            access,
        }
    }

    /// A deny rule.
    pub fn deny(devices: Devices, access: Access) -> Rule {
        Rule {
            verdict: Verdict::Deny,
            devices,
            access,
        }
    }

    /// Whether the rule decides this request.
    pub fn matches(&self, request: &Request) -> bool {
        let access = match self.verdict {
            Verdict::Allow => self.access.contains(request.access),
            Verdict::Deny => self.access.intersects(request.access),
        };
        access
            && self
                .devices
                .matches(request.kind, request.major, request.minor)
    }

    /// Whether the rule matches every request, so nothing after it counts.
    pub fn is_total(&self) -> bool {
        self.devices == Devices::ANY && self.access == Access::ALL
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        };
        write!(f, "{verdict} {} {}", self.devices, self.access)
    }
}

/// An access the kernel asks the program about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Block or char.
    pub kind: DeviceType,
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
    /// What is asked: an open asks read, write or both; mknod asks mknod.
    pub access: Access,
}

/// Ordered rules; the first that matches decides, and a request no rule
/// matches is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// A policy that denies everything until rules are added.
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Adds a rule after the others. A rule with no access never matches
    /// and is left out.
    pub fn push(&mut self, rule: Rule) -> &mut Policy {
        if !rule.access.is_empty() {
            self.rules.push(rule);
        }
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What the policy decides for a request: the reference the assembled
    /// program is tested against.
    pub fn decide(&self, request: &Request) -> Verdict {
        self.rules
            .iter()
            .find(|r| r.matches(request))
            .map_or(Verdict::Deny, |r| r.verdict)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for rule in &self.rules {
            writeln!(f, "{rule}")?;
        }
        write!(f, "deny a *:* rwm")
    }
}

/// How a profile's GPUs are kept from other profiles' processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Isolation {
    /// No filter: the profile asks for no GPUs, or none was read.
    #[default]
    None,
    /// The kernel refuses opens of other GPUs' nodes: the device program
    /// with this id is attached to the profile's cgroup.
    Kernel {
        /// The program's id (as `bpftool prog show` lists it).
        program: u32,
    },
    /// Only the environment variables keep programs to their GPUs.
    Environment {
        /// Why the kernel does not enforce it.
        why: String,
    },
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Isolation::None => write!(f, "none"),
            Isolation::Kernel { program } => write!(f, "kernel (program id {program})"),
            Isolation::Environment { why } => write!(f, "environment only ({why})"),
        }
    }
}

/// What went wrong loading, attaching or reading a device filter.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The kernel has no `bpf(2)`.
    #[error("this kernel has no bpf(2) system call (built without CONFIG_BPF_SYSCALL), so device access cannot be filtered")]
    NoBpf,
    /// The kernel does not know cgroup device programs.
    #[error("this kernel cannot filter devices of a cgroup v2 (it needs Linux 4.15 or later built with CONFIG_CGROUP_BPF)")]
    NoCgroupBpf {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The caller lacks the privileges.
    #[error("{op} a device filter needs root (CAP_BPF and CAP_SYS_ADMIN, or CAP_SYS_ADMIN before Linux 5.8): run cortex as root")]
    Permission {
        /// What was tried: `loading`, `attaching`, `reading`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The verifier refused the program.
    #[error("the kernel's verifier rejected the device filter program ({source}); this is a bug in cortex, report it with this log: {log}")]
    Rejected {
        /// The verifier's log, possibly cut short.
        log: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The cgroup directory could not be opened.
    #[error("cannot open the cgroup {path} to filter its devices")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `bpf(2)` command on a cgroup failed for another reason.
    #[error("cannot {op} the device filter of {path}{hint}")]
    Kernel {
        /// What was tried: `attach`, `replace`, `detach`, `query`.
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// What to try; starts with "; " when present.
        hint: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl DeviceError {
    /// Whether the host or the user cannot have a device filter at all, as
    /// opposed to a failure worth reporting as an error.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            DeviceError::NoBpf | DeviceError::NoCgroupBpf { .. } | DeviceError::Permission { .. }
        )
    }

    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        if self.is_unsupported() {
            ErrorKind::Unsupported
        } else {
            ErrorKind::Failure
        }
    }
}
