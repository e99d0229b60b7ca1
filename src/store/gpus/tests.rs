//! Reservations in the store, and the migration from schema version 1.

use super::*;
use crate::preset::Preset;
use crate::store::Profile;

fn profile(name: &str) -> Profile {
    let mut limits = Preset::Batch.limits();
    limits.gpus = Some(1);
    Profile {
        name: ProfileName::new(name).unwrap(),
        preset: Preset::Batch,
        limits,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

fn gpu(bus: &str, index: u32, share: u8) -> ReservedGpu {
    ReservedGpu {
        bus_id: bus.into(),
        index,
        vendor: Vendor::Nvidia,
        vendor_index: index,
        uuid: Some(format!("GPU-{index}")),
        share,
    }
}

/// The version 1 schema exactly as that release created it.
const SCHEMA_V1: &str = "
CREATE TABLE profiles (
    name          TEXT PRIMARY KEY NOT NULL,
    preset        TEXT NOT NULL,
    cpu_quota_us  INTEGER,
    cpu_weight    INTEGER NOT NULL,
    cpus          TEXT,
    memory_max    INTEGER,
    memory_high   INTEGER,
    oom_score_adj INTEGER NOT NULL,
    gpus          INTEGER,
    gpu_share     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE TABLE applied (
    pid        INTEGER PRIMARY KEY NOT NULL,
    profile    TEXT NOT NULL REFERENCES profiles(name) ON DELETE CASCADE,
    start_time INTEGER NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT;
CREATE INDEX applied_by_profile ON applied(profile);
INSERT INTO profiles VALUES ('old-job', 'batch', 800000, 50, '0-3', 68719476736,
    60129542144, 0, 2, 80, 1700000000, 1700000001);
INSERT INTO applied VALUES (4242, 'old-job', 123456, 1700000002);
PRAGMA user_version = 1;
";

#[test]
fn a_version_1_database_opens_and_keeps_its_profiles() {
    for writer in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA_V1)
            .unwrap();

        let store = if writer {
            Store::open(&path).unwrap()
        } else {
            Store::open_existing(&path).unwrap().unwrap()
        };
        let name = ProfileName::new("old-job").unwrap();
        let old = store.get(&name).unwrap().expect("the profile survives");
        assert_eq!(old.limits.gpus, Some(2));
        assert_eq!(old.limits.gpu_share.percent(), 80);
        assert_eq!(
            old.limits.cpus.as_ref().map(|c| c.to_string()).as_deref(),
            Some("0-3")
        );
        assert_eq!(old.limits.mems, None, "version 1 pinned no memory nodes");
        assert_eq!(old.limits.gpu_binding, crate::accel::GpuBinding::Local);
        assert_eq!(
            (old.created_at, old.updated_at),
            (1_700_000_000, 1_700_000_001)
        );
        assert_eq!(store.applied(&name).unwrap().len(), 1, "applied pids kept");
        assert_eq!(store.reserved(&name).unwrap(), vec![]);
        assert_eq!(store.version().unwrap(), 2, "writer {writer}");
    }
}

#[test]
fn the_migration_is_one_step_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(SCHEMA_V1)
        .unwrap();
    drop(Store::open(&path).unwrap());
    // A second open finds version 2 and leaves it alone.
    let mut store = Store::open(&path).unwrap();
    let tx = store.begin().unwrap();
    tx.reserve(
        &ProfileName::new("old-job").unwrap(),
        &[gpu("0000:18:00.0", 0, 80)],
    )
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(store.reservations().unwrap().len(), 1);
}

#[test]
fn reservations_round_trip_and_go_with_their_profile() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
    let (a, b) = (profile("a"), profile("b"));
    let tx = store.begin().unwrap();
    tx.insert(&a).unwrap();
    tx.insert(&b).unwrap();
    tx.reserve(
        &a.name,
        &[gpu("0000:18:00.0", 0, 50), gpu("0000:2a:00.0", 1, 50)],
    )
    .unwrap();
    tx.reserve(&b.name, &[gpu("0000:18:00.0", 0, 30)]).unwrap();
    assert_eq!(
        tx.holdings(Some(&a.name)).unwrap(),
        vec![Holding {
            profile: "b".into(),
            bus_id: "0000:18:00.0".into(),
            share: 30
        }],
        "a profile's own shares left out"
    );
    assert_eq!(tx.holdings(None).unwrap().len(), 3);
    tx.commit().unwrap();
    assert_eq!(
        store.reserved(&a.name).unwrap(),
        vec![gpu("0000:18:00.0", 0, 50), gpu("0000:2a:00.0", 1, 50)]
    );

    let tx = store.begin().unwrap();
    assert_eq!(tx.release(&a.name).unwrap(), 2);
    tx.delete(&b.name).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        store.reservations().unwrap(),
        vec![],
        "released, and gone with b"
    );
}

#[test]
fn pinned_cpus_of_other_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
    let mut a = profile("a");
    a.limits.cpus = Some(CpuSet::parse("0-3").unwrap());
    let mut b = profile("b");
    b.limits.cpus = Some(CpuSet::parse("8,10").unwrap());
    let tx = store.begin().unwrap();
    tx.insert(&a).unwrap();
    tx.insert(&b).unwrap();
    assert_eq!(tx.pinned_cpus(&a.name).unwrap().to_string(), "8,10");
}

#[test]
fn a_hand_edited_share_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("limits.db")).unwrap();
    let a = profile("a");
    let tx = store.begin().unwrap();
    tx.insert(&a).unwrap();
    tx.reserve(&a.name, &[gpu("0000:18:00.0", 0, 50)]).unwrap();
    tx.commit().unwrap();
    store
        .conn
        .execute("UPDATE gpu_reservations SET vendor = 'acme'", [])
        .unwrap();
    assert!(matches!(
        store.reserved(&a.name).unwrap_err(),
        StoreError::Corrupt { what: "vendor", .. }
    ));
}
