//! `run`: this process puts itself under a profile (cgroup, OOM priority,
//! CPU affinity where cpuset is not in force) and hands back the
//! environment, so the caller can exec the command in its place and leave
//! no extra process behind.

use super::isolation::filters_devices;
use super::{forget_exited, not_enforced, oom_shortfall, Manager, ManagerError};
use crate::cgroup::Driver;
use crate::env::{self, Variable};
use crate::plan::ProfileName;
use crate::process;
use crate::shortfall::Shortfall;
use crate::store::Store;

/// What `enter` did.
#[derive(Debug)]
pub struct Entered {
    /// The environment to run the command with.
    pub vars: Vec<Variable>,
    /// What is not enforced.
    pub shortfalls: Vec<Shortfall>,
}

impl<D: Driver> Manager<D> {
    /// Moves this process under a profile. On a host without cgroup v2 it
    /// still sets what it can (OOM priority, affinity) and says what is
    /// not enforced.
    pub fn enter(&self, name: &ProfileName) -> Result<Entered, ManagerError> {
        let pid = std::process::id();
        let mut store = Store::open(self.db())?;
        let tx = store.begin()?;
        let profile = tx
            .get(name)?
            .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
        let limits = &profile.limits;

        let mut cpuset_in_force = false;
        let mut shortfalls = match self.driver().base() {
            Err(why) => vec![not_enforced(name, why)],
            Ok(_) => {
                // An existing cgroup holds what create, apply, update or
                // restore wrote: joining it is all `run` has to do, and it
                // keeps the launch path short. The device filter is put on
                // again, so that it always matches the GPUs held now.
                let mut ensured = match self.driver().existing(name, limits)? {
                    Some(existing) => existing,
                    None => self.driver().ensure(name, limits)?,
                };
                if filters_devices(limits) {
                    let isolation = self.isolate_recorded(&tx, &profile)?;
                    ensured.shortfalls.extend(isolation);
                }
                self.driver().attach(name, pid)?;
                cpuset_in_force = !ensured.shortfalls.iter().any(|s| s.what == "cpuset.cpus");
                let start = process::start_time(self.proc_root(), pid)?;
                forget_exited(&tx, self.proc_root(), name)?;
                tx.record_applied(name, pid, start)?;
                ensured.shortfalls
            }
        };

        // Without a cpuset the kernel will not confine the CPUs, but the
        // scheduler's affinity, inherited across exec, still does (though the
        // command could widen it again, so the cpuset shortfall stays).
        if let (Some(cpus), false) = (&limits.cpus, cpuset_in_force) {
            if let Err(e) = process::pin_self(cpus) {
                shortfalls.push(Shortfall::new("cpu affinity", e.to_string()));
            }
        }

        let adj = limits.oom_score_adj;
        match process::set_oom_score_adj(self.proc_root(), pid, adj) {
            Ok(()) => {}
            Err(e) if e.is_permission() => shortfalls.push(oom_shortfall(adj.get(), pid)),
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(Entered {
            vars: env::variables(limits),
            shortfalls,
        })
    }
}
