//! The profile database: SQLite, one file, safe under concurrent use.
//!
//! The schema version lives in `PRAGMA user_version`. Writers take the
//! write lock up front (`BEGIN IMMEDIATE`) and wait for each other through
//! a busy timeout, so two invocations never interleave half-done changes,
//! and of two creates of the same name exactly one wins. Readers open the
//! file read-only and never create it: a missing database is an empty one.
//!
//! The journal is SQLite's default rollback journal, not WAL. A writer's
//! lock does not block readers until the moment it commits, which is all
//! the concurrency a command-line tool needs; and WAL would make every
//! read-only open of an idle database create and initialise the `-wal` and
//! `-shm` files, which costs more than the whole of `env`'s work and fails
//! outright for a reader who may not write the database's directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use thiserror::Error;

use crate::cpuset::CpuSet;
use crate::plan::{CpuQuota, CpuWeight, GpuShare, Limits, OomScoreAdj, ProfileName};
use crate::preset::Preset;
use crate::units::{Bytes, Limit};

mod applied;
mod gpus;

pub use gpus::MIGRATE_1_TO_2;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 2;

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE profiles (
    name          TEXT PRIMARY KEY NOT NULL,
    preset        TEXT NOT NULL,
    cpu_quota_us  INTEGER,          -- NULL: no quota (max)
    cpu_weight    INTEGER NOT NULL,
    cpus          TEXT,             -- NULL: not pinned
    memory_max    INTEGER,          -- NULL: max
    memory_high   INTEGER,          -- NULL: max
    oom_score_adj INTEGER NOT NULL,
    gpus          INTEGER,          -- NULL: GPUs left alone
    gpu_share     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    mems          TEXT,             -- NULL: all memory nodes
    gpu_binding   TEXT NOT NULL DEFAULT 'local'
) STRICT;
CREATE TABLE applied (
    pid        INTEGER PRIMARY KEY NOT NULL,
    profile    TEXT NOT NULL REFERENCES profiles(name) ON DELETE CASCADE,
    start_time INTEGER NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT;
CREATE INDEX applied_by_profile ON applied(profile);
";

const PROFILE_COLUMNS: &str = "name, preset, cpu_quota_us, cpu_weight, cpus, memory_max, \
     memory_high, oom_score_adj, gpus, gpu_share, created_at, updated_at, mems, gpu_binding";

/// What went wrong with the database.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The file (or its directory) cannot be opened or created.
    #[error("cannot open the profile database {path}: check that it is a readable file in a writable directory, or choose another with --db")]
    CannotOpen {
        /// The database path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory for a new database cannot be created.
    #[error(
        "cannot create the directory {path} for the profile database: choose another with --db"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not SQLite.
    #[error("{path} is not a cortex profile database (not SQLite): move it away or choose another with --db")]
    NotADatabase {
        /// The database path.
        path: PathBuf,
    },
    /// The file or its directory is read-only.
    #[error("the profile database {path} is read-only: make it and its directory writable, or choose another with --db")]
    ReadOnly {
        /// The database path.
        path: PathBuf,
    },
    /// Another invocation held the lock for too long.
    #[error("the profile database {path} stayed locked by another cortex for {}s: try again", BUSY_TIMEOUT.as_secs())]
    Busy {
        /// The database path.
        path: PathBuf,
    },
    /// The schema is newer than this build.
    #[error("the profile database {path} has schema version {found}, newer than this cortex understands ({SCHEMA_VERSION}): upgrade cortex")]
    TooNew {
        /// The database path.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// A profile of that name exists.
    #[error("a profile named '{0}' already exists: pick another name, or delete it first")]
    Exists(ProfileName),
    /// A stored row holds a value this build cannot read.
    #[error("the profile database {path} holds an unreadable value for profile '{profile}' ({what}): it may have been edited by hand")]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The column.
        what: &'static str,
    },
    /// Any other SQLite error.
    #[error("the profile database {path} failed")]
    Sqlite {
        /// The database path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
}

/// A stored profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: ProfileName,
    /// The preset it was made from.
    pub preset: Preset,
    /// Its limits.
    pub limits: Limits,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at: i64,
    /// When it was last changed, in seconds since the Unix epoch.
    pub updated_at: i64,
}

/// A process put under a profile by `apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedPid {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot, which tells it apart
    /// from a later process that reuses the id.
    pub start_time: u64,
    /// When it was applied, in seconds since the Unix epoch.
    pub applied_at: i64,
}

