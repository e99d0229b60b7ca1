//! GPU reservations in the store: which profile holds what share of which
//! GPU, in a table of their own. Reserving happens inside the caller's
//! write transaction, so the check "is there room on this GPU" and the
//! insert that takes it are one atomic step across concurrent
//! invocations.

use rusqlite::{params, Connection, Row};

use super::{classify, Pending, Store, StoreError};
use crate::accel::place::Holding;
use crate::accel::{ReservedGpu, Vendor};
use crate::cpuset::CpuSet;
use crate::plan::ProfileName;

/// The reservations table, part of schema version 2.
pub(super) const SCHEMA: &str = "
CREATE TABLE gpu_reservations (
    profile      TEXT NOT NULL REFERENCES profiles(name) ON DELETE CASCADE,
    bus_id       TEXT NOT NULL,     -- PCI address: stable across boots
    gpu_index    INTEGER NOT NULL,  -- machine-wide index when reserved
    vendor       TEXT NOT NULL,
    vendor_index INTEGER NOT NULL,  -- index in the vendor runtime's order
    uuid         TEXT,
    share        INTEGER NOT NULL CHECK (share BETWEEN 1 AND 100),
    reserved_at  INTEGER NOT NULL,
    PRIMARY KEY (profile, bus_id)
) STRICT;
CREATE INDEX gpu_reservations_by_gpu ON gpu_reservations(bus_id);
";

/// Brings a version 1 database to version 2: two profile columns with
/// defaults that mean what version 1 meant (no memory nodes pinned, GPUs
/// bound locally), and the reservations table. Version 1 reserved no
/// GPUs, so there is nothing to carry over.
pub const MIGRATE_1_TO_2: &str = "
ALTER TABLE profiles ADD COLUMN mems TEXT;
ALTER TABLE profiles ADD COLUMN gpu_binding TEXT NOT NULL DEFAULT 'local';
CREATE TABLE gpu_reservations (
    profile      TEXT NOT NULL REFERENCES profiles(name) ON DELETE CASCADE,
    bus_id       TEXT NOT NULL,
    gpu_index    INTEGER NOT NULL,
    vendor       TEXT NOT NULL,
    vendor_index INTEGER NOT NULL,
    uuid         TEXT,
    share        INTEGER NOT NULL CHECK (share BETWEEN 1 AND 100),
    reserved_at  INTEGER NOT NULL,
    PRIMARY KEY (profile, bus_id)
) STRICT;
CREATE INDEX gpu_reservations_by_gpu ON gpu_reservations(bus_id);
PRAGMA user_version = 2;
";

const COLUMNS: &str = "profile, bus_id, gpu_index, vendor, vendor_index, uuid, share";

/// A reservation with the profile that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The profile.
    pub profile: String,
    /// The GPU and share.
    pub gpu: ReservedGpu,
}

/// A row as SQLite holds it, before its values are checked.
struct RawReservation {
    profile: String,
    bus_id: String,
    index: i64,
    vendor: String,
    vendor_index: i64,
    uuid: Option<String>,
    share: i64,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<RawReservation> {
    Ok(RawReservation {
        profile: r.get(0)?,
        bus_id: r.get(1)?,
        index: r.get(2)?,
        vendor: r.get(3)?,
        vendor_index: r.get(4)?,
        uuid: r.get(5)?,
        share: r.get(6)?,
    })
}

fn query(
    conn: &Connection,
    path: &std::path::Path,
    profile: Option<&ProfileName>,
) -> Result<Vec<Reservation>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM gpu_reservations WHERE ?1 IS NULL OR profile = ?1 \
         ORDER BY profile, gpu_index"
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| classify(path, e))?;
    let rows = stmt
        .query_map([profile.map(ProfileName::as_str)], from_row)
        .map_err(|e| classify(path, e))?;
    let mut out = Vec::new();
    for row in rows {
        let RawReservation {
            profile,
            bus_id,
            index,
            vendor,
            vendor_index,
            uuid,
            share,
        } = row.map_err(|e| classify(path, e))?;
        let corrupt = |what| StoreError::Corrupt {
            path: path.to_path_buf(),
            profile: profile.clone(),
            what,
        };
        let gpu = ReservedGpu {
            bus_id,
            index: u32::try_from(index).map_err(|_| corrupt("gpu_index"))?,
            vendor: vendor.parse::<Vendor>().map_err(|_| corrupt("vendor"))?,
            vendor_index: u32::try_from(vendor_index).map_err(|_| corrupt("vendor_index"))?,
            uuid,
            share: u8::try_from(share)
                .ok()
                .filter(|s| (1..=100).contains(s))
                .ok_or_else(|| corrupt("share"))?,
        };
        out.push(Reservation { profile, gpu });
    }
    Ok(out)
}

impl Store {
    /// The GPUs a profile holds, by index.
    pub fn reserved(&self, name: &ProfileName) -> Result<Vec<ReservedGpu>, StoreError> {
        Ok(query(&self.conn, &self.path, Some(name))?
            .into_iter()
            .map(|r| r.gpu)
            .collect())
    }

    /// Every reservation, by profile and index.
    pub fn reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        query(&self.conn, &self.path, None)
    }
}

impl Pending<'_> {
    /// The GPUs a profile holds, as this write sees it.
    pub fn reserved(&self, name: &ProfileName) -> Result<Vec<ReservedGpu>, StoreError> {
        Ok(query(&self.tx, self.path, Some(name))?
            .into_iter()
            .map(|r| r.gpu)
            .collect())
    }

    /// Every reservation, as this write sees it.
    pub fn reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        query(&self.tx, self.path, None)
    }

    /// Every share held, as placement wants it; `except` leaves one
    /// profile's own reservations out (for changing them).
    pub fn holdings(&self, except: Option<&ProfileName>) -> Result<Vec<Holding>, StoreError> {
        Ok(self
            .reservations()?
            .into_iter()
            .filter(|r| except.is_none_or(|n| n.as_str() != r.profile))
            .map(|r| Holding {
                profile: r.profile,
                bus_id: r.gpu.bus_id,
                share: r.gpu.share,
            })
            .collect())
    }

    /// Records that a profile holds these GPUs.
    pub fn reserve(&self, name: &ProfileName, gpus: &[ReservedGpu]) -> Result<(), StoreError> {
        let now = super::now();
        for g in gpus {
            self.tx
                .execute(
                    &format!(
                        "INSERT INTO gpu_reservations ({COLUMNS}, reserved_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    ),
                    params![
                        name.as_str(),
                        g.bus_id,
                        g.index,
                        g.vendor.name(),
                        g.vendor_index,
                        g.uuid,
                        g.share,
                        now
                    ],
                )
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Drops every reservation of a profile; how many there were.
    pub fn release(&self, name: &ProfileName) -> Result<usize, StoreError> {
        self.tx
            .execute(
                "DELETE FROM gpu_reservations WHERE profile = ?1",
                [name.as_str()],
            )
            .map_err(|e| self.error(e))
    }

    /// The CPUs other profiles are pinned to, so placement can avoid them.
    pub fn pinned_cpus(&self, except: &ProfileName) -> Result<CpuSet, StoreError> {
        let mut stmt = self
            .tx
            .prepare("SELECT cpus FROM profiles WHERE cpus IS NOT NULL AND name != ?1")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([except.as_str()], |r| r.get::<_, String>(0))
            .map_err(|e| self.error(e))?;
        let mut all = Vec::new();
        for row in rows {
            let text = row.map_err(|e| self.error(e))?;
            all.extend(CpuSet::parse(&text).unwrap_or_default().iter());
        }
        Ok(all.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
