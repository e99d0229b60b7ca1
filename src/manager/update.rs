//! `update`: new limits for a stored profile, written to the database and
//! the live cgroup together, and the new OOM priority given to the
//! processes applied to it.

use std::path::PathBuf;

use super::{not_enforced, oom_shortfall, GpuAsk, Manager, ManagerError};
use crate::cgroup::{Detail, Driver};
use crate::plan::{Limits, Overrides, ProfileName};
use crate::preset::Preset;
use crate::process;
use crate::shortfall::Shortfall;
use crate::store::{self, Profile, Store};
use crate::units::{Bytes, Limit};

/// What to change.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Start again from this preset instead of the stored limits.
    pub preset: Option<Preset>,
    /// The options given.
    pub overrides: Overrides,
}

/// What `update` did.
#[derive(Debug)]
pub struct Updated {
    /// The limits before.
    pub before: Limits,
    /// The profile as stored now.
    pub profile: Profile,
    /// The cgroup written, if the host has one.
    pub cgroup: Option<PathBuf>,
    /// Live processes whose OOM adjustment was rewritten.
    pub oom_updated: Vec<u32>,
    /// What is not enforced.
    pub shortfalls: Vec<Shortfall>,
}

impl<D: Driver> Manager<D> {
    /// Changes a profile's limits in the database and in its live cgroup.
    /// A hard memory limit below current usage makes the kernel reclaim and
    /// perhaps OOM-kill, so it is refused unless `force`.
    pub fn update(
        &self,
        name: &ProfileName,
        change: &Change,
        force: bool,
    ) -> Result<Updated, ManagerError> {
        let mut store = Store::open(self.db())?;
        let tx = store.begin()?;
        let old = tx
            .get(name)?
            .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
        let (preset, limits) = match change.preset {
            Some(preset) => (preset, Limits::resolve(preset, &change.overrides)?),
            None => (old.preset, old.limits.with(&change.overrides)?),
        };

        let available = self.driver().base().is_ok();
        if available && !force {
            self.check_usage(name, limits.memory_max)?;
        }

        let mut profile = Profile {
            preset,
            limits,
            updated_at: store::now(),
            ..old.clone()
        };
        // A changed GPU request is placed again against everyone else's
        // reservations; the profile's own old ones do not count against it.
        let gpus_changed = change.overrides.gpu_ids.is_some()
            || (
                profile.limits.gpus,
                profile.limits.gpu_share,
                profile.limits.gpu_binding,
            ) != (
                old.limits.gpus,
                old.limits.gpu_share,
                old.limits.gpu_binding,
            );
        if gpus_changed {
            let ask = GpuAsk {
                ids: change.overrides.gpu_ids.clone(),
                cpus_given: change.overrides.cpus.is_some(),
            };
            self.rebind_gpus(&tx, &mut profile, &ask)?;
        }
        tx.update(&profile)?;

        let (cgroup, mut shortfalls) = match self.driver().base() {
            Err(why) => (None, vec![not_enforced(name, why)]),
            Ok(_) => {
                let mut ensured = self.driver().ensure(name, &profile.limits)?;
                let isolation = self.isolate_recorded(&tx, &profile)?;
                ensured.shortfalls.extend(isolation);
                (self.driver().path(name), ensured.shortfalls)
            }
        };

        let mut oom_updated = Vec::new();
        let adj = profile.limits.oom_score_adj;
        if adj != old.limits.oom_score_adj {
            // The processes inside the cgroup (those `run` started, and
            // their children, which inherited the old value), and those
            // applied where no cgroup holds them, if still the same process.
            let mut pids = match cgroup {
                Some(_) => self.driver().live(name, Detail::Summary)?.pids,
                None => Vec::new(),
            };
            for applied in tx.applied(name)? {
                let alive = process::start_time(self.proc_root(), applied.pid).ok()
                    == Some(applied.start_time);
                if alive && !pids.contains(&applied.pid) {
                    pids.push(applied.pid);
                }
            }
            for pid in pids {
                match process::set_oom_score_adj(self.proc_root(), pid, adj) {
                    Ok(()) => oom_updated.push(pid),
                    Err(e) if e.is_permission() => shortfalls.push(oom_shortfall(adj.get(), pid)),
                    // It exited since the check: nothing left to adjust.
                    Err(process::ProcessError::NoSuchProcess { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        if let Err(e) = tx.commit() {
            // Put the kernel back to what the database still says.
            if cgroup.is_some() {
                let _ = self.driver().ensure(name, &old.limits);
            }
            return Err(e.into());
        }
        Ok(Updated {
            before: old.limits,
            profile,
            cgroup,
            oom_updated,
            shortfalls,
        })
    }

    /// Refuses a hard limit below the memory the cgroup holds now.
    fn check_usage(&self, name: &ProfileName, max: Limit<Bytes>) -> Result<(), ManagerError> {
        let Limit::Value(max) = max else {
            return Ok(());
        };
        let live = self.driver().live(name, Detail::Summary)?;
        match live.memory_current {
            Some(current) if live.exists && current > max.0 => Err(ManagerError::BelowUsage {
                name: name.clone(),
                max,
                current: Bytes(current),
            }),
            _ => Ok(()),
        }
    }
}