/// An open profile database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// A write in progress; dropped without [`Pending::commit`], it rolls back.
pub struct Pending<'a> {
    tx: rusqlite::Transaction<'a>,
    path: &'a Path,
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens the database for writing, creating it (and its directory) if
    /// needed and bringing its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::CannotOpen {
                path: path.to_path_buf(),
                source,
            })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database for reading; `None` if there is none.
    pub fn open_existing(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::CannotOpen {
                path: path.to_path_buf(),
                source,
            })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store.error(e))?;
        match store.version()? {
            0 => Ok(None),
            SCHEMA_VERSION => Ok(Some(store)),
            // An older schema is brought up to date once, by the first
            // command that opens it; readers then see the current one.
            found if found < SCHEMA_VERSION => {
                drop(store);
                Store::open(path).map(Some)
            }
            found => Err(StoreError::TooNew {
                path: store.path.clone(),
                found,
            }),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.error(e))?;
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(|e| self.error(e))
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.error(e))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self.begin()?;
        let version: i64 = tx
            .tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| tx.error(e))?;
        match version {
            0 => {
                tx.tx
                    .execute_batch(SCHEMA)
                    .and_then(|_| tx.tx.execute_batch(gpus::SCHEMA))
                    .and_then(|_| {
                        tx.tx
                            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                    })
                    .map_err(|e| tx.error(e))?;
                tx.commit()
            }
            1 => {
                tx.tx
                    .execute_batch(MIGRATE_1_TO_2)
                    .map_err(|e| tx.error(e))?;
                tx.commit()
            }
            SCHEMA_VERSION => Ok(()),
            found => Err(StoreError::TooNew {
                path: tx.path.to_path_buf(),
                found,
            }),
        }
    }

    /// Starts a write: takes the write lock now, so that everything read
    /// inside it stays true until commit.
    pub fn begin(&mut self) -> Result<Pending<'_>, StoreError> {
        let path = self.path.as_path();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(path, e))?;
        Ok(Pending { tx, path })
    }

    /// One profile by name.
    pub fn get(&self, name: &ProfileName) -> Result<Option<Profile>, StoreError> {
        get(&self.conn, &self.path, name)
    }

    /// Every profile, by name.
    pub fn list(&self) -> Result<Vec<Profile>, StoreError> {
        let sql = format!("SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY name");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], RawProfile::from_row)
            .map_err(|e| self.error(e))?;
        rows.map(|row| row.map_err(|e| self.error(e))?.decode(&self.path))
            .collect()
    }

    /// The processes recorded under a profile.
    pub fn applied(&self, name: &ProfileName) -> Result<Vec<AppliedPid>, StoreError> {
        applied(&self.conn, &self.path, name)
    }

    fn error(&self, e: rusqlite::Error) -> StoreError {
        classify(&self.path, e)
    }
}

