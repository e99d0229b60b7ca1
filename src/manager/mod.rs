//! The operations of `cortex limits`, each one transaction of intent:
//! the database and the kernel end up agreeing, or the operation fails and
//! leaves nothing half-done.
//!
//! Writers hold the database's write lock while they change the kernel, so
//! concurrent invocations run one after another and the second sees what
//! the first did.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::cgroup::{CgroupError, Detail, Driver, Live};
use crate::env::Variable;
use crate::error::ErrorKind;
use crate::plan::{Limits, Overrides, PlanError, ProfileName};
use crate::preset::Preset;
use crate::process::{self, ProcessError, Target};
use crate::shortfall::Shortfall;
use crate::store::{self, AppliedPid, Profile, Store, StoreError};

mod gpus;
mod isolation;
mod restore;
mod run;
mod update;

pub use gpus::{GpuAsk, GpuListing, GpuState};
pub use restore::Restored;
pub use run::Entered;
pub use update::{Change, Updated};

/// What went wrong in an operation.
#[derive(Debug, Error)]
pub enum ManagerError {
    /// Bad input.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cgroup layer.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A process.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// No profile of that name.
    #[error("no profile named '{0}': see `cortex limits list`, or create it with `cortex limits create {0}`")]
    UnknownProfile(ProfileName),
    /// GPUs could not be placed.
    #[error(transparent)]
    Place(#[from] crate::accel::place::PlaceError),
    /// A new hard memory limit below what the profile uses now.
    #[error("the new memory.max for '{name}' ({max}) is below what it uses now ({current}): the kernel would reclaim and may OOM-kill its processes; add --force to do it anyway")]
    BelowUsage {
        /// The profile.
        name: ProfileName,
        /// The new limit.
        max: crate::units::Bytes,
        /// The bytes in use.
        current: crate::units::Bytes,
    },
}

impl ManagerError {
    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManagerError::Plan(_) => ErrorKind::BadInput,
            ManagerError::Store(StoreError::Exists(_)) => ErrorKind::Conflict,
            ManagerError::Store(_) => ErrorKind::Failure,
            ManagerError::Cgroup(e) => e.kind(),
            ManagerError::Process(e) => e.kind(),
            ManagerError::UnknownProfile(_) => ErrorKind::NotFound,
            ManagerError::Place(e) => e.kind(),
            ManagerError::BelowUsage { .. } => ErrorKind::Conflict,
        }
    }
}

/// What `create` did.
#[derive(Debug)]
pub struct Created {
    /// The stored profile.
    pub profile: Profile,
    /// Its cgroup, where one was made.
    pub cgroup: Option<PathBuf>,
    /// The GPUs reserved for it.
    pub gpus: Vec<crate::accel::ReservedGpu>,
    /// What is not enforced.
    pub shortfalls: Vec<Shortfall>,
}

/// What `apply` did.
#[derive(Debug)]
pub struct Applied {
    /// The process.
    pub pid: u32,
    /// The profile's cgroup it is in now.
    pub cgroup: PathBuf,
    /// The OOM adjustment written, if it was.
    pub oom_score_adj: Option<i16>,
    /// What is not enforced.
    pub shortfalls: Vec<Shortfall>,
}

/// A profile with its live state.
#[derive(Debug)]
pub struct Status {
    /// The stored profile.
    pub profile: Profile,
    /// The cgroup as the kernel shows it; `None` where the host has no
    /// place for cgroups (see `unavailable`).
    pub live: Option<Live>,
    /// Why the host cannot enforce limits, if it cannot.
    pub unavailable: Option<String>,
    /// Kernel files that differ from the stored limits.
    pub drift: Vec<&'static str>,
    /// Processes put under it by `apply`, each with whether it still runs.
    pub applied: Vec<(AppliedPid, bool)>,
    /// The GPUs it holds, with live data where NVML is present.
    pub gpus: Vec<GpuState>,
}

