//! GPU reservations as operations: placing a profile's GPUs inside the
//! caller's write transaction, listing the machine's GPUs with who holds
//! them, and what a profile's processes may see and open.

use std::path::{Path, PathBuf};

use super::{Manager, ManagerError};
use crate::accel::nvml::{GpuLive, Nvml};
use crate::accel::place::{self, Request};
use crate::accel::{self, DeviceAccess, Gpu, GpuBinding, Machine, ReservedGpu};
use crate::cgroup::Driver;
use crate::env::{self, Variable};
use crate::plan::{GpuSelector, ProfileName};
use crate::process;
use crate::shortfall::Shortfall;
use crate::store::{Pending, Profile, Store};

/// What a caller asks of GPU placement beyond the profile's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuAsk {
    /// Particular GPUs (`--gpu-ids`); `None` lets placement choose.
    pub ids: Option<Vec<GpuSelector>>,
    /// The user named the CPUs (`--cpus`), so placement leaves
    /// `cpuset.cpus` and `cpuset.mems` alone.
    pub cpus_given: bool,
}

/// One GPU of the machine with the profiles holding it.
#[derive(Debug, Clone)]
pub struct GpuListing {
    /// The GPU as discovered.
    pub gpu: Gpu,
    /// `(profile, share)` for each holder.
    pub holders: Vec<(String, u8)>,
    /// Live data, where NVML is present.
    pub live: Option<GpuLive>,
}

/// A GPU a profile holds, with live data where NVML is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuState {
    /// The reservation.
    pub reserved: ReservedGpu,
    /// Live data, where NVML is present.
    pub live: Option<GpuLive>,
}

impl<D: Driver> Manager<D> {
    /// Uses `root` instead of `/` for accelerator discovery (sysfs, procfs
    /// and `/dev` under it), leaving the cgroup and proc roots as they are.
    pub fn with_accel_root(mut self, root: PathBuf) -> Manager<D> {
        self.accel_root = root;
        self
    }

    /// Where accelerator discovery reads.
    pub fn accel_root(&self) -> &Path {
        &self.accel_root
    }

    /// The machine's GPUs.
    pub fn machine(&self) -> Machine {
        accel::discover(&self.accel_root)
    }

    /// NVML, only where discovery reads the real machine: live data from
    /// the real GPUs would not describe a fixture tree.
    fn nvml(&self) -> Option<Nvml> {
        if self.accel_root != Path::new("/") {
            return None;
        }
        match Nvml::load() {
            Ok(nvml) => Some(nvml),
            Err(e) => {
                tracing::debug!(%e, "no live GPU data");
                None
            }
        }
    }

    /// Chooses GPUs for `profile` (whose limits say how many, what share
    /// and whether bound here) against every other profile's holdings in
    /// this transaction, and pins its CPUs and memory nodes near them
    /// unless `ask.cpus_given`. Writes nothing: the caller stores the
    /// profile and then [`Pending::reserve`]s what this returns.
    pub fn place_gpus(
        &self,
        tx: &Pending<'_>,
        profile: &mut Profile,
        ask: &GpuAsk,
    ) -> Result<Vec<ReservedGpu>, ManagerError> {
        let limits = &profile.limits;
        let count = match (limits.gpu_binding, limits.gpus) {
            (GpuBinding::Local, Some(n)) if n > 0 => n,
            _ => return Ok(Vec::new()),
        };
        let machine = self.machine();
        let holdings = tx.holdings(Some(&profile.name))?;
        let share = limits.gpu_share.percent();
        let request = Request {
            profile: profile.name.as_str(),
            count,
            share,
            ids: ask.ids.as_deref(),
        };
        let root = self.accel_root.join(accel::discover::PCI_DEVICES);
        let chosen = place::choose(&machine, &holdings, &request, &root.display().to_string())?;

        if !ask.cpus_given {
            let pinned = tx.pinned_cpus(&profile.name)?;
            if let Some(near) = place::near(&chosen, limits.cpu, &pinned) {
                profile.limits.cpus = Some(near.cpus);
                profile.limits.mems = near.mems;
            }
        }
        Ok(chosen
            .into_iter()
            .map(|g| ReservedGpu::of(g, share))
            .collect())
    }