impl Pending<'_> {
    /// One profile by name, as this write sees it.
    pub fn get(&self, name: &ProfileName) -> Result<Option<Profile>, StoreError> {
        get(&self.tx, self.path, name)
    }

    /// Adds a profile; [`StoreError::Exists`] if the name is taken.
    pub fn insert(&self, profile: &Profile) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO profiles ({PROFILE_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        );
        match self.write_profile(&sql, profile) {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(profile.name.clone()))
            }
            other => other.map_err(|e| self.error(e)),
        }
    }

    /// Stores new limits (and preset) for an existing profile, keeping its
    /// creation time, its applied processes and everything tied to it.
    pub fn update(&self, profile: &Profile) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO profiles ({PROFILE_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT(name) DO UPDATE SET preset = excluded.preset, \
             cpu_quota_us = excluded.cpu_quota_us, cpu_weight = excluded.cpu_weight, \
             cpus = excluded.cpus, memory_max = excluded.memory_max, \
             memory_high = excluded.memory_high, oom_score_adj = excluded.oom_score_adj, \
             gpus = excluded.gpus, gpu_share = excluded.gpu_share, \
             updated_at = excluded.updated_at, mems = excluded.mems, \
             gpu_binding = excluded.gpu_binding"
        );
        self.write_profile(&sql, profile).map_err(|e| self.error(e))
    }

    /// Runs an insert of every profile column, in `PROFILE_COLUMNS` order.
    fn write_profile(&self, sql: &str, profile: &Profile) -> rusqlite::Result<()> {
        let l = &profile.limits;
        self.tx.execute(
            sql,
            params![
                profile.name.as_str(),
                profile.preset.name(),
                l.cpu.value().map(|q| q.usec() as i64),
                l.cpu_weight.get(),
                l.cpus.as_ref().map(|c| c.to_string()),
                l.memory_max.value().map(|b| b.0 as i64),
                l.memory_high.value().map(|b| b.0 as i64),
                l.oom_score_adj.get(),
                l.gpus,
                l.gpu_share.percent(),
                profile.created_at,
                profile.updated_at,
                l.mems.as_ref().map(|m| m.to_string()),
                l.gpu_binding.name(),
            ],
        )?;
        Ok(())
    }

    /// The processes recorded under a profile, as this write sees them.
    pub fn applied(&self, name: &ProfileName) -> Result<Vec<AppliedPid>, StoreError> {
        applied(&self.tx, self.path, name)
    }

    /// Removes a profile and its applied records; whether it existed.
    pub fn delete(&self, name: &ProfileName) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM profiles WHERE name = ?1", [name.as_str()])
            .map_err(|e| self.error(e))?;
        Ok(n > 0)
    }

    /// Records that a process was put under a profile. A process is under
    /// one profile at a time, so an older record of it is replaced.
    pub fn record_applied(
        &self,
        name: &ProfileName,
        pid: u32,
        start_time: u64,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT OR REPLACE INTO applied (pid, profile, start_time, applied_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![pid, name.as_str(), start_time as i64, now()],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Makes the write permanent.
    pub fn commit(self) -> Result<(), StoreError> {
        let path = self.path;
        self.tx.commit().map_err(|e| classify(path, e))
    }

    fn error(&self, e: rusqlite::Error) -> StoreError {
        classify(self.path, e)
    }
}

fn applied(
    conn: &Connection,
    path: &Path,
    name: &ProfileName,
) -> Result<Vec<AppliedPid>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT pid, start_time, applied_at FROM applied WHERE profile = ?1 ORDER BY pid")
        .map_err(|e| classify(path, e))?;
    let rows = stmt
        .query_map([name.as_str()], |r| {
            Ok(AppliedPid {
                pid: r.get(0)?,
                start_time: r.get::<_, i64>(1)? as u64,
                applied_at: r.get(2)?,
            })
        })
        .map_err(|e| classify(path, e))?;
    rows.map(|r| r.map_err(|e| classify(path, e))).collect()
}

fn get(conn: &Connection, path: &Path, name: &ProfileName) -> Result<Option<Profile>, StoreError> {
    let sql = format!("SELECT {PROFILE_COLUMNS} FROM profiles WHERE name = ?1");
    conn.query_row(&sql, [name.as_str()], RawProfile::from_row)
        .optional()
        .map_err(|e| classify(path, e))?
        .map(|raw| raw.decode(path))
        .transpose()
}