impl Status {
    /// Whether the kernel enforces the profile as stored: its cgroup
    /// exists and every limit file holds the stored value.
    pub fn enforced(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.exists) && self.drift.is_empty()
    }
}

/// A profile as `list` shows it.
#[derive(Debug)]
pub struct Listed {
    /// The stored profile.
    pub profile: Profile,
    /// Whether its cgroup exists now.
    pub cgroup_exists: bool,
}

/// What `delete` did.
#[derive(Debug)]
pub struct Deleted {
    /// The cgroup removed, if there was one.
    pub cgroup: Option<PathBuf>,
    /// Processes killed first.
    pub killed: Vec<u32>,
}

/// Below this many profiles per thread, a thread costs more than it saves.
const PROFILES_PER_THREAD: usize = 256;

/// The operations, over a database, a cgroup driver and procfs.
pub struct Manager<D: Driver> {
    db: PathBuf,
    proc_root: PathBuf,
    driver: D,
    accel_root: PathBuf,
}

impl<D: Driver> Manager<D> {
    /// A manager for the database at `db`, with procfs at `proc_root`.
    pub fn new(db: PathBuf, proc_root: PathBuf, driver: D) -> Manager<D> {
        Manager {
            db,
            proc_root,
            driver,
            accel_root: PathBuf::from("/"),
        }
    }

    /// The database path.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// The cgroup driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The procfs root.
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// Stores a new profile and creates its cgroup. On a host that cannot
    /// enforce limits the profile is still stored, with a shortfall that
    /// says why. A failure leaves neither record nor cgroup.
    pub fn create(
        &self,
        name: ProfileName,
        preset: Preset,
        overrides: &Overrides,
    ) -> Result<Created, ManagerError> {
        let limits = Limits::resolve(preset, overrides)?;
        let now = store::now();
        let mut profile = Profile {
            name,
            preset,
            limits,
            created_at: now,
            updated_at: now,
        };

        let mut store = Store::open(&self.db)?;
        let tx = store.begin()?;
        let ask = GpuAsk {
            ids: overrides.gpu_ids.clone(),
            cpus_given: overrides.cpus.is_some(),
        };
        let gpus = self.place_gpus(&tx, &mut profile, &ask)?;
        tx.insert(&profile)?;
        tx.reserve(&profile.name, &gpus)?;
        let (cgroup, created, shortfalls) = match self.driver.base() {
            Err(why) => (None, false, vec![not_enforced(&profile.name, why)]),
            Ok(_) => {
                let mut ensured = self.driver.ensure(&profile.name, &profile.limits)?;
                match self.isolate(&profile, &gpus) {
                    Ok(shortfall) => ensured.shortfalls.extend(shortfall),
                    Err(e) => {
                        if ensured.created {
                            let _ = self.driver.remove(&profile.name, false);
                        }
                        return Err(e.into());
                    }
                }
                (
                    self.driver.path(&profile.name),
                    ensured.created,
                    ensured.shortfalls,
                )
            }
        };
        if let Err(e) = tx.commit() {
            if created {
                // Undo only what this call made; the record is rolled back.
                let _ = self.driver.remove(&profile.name, false);
            }
            return Err(e.into());
        }
        Ok(Created {
            profile,
            cgroup,
            gpus,
            shortfalls,
        })
    }

