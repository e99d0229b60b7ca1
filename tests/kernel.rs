//! Real-kernel tests: they drive the `cortex` binary and read the result
//! back from cgroupfs and procfs. They change the machine's cgroups, so they
//! are ignored by a plain `cargo test` and run inside a VM by
//! `cargo xtask vm-test`, which picks the module for each VM mode:
//!
//! - `v2`: busybox as PID 1, cgroup2 alone at /sys/fs/cgroup, run as root,
//!   plus a subtree delegated to uid 1000 the way systemd delegates one.
//! - `hybrid`: cgroup v1 controllers and an empty cgroup2, as on a host
//!   that has not moved to cgroup v2.
//! - `systemd`: systemd as PID 1 on a Debian root.

#[path = "kernel/support.rs"]
mod support;

#[path = "kernel/hybrid.rs"]
mod hybrid;
#[path = "kernel/systemd.rs"]
mod systemd;
#[path = "kernel/v2/mod.rs"]
mod v2;