/// A row as SQLite holds it, before its values are checked.
struct RawProfile {
    name: String,
    preset: String,
    cpu_quota_us: Option<i64>,
    cpu_weight: i64,
    cpus: Option<String>,
    memory_max: Option<i64>,
    memory_high: Option<i64>,
    oom_score_adj: i64,
    gpus: Option<i64>,
    gpu_share: i64,
    created_at: i64,
    updated_at: i64,
    mems: Option<String>,
    gpu_binding: String,
}

impl RawProfile {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawProfile> {
        Ok(RawProfile {
            name: r.get(0)?,
            preset: r.get(1)?,
            cpu_quota_us: r.get(2)?,
            cpu_weight: r.get(3)?,
            cpus: r.get(4)?,
            memory_max: r.get(5)?,
            memory_high: r.get(6)?,
            oom_score_adj: r.get(7)?,
            gpus: r.get(8)?,
            gpu_share: r.get(9)?,
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
            mems: r.get(12)?,
            gpu_binding: r.get(13)?,
        })
    }

    /// Checks every value again: the file may have been edited by hand.
    fn decode(self, path: &Path) -> Result<Profile, StoreError> {
        let corrupt = |what| StoreError::Corrupt {
            path: path.to_path_buf(),
            profile: self.name.clone(),
            what,
        };
        let bytes = |v: Option<i64>, what| match v {
            None => Ok(Limit::Max),
            Some(n) if n > 0 => Ok(Limit::Value(Bytes(n as u64))),
            Some(_) => Err(corrupt(what)),
        };
        let cpu = match self.cpu_quota_us {
            None => Limit::Max,
            Some(us) => Limit::Value(
                u64::try_from(us)
                    .ok()
                    .and_then(CpuQuota::from_usec)
                    .ok_or_else(|| corrupt("cpu_quota_us"))?,
            ),
        };
        let cpus = self
            .cpus
            .as_deref()
            .map(CpuSet::parse)
            .transpose()
            .map_err(|_| corrupt("cpus"))?;
        let gpus = self
            .gpus
            .map(|g| u32::try_from(g).map_err(|_| corrupt("gpus")))
            .transpose()?;
        let limits = Limits {
            cpu,
            cpu_weight: u64::try_from(self.cpu_weight)
                .ok()
                .and_then(CpuWeight::new)
                .ok_or_else(|| corrupt("cpu_weight"))?,
            cpus,
            memory_max: bytes(self.memory_max, "memory_max")?,
            memory_high: bytes(self.memory_high, "memory_high")?,
            oom_score_adj: OomScoreAdj::new(self.oom_score_adj)
                .ok_or_else(|| corrupt("oom_score_adj"))?,
            gpus,
            gpu_share: u64::try_from(self.gpu_share)
                .ok()
                .and_then(GpuShare::new)
                .ok_or_else(|| corrupt("gpu_share"))?,
            mems: self
                .mems
                .as_deref()
                .map(CpuSet::parse)
                .transpose()
                .map_err(|_| corrupt("mems"))?,
            gpu_binding: self
                .gpu_binding
                .parse()
                .map_err(|_| corrupt("gpu_binding"))?,
        };
        Ok(Profile {
            name: ProfileName::new(&self.name).map_err(|_| corrupt("name"))?,
            preset: self.preset.parse().map_err(|_| corrupt("preset"))?,
            limits,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy { path },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            StoreError::CannotOpen { path, source: e }
        }
        _ => StoreError::Sqlite { path, source: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_cpus;

    fn profile(name: &str) -> Profile {
        let mut limits = Preset::Batch.limits();
        limits.cpus = Some(parse_cpus("0-3,8").unwrap());
        limits.gpus = Some(2);
        Profile {
            name: ProfileName::new(name).unwrap(),
            preset: Preset::Batch,
            limits,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
        }
    }

    #[test]
    fn profiles_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/limits.db");
        let mut store = Store::open(&path).unwrap();
        let mut unlimited = profile("b-unlimited");
        unlimited.limits.cpu = Limit::Max;
        unlimited.limits.memory_max = Limit::Max;
        unlimited.limits.memory_high = Limit::Max;
        unlimited.limits.cpus = None;
        unlimited.limits.gpus = None;

        let tx = store.begin().unwrap();
        tx.insert(&profile("a-job")).unwrap();
        tx.insert(&unlimited).unwrap();
        tx.commit().unwrap();

        let name = ProfileName::new("a-job").unwrap();
        assert_eq!(store.get(&name).unwrap(), Some(profile("a-job")));
        assert_eq!(store.list().unwrap(), vec![profile("a-job"), unlimited]);

        let reader = Store::open_existing(&path).unwrap().unwrap();
        assert_eq!(reader.list().unwrap().len(), 2);
    }

    #[test]
    fn a_taken_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
        let tx = store.begin().unwrap();
        tx.insert(&profile("job")).unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        let err = tx.insert(&profile("job")).unwrap_err();
        assert!(
            matches!(err, StoreError::Exists(ref n) if n.as_str() == "job"),
            "{err}"
        );
    }

    #[test]
    fn a_dropped_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
        let tx = store.begin().unwrap();
        tx.insert(&profile("job")).unwrap();
        drop(tx);
        assert_eq!(store.list().unwrap(), vec![]);
    }