    /// Moves a running process, all its threads, under a profile: into its
    /// cgroup (re-created with its limits if it is missing), with its OOM
    /// adjustment, and records it.
    pub fn apply(&self, name: &ProfileName, pid: u32) -> Result<Applied, ManagerError> {
        let target = Target::open(&self.proc_root, pid)?;
        let mut store = Store::open(&self.db)?;
        let tx = store.begin()?;
        let profile = tx
            .get(name)?
            .ok_or_else(|| ManagerError::UnknownProfile(name.clone()))?;
        if let Err(why) = self.driver.base() {
            return Err(CgroupError::Unavailable(why.clone()).into());
        }

        let ensured = self.driver.ensure(name, &profile.limits)?;
        let isolation = self.isolate_recorded(&tx, &profile)?;
        self.driver.attach(name, pid)?;
        target.verify(&self.proc_root)?;

        let mut shortfalls = ensured.shortfalls;
        shortfalls.extend(gpus::pin_without_cpuset(
            &self.proc_root,
            pid,
            &profile.limits,
            &shortfalls,
        ));
        shortfalls.extend(isolation);
        let adj = profile.limits.oom_score_adj;
        let oom_score_adj = match process::set_oom_score_adj(&self.proc_root, pid, adj) {
            Ok(()) => Some(adj.get()),
            Err(e) if e.is_permission() => {
                shortfalls.push(oom_shortfall(adj.get(), pid));
                None
            }
            Err(e) => return Err(e.into()),
        };
        forget_exited(&tx, &self.proc_root, name)?;
        tx.record_applied(name, pid, target.start_time())?;
        tx.commit()?;
        Ok(Applied {
            pid,
            cgroup: self.driver.path(name).unwrap_or_default(),
            oom_score_adj,
            shortfalls,
        })
    }

    /// The environment variables of a profile.
    pub fn env(&self, name: &ProfileName) -> Result<Vec<Variable>, ManagerError> {
        self.env_with_gpus(name)
    }

    /// One stored profile.
    pub fn get(&self, name: &ProfileName) -> Result<Profile, ManagerError> {
        Ok(self.find(name)?.1)
    }

    /// Opens the database to read and finds a profile in it; a database
    /// not made yet holds no profile.
    fn find(&self, name: &ProfileName) -> Result<(Store, Profile), ManagerError> {
        let unknown = || ManagerError::UnknownProfile(name.clone());
        let store = Store::open_existing(&self.db)?.ok_or_else(unknown)?;
        let profile = store.get(name)?.ok_or_else(unknown)?;
        Ok((store, profile))
    }

    /// A profile with its live state.
    pub fn status(&self, name: &ProfileName) -> Result<Status, ManagerError> {
        let (store, profile) = self.find(name)?;
        let applied = store
            .applied(name)?
            .into_iter()
            .map(|a| {
                let alive = process::start_time(&self.proc_root, a.pid).ok() == Some(a.start_time);
                (a, alive)
            })
            .collect();
        let mut status = self.with_live(profile, applied, Detail::Full)?;
        status.gpus = self.gpu_states(&[name])?.pop().unwrap_or_default();
        Ok(status)
    }

    /// Every profile with its live state, as much of it as `detail` asks
    /// for.
    ///
    /// Each profile's state is up to eighteen kernel files, so a large
    /// store is read by as many threads as there are CPUs, each taking a
    /// run of profiles in order.
    pub fn status_all(&self, detail: Detail) -> Result<Vec<Status>, ManagerError>
    where
        D: Sync,
    {
        let profiles = self.profiles()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(profiles.len() / PROFILES_PER_THREAD)
            .max(1);
        let live = |run: Vec<Profile>| -> Result<Vec<Status>, ManagerError> {
            run.into_iter()
                .map(|p| self.with_live(p, Vec::new(), detail))
                .collect()
        };
        let mut all = if threads == 1 {
            live(profiles)?
        } else {
            let per_thread = profiles.len().div_ceil(threads);
            let mut runs = Vec::with_capacity(threads);
            let mut rest = profiles;
            while rest.len() > per_thread {
                let tail = rest.split_off(per_thread);
                runs.push(rest);
                rest = tail;
            }
            runs.push(rest);
            let done: Vec<Result<Vec<Status>, ManagerError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = runs
                    .into_iter()
                    .map(|run| scope.spawn(move || live(run)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a status thread panicked"))
                    .collect()
            });
            let mut all = Vec::new();
            for run in done {
                all.extend(run?);
            }
            all
        };
        let names: Vec<&ProfileName> = all.iter().map(|s| &s.profile.name).collect();
        let gpus = self.gpu_states(&names)?;
        for (status, gpus) in all.iter_mut().zip(gpus) {
            status.gpus = gpus;
        }
        Ok(all)
    }

