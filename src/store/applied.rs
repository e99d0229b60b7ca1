//! Forgetting processes that have exited, so the record of applied
//! processes holds what is running rather than every pid ever applied.

use super::{Pending, StoreError};

impl Pending<'_> {
    /// Drops the record of a process.
    pub fn forget_applied(&self, pid: u32) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM applied WHERE pid = ?1", [pid])
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}