    /// Changes a stored profile's GPUs inside an open transaction, for
    /// `update`: set the new `gpus`, `gpu_share` and `gpu_binding` on
    /// `profile.limits` first. Its old reservations are released and do
    /// not count against it; the new ones are checked against everyone
    /// else's and recorded. The caller then stores the profile
    /// ([`Pending::update`]) and commits; dropping the transaction undoes
    /// it all.
    pub fn rebind_gpus(
        &self,
        tx: &Pending<'_>,
        profile: &mut Profile,
        ask: &GpuAsk,
    ) -> Result<Vec<ReservedGpu>, ManagerError> {
        let gpus = self.place_gpus(tx, profile, ask)?;
        tx.release(&profile.name)?;
        tx.reserve(&profile.name, &gpus)?;
        Ok(gpus)
    }

    /// The GPUs a profile holds.
    pub fn reserved_gpus(&self, name: &ProfileName) -> Result<Vec<ReservedGpu>, ManagerError> {
        Ok(match Store::open_existing(&self.db)? {
            Some(store) => store.reserved(name)?,
            None => Vec::new(),
        })
    }

    /// Which device nodes a profile's processes may open; `None` when the
    /// profile leaves GPUs alone (no GPU request, or export-only).
    pub fn device_access(&self, name: &ProfileName) -> Result<Option<DeviceAccess>, ManagerError> {
        let profile = self.get(name)?;
        if profile.limits.gpus.is_none() || profile.limits.gpu_binding == GpuBinding::ExportOnly {
            return Ok(None);
        }
        let reserved = self.reserved_gpus(name)?;
        Ok(Some(self.machine().device_access(&reserved)))
    }

    /// The environment of a profile, naming its reserved GPUs.
    pub(super) fn env_with_gpus(&self, name: &ProfileName) -> Result<Vec<Variable>, ManagerError> {
        let (store, profile) = self.find(name)?;
        let reserved = store.reserved(name)?;
        Ok(env::variables_with_gpus(&profile.limits, &reserved))
    }

    /// The GPUs of profiles, each with live data where NVML is present,
    /// in the order of `names`.
    pub(super) fn gpu_states(
        &self,
        names: &[&ProfileName],
    ) -> Result<Vec<Vec<GpuState>>, ManagerError> {
        let Some(store) = Store::open_existing(&self.db)? else {
            return Ok(names.iter().map(|_| Vec::new()).collect());
        };
        let all = store.reservations()?;
        let nvml = if all.is_empty() { None } else { self.nvml() };
        Ok(names
            .iter()
            .map(|name| {
                all.iter()
                    .filter(|r| r.profile == name.as_str())
                    .map(|r| GpuState {
                        live: nvml.as_ref().and_then(|n| n.live(&r.gpu.bus_id).ok()),
                        reserved: r.gpu.clone(),
                    })
                    .collect()
            })
            .collect())
    }

    /// Every GPU of the machine with who holds it.
    pub fn gpus(&self) -> Result<Vec<GpuListing>, ManagerError> {
        let machine = self.machine();
        let reservations = match Store::open_existing(&self.db)? {
            Some(store) => store.reservations()?,
            None => Vec::new(),
        };
        let nvml = if machine
            .gpus
            .iter()
            .any(|g| g.vendor == accel::Vendor::Nvidia)
        {
            self.nvml()
        } else {
            None
        };
        Ok(machine
            .gpus
            .into_iter()
            .map(|mut gpu| {
                let live = nvml.as_ref().and_then(|n| n.live(&gpu.bus_id).ok());
                if let Some(live) = &live {
                    gpu.model = live.model.clone().or(gpu.model);
                    gpu.memory_total = live.memory_total.or(gpu.memory_total);
                }
                let holders = reservations
                    .iter()
                    .filter(|r| r.gpu.bus_id == gpu.bus_id)
                    .map(|r| (r.profile.clone(), r.gpu.share))
                    .collect();
                GpuListing { gpu, holders, live }
            })
            .collect())
    }
}

/// Where the cpuset controller is missing (not delegated, or a v1 host's
/// leftovers), pins the process's threads with `sched_setaffinity`
/// instead, so a profile placed near its GPUs still runs there. The
/// cpuset shortfall stays: the process may widen its affinity again.
pub(super) fn pin_without_cpuset(
    proc_root: &Path,
    pid: u32,
    limits: &crate::plan::Limits,
    shortfalls: &[Shortfall],
) -> Option<Shortfall> {
    let cpus = limits.cpus.as_ref()?;
    let missing = shortfalls
        .iter()
        .any(|s| s.what == crate::cgroup::files::CPUSET_CPUS);
    if !missing {
        return None;
    }
    match process::pin_threads(proc_root, pid, cpus) {
        Ok(()) => {
            tracing::debug!(pid, %cpus, "no cpuset: pinned with sched_setaffinity");
            None
        }
        Err(e) => Some(Shortfall::new("cpu affinity", e.to_string())),
    }
}
