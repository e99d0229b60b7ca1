//! `run`: this process puts itself under a profile (cgroup, OOM priority,
//! CPU affinity where cpuset is not in force) and hands back the
//! environment, so the caller can exec the command in its place and leave
//! no extra process behind.
//!
//! `run` starts workloads, so its path is kept short: when the profile's
//! cgroup exists it reads the database without locking it, joins the
//! cgroup as it stands, and writes nothing to the database; the cgroup's
//! own list of processes is the record (`update` reads it). The write
//! lock is taken only where something must be made or recorded: a missing
//! cgroup, made under the lock so that a concurrent `delete` cannot leave
//! one behind, or a host without cgroup v2, where the recorded pid is the
//! only way back to the process.

use super::isolation::filters_devices;
use super::{forget_exited, not_enforced, oom_shortfall, Manager, ManagerError};
use crate::accel::ReservedGpu;
use crate::cgroup::{Driver, Ensured};
use crate::env::{self, Variable};
use crate::plan::ProfileName;
use crate::process;
use crate::shortfall::Shortfall;
use crate::store::{Profile, Store};

/// What `enter` did.
#[derive(Debug)]
pub struct Entered {
    /// The environment to run the command with.
    pub vars: Vec<Variable>,
    /// What is not enforced.
    pub shortfalls: Vec<Shortfall>,
}

/// A profile with the GPUs it holds, as one read saw them.
struct Held {
    profile: Profile,
    gpus: Vec<ReservedGpu>,
}

impl<D: Driver> Manager<D> {
    /// Moves this process under a profile. On a host without cgroup v2 it
    /// still sets what it can (OOM priority, affinity) and says what is
    /// not enforced.
    pub fn enter(&self, name: &ProfileName) -> Result<Entered, ManagerError> {
        let pid = std::process::id();
        let store = Store::open_existing(self.db())?
            .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
        let mut held = read_held(&store, name)?;

        let mut cpuset_in_force = false;
        let mut shortfalls = match self.driver().base() {
            Err(why) => {
                held = self.record(name, pid)?;
                vec![not_enforced(name, why)]
            }
            Ok(_) => {
                let ensured = match self.driver().existing(name, &held.profile.limits)? {
                    Some(existing) => self.join(&held, existing, pid)?,
                    None => {
                        let (now, ensured) = self.make_and_join(name, pid)?;
                        held = now;
                        ensured
                    }
                };
                cpuset_in_force = !ensured.shortfalls.iter().any(|s| s.what == "cpuset.cpus");
                ensured.shortfalls
            }
        };
        let limits = &held.profile.limits;

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
        Ok(Entered {
            vars: env::variables_with_gpus(limits, &held.gpus),
            shortfalls,
        })
    }

    /// Joins the profile's existing cgroup. The device filter of a profile
    /// asking about GPUs is put on again, so that it always matches the
    /// GPUs held now; the limits stay as create, apply, update or restore
    /// wrote them.
    fn join(&self, held: &Held, mut ensured: Ensured, pid: u32) -> Result<Ensured, ManagerError> {
        if filters_devices(&held.profile.limits) {
            ensured
                .shortfalls
                .extend(self.isolate(&held.profile, &held.gpus)?);
        }
        self.driver().attach(&held.profile.name, pid)?;
        Ok(ensured)
    }

    /// Makes the missing cgroup with the profile's limits and joins it,
    /// under the write lock, from the profile as it stands then.
    fn make_and_join(&self, name: &ProfileName, pid: u32) -> Result<(Held, Ensured), ManagerError> {
        let mut store = Store::open(self.db())?;
        let tx = store.begin()?;
        let profile = tx
            .get(name)?
            .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
        let gpus = tx.reserved(name)?;
        let mut ensured = self.driver().ensure(name, &profile.limits)?;
        ensured.shortfalls.extend(self.isolate(&profile, &gpus)?);
        self.driver().attach(name, pid)?;
        tx.commit()?;
        Ok((Held { profile, gpus }, ensured))
    }

    /// Records this process against the profile, for a host where no
    /// cgroup holds it.
    fn record(&self, name: &ProfileName, pid: u32) -> Result<Held, ManagerError> {
        let mut store = Store::open(self.db())?;
        let tx = store.begin()?;
        let profile = tx
            .get(name)?
            .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
        let gpus = tx.reserved(name)?;
        let start = process::start_time(self.proc_root(), pid)?;
        forget_exited(&tx, self.proc_root(), name)?;
        tx.record_applied(name, pid, start)?;
        tx.commit()?;
        Ok(Held { profile, gpus })
    }
}

fn read_held(store: &Store, name: &ProfileName) -> Result<Held, ManagerError> {
    let profile = store
        .get(name)?
        .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
    let gpus = store.reserved(name)?;
    Ok(Held { profile, gpus })
}