    fn with_live(
        &self,
        profile: Profile,
        applied: Vec<(AppliedPid, bool)>,
        detail: Detail,
    ) -> Result<Status, ManagerError> {
        let (live, unavailable) = match self.driver.base() {
            Err(why) => (None, Some(why.to_string())),
            Ok(_) => (Some(self.driver.live(&profile.name, detail)?), None),
        };
        let drift = live
            .as_ref()
            .map(|l| l.drift(&profile.limits))
            .unwrap_or_default();
        Ok(Status {
            profile,
            live,
            unavailable,
            drift,
            applied,
            gpus: Vec::new(),
        })
    }

    /// Every profile, with whether its cgroup exists.
    pub fn list(&self) -> Result<Vec<Listed>, ManagerError> {
        let present = self.driver.present()?;
        Ok(self
            .profiles()?
            .into_iter()
            .map(|profile| Listed {
                cgroup_exists: match &present {
                    Some(names) => names.contains(profile.name.as_str()),
                    None => self.driver.path(&profile.name).is_some_and(|p| p.is_dir()),
                },
                profile,
            })
            .collect())
    }

    fn profiles(&self) -> Result<Vec<Profile>, ManagerError> {
        Ok(match Store::open_existing(&self.db)? {
            Some(store) => store.list()?,
            None => Vec::new(),
        })
    }

    /// Removes a profile: its cgroup (killing what is inside when `force`)
    /// and then its record, so a failure leaves the record to retry with.
    pub fn delete(&self, name: &ProfileName, force: bool) -> Result<Deleted, ManagerError> {
        let mut store = Store::open(&self.db)?;
        let tx = store.begin()?;
        if tx.get(name)?.is_none() {
            return Err(ManagerError::UnknownProfile(name.clone()));
        }
        let removed = match self.driver.base() {
            Ok(_) => Some(self.driver.remove(name, force)?),
            Err(_) => None,
        };
        tx.delete(name)?;
        tx.commit()?;
        let cgroup = removed
            .as_ref()
            .filter(|r| r.existed)
            .and_then(|_| self.driver.path(name));
        Ok(Deleted {
            cgroup,
            killed: removed.map(|r| r.killed).unwrap_or_default(),
        })
    }
}

/// Forgets the processes recorded under `name` that have exited (or whose
/// pid now names another process), so the record stays as long as what
/// runs rather than growing with every `run`.
fn forget_exited(
    tx: &store::Pending<'_>,
    proc_root: &Path,
    name: &ProfileName,
) -> Result<(), ManagerError> {
    for applied in tx.applied(name)? {
        if process::start_time(proc_root, applied.pid).ok() != Some(applied.start_time) {
            tx.forget_applied(applied.pid)?;
        }
    }
    Ok(())
}

/// The shortfall for a host that has no place for profile cgroups.
fn not_enforced(name: &ProfileName, why: &crate::cgroup::Unavailable) -> Shortfall {
    Shortfall::new(
        format!("the limits of '{name}'"),
        format!("{why}; the profile is stored and works with env, list and status"),
    )
}

fn oom_shortfall(adj: i16, pid: u32) -> Shortfall {
    let what = format!("oom_score_adj {adj} for pid {pid}");
    if adj < 0 {
        Shortfall::new(
            what,
            "lowering an OOM score adjustment below 0 needs CAP_SYS_RESOURCE, which this process lacks",
        )
        .fix("run as root, or give the profile --oom-adj 0 or higher")
    } else {
        Shortfall::new(
            what,
            "the kernel refused the write: the process belongs to another user",
        )
        .fix("run as root, or apply to your own processes")
    }
}
