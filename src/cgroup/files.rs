//! Names of the kernel's cgroup v2 interface files and directories, one
//! constant each, so a typo is a compile error and a grep finds every use.

/// The directory every profile cgroup lives in, under the cgroup root for
/// root and under the delegated subtree for other users.
pub const SLICE: &str = "cortex.slice";

/// Controllers available to a cgroup's children (read-only).
pub const CONTROLLERS: &str = "cgroup.controllers";
/// Controllers enabled for a cgroup's children (`+cpu -io`).
pub const SUBTREE_CONTROL: &str = "cgroup.subtree_control";
/// The processes in a cgroup; writing a pid moves its whole thread group.
pub const PROCS: &str = "cgroup.procs";
/// `populated 0|1` and `frozen 0|1`.
pub const EVENTS: &str = "cgroup.events";
/// Writing `1` kills every process in the cgroup (Linux 5.14 and later).
pub const KILL: &str = "cgroup.kill";

/// `$MAX $PERIOD`: CPU time per period, or `max`.
pub const CPU_MAX: &str = "cpu.max";
/// Relative share under contention, 1..=10000.
pub const CPU_WEIGHT: &str = "cpu.weight";
/// Usage and throttling counters.
pub const CPU_STAT: &str = "cpu.stat";
/// The CPUs the cgroup's processes may run on.
pub const CPUSET_CPUS: &str = "cpuset.cpus";
/// The memory (NUMA) nodes the cgroup's processes may allocate from.
pub const CPUSET_MEMS: &str = "cpuset.mems";
/// The CPUs actually granted, after the parent's restrictions.
pub const CPUSET_CPUS_EFFECTIVE: &str = "cpuset.cpus.effective";
/// The hard memory limit.
pub const MEMORY_MAX: &str = "memory.max";
/// The soft memory limit: throttling and reclaim start here.
pub const MEMORY_HIGH: &str = "memory.high";
/// Bytes in use now.
pub const MEMORY_CURRENT: &str = "memory.current";
/// Counts of low/high/max/oom/oom_kill events.
pub const MEMORY_EVENTS: &str = "memory.events";
/// The most memory ever in use (Linux 5.19 and later).
pub const MEMORY_PEAK: &str = "memory.peak";
/// Swap in use now.
pub const MEMORY_SWAP_CURRENT: &str = "memory.swap.current";
/// The swap limit.
pub const MEMORY_SWAP_MAX: &str = "memory.swap.max";
/// Pressure stall information for CPU.
pub const CPU_PRESSURE: &str = "cpu.pressure";
/// Pressure stall information for memory.
pub const MEMORY_PRESSURE: &str = "memory.pressure";
/// Pressure stall information for I/O.
pub const IO_PRESSURE: &str = "io.pressure";

/// The path of a process's cgroup membership, under procfs.
pub const PROC_SELF_CGROUP: &str = "self/cgroup";