    #[test]
    fn applied_pids_follow_their_profile() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
        let (a, b) = (profile("a"), profile("b"));
        let tx = store.begin().unwrap();
        tx.insert(&a).unwrap();
        tx.insert(&b).unwrap();
        tx.record_applied(&a.name, 42, 1000).unwrap();
        tx.record_applied(&b.name, 42, 1000).unwrap();
        tx.record_applied(&b.name, 43, 2000).unwrap();
        tx.commit().unwrap();
        assert_eq!(store.applied(&a.name).unwrap(), vec![], "moved to b");
        let pids: Vec<u32> = store
            .applied(&b.name)
            .unwrap()
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(pids, vec![42, 43]);

        let tx = store.begin().unwrap();
        assert!(tx.delete(&b.name).unwrap());
        assert!(!tx.delete(&b.name).unwrap());
        tx.commit().unwrap();
        assert_eq!(store.applied(&b.name).unwrap(), vec![]);
    }

    #[test]
    fn update_keeps_creation_time_and_applied_processes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
        let original = profile("job");
        let tx = store.begin().unwrap();
        tx.insert(&original).unwrap();
        tx.record_applied(&original.name, 42, 1000).unwrap();
        tx.commit().unwrap();

        let mut changed = original.clone();
        changed.limits.cpu_weight = CpuWeight::new(777).unwrap();
        changed.created_at = 1;
        changed.updated_at = 1_800_000_000;
        let tx = store.begin().unwrap();
        tx.update(&changed).unwrap();
        assert_eq!(tx.applied(&original.name).unwrap().len(), 1);
        tx.commit().unwrap();

        let stored = store.get(&original.name).unwrap().unwrap();
        assert_eq!(stored.limits.cpu_weight.get(), 777);
        assert_eq!(stored.created_at, original.created_at, "creation time kept");
        assert_eq!(stored.updated_at, 1_800_000_000);
        assert_eq!(
            store.applied(&original.name).unwrap().len(),
            1,
            "applied kept"
        );
    }

    #[test]
    fn a_missing_database_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        assert!(Store::open_existing(&path).unwrap().is_none());
        assert!(!path.exists(), "reading must not create the file");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.db");
        std::fs::write(
            &path,
            "this is a text file, long enough to have a header......",
        )
        .unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
        let err = Store::open_existing(&path).err().unwrap();
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(
            matches!(err, StoreError::TooNew { found: 99, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn hand_edited_values_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.db");
        let mut store = Store::open(&path).unwrap();
        let tx = store.begin().unwrap();
        tx.insert(&profile("job")).unwrap();
        tx.commit().unwrap();
        store
            .conn
            .execute("UPDATE profiles SET cpu_weight = 0", [])
            .unwrap();
        let err = store.list().unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    what: "cpu_weight",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
