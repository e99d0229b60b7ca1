//! `restore`: cgroups live in memory and are gone after a reboot; this
//! re-creates every stored profile's cgroup with its limits. Running it
//! again writes the same values and changes nothing.

use super::{Manager, ManagerError};
use crate::cgroup::{CgroupError, Driver, Ensured};
use crate::plan::ProfileName;
use crate::store::Store;

/// One profile's outcome.
#[derive(Debug)]
pub struct Restored {
    /// The profile.
    pub name: ProfileName,
    /// What the driver did, or why it failed.
    pub result: Result<Ensured, CgroupError>,
}

impl<D: Driver> Manager<D> {
    /// Re-creates every stored profile's cgroup. One profile failing does
    /// not stop the others; each outcome is returned.
    pub fn restore(&self) -> Result<Vec<Restored>, ManagerError> {
        if let Err(why) = self.driver().base() {
            return Err(CgroupError::Unavailable(why.clone()).into());
        }
        let (profiles, held) = match Store::open_existing(self.db())? {
            Some(store) => {
                let profiles = store.list()?;
                let held = profiles
                    .iter()
                    .map(|p| store.reserved(&p.name))
                    .collect::<Result<Vec<_>, _>>()?;
                (profiles, held)
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(profiles
            .into_iter()
            .zip(held)
            .map(|(p, gpus)| Restored {
                result: self
                    .driver()
                    .ensure(&p.name, &p.limits)
                    .and_then(|mut ensured| {
                        ensured.shortfalls.extend(self.isolate(&p, &gpus)?);
                        Ok(ensured)
                    }),
                name: p.name,
            })
            .collect())
    }
}
