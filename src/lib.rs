//! `cortex limits`: named resource profiles for AI workloads.
//!
//! A profile comes from a preset with overrides ([`plan`], [`preset`]), is
//! stored in SQLite ([`store`]), enforced by the kernel through cgroup v2
//! ([`cgroup`]), applied to processes ([`process`]) and described to the
//! libraries inside them through environment variables ([`env`]). The
//! [`manager`] ties these together, one operation at a time; the `cortex`
//! binary is a thin command line over it.

#![warn(missing_docs)]

pub mod accel;
pub mod cgroup;
pub mod cpuset;
pub mod doctor;
pub mod env;
pub mod error;
pub mod manager;
pub mod plan;
pub mod preset;
pub mod process;
pub mod shortfall;
pub mod store;
pub mod units;
