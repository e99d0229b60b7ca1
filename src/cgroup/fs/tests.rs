//! The filesystem driver against temp-dir trees shaped like cgroupfs.
//! Plain directories do not enforce anything; these tests check what is
//! written where and what is read back. The VM tests check the kernel.

use std::fs;
use std::path::Path;

use super::*;
use crate::plan::{parse_cpus, Overrides};
use crate::preset::Preset;

fn root_tree(controllers: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(CONTROLLERS), controllers).unwrap();
    dir
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn name(n: &str) -> ProfileName {
    ProfileName::new(n).unwrap()
}

fn limits(overrides: Overrides) -> Limits {
    Limits::resolve(Preset::Inference, &overrides).unwrap()
}

/// A tree offering cpu, memory and pids with profile `job` made from the
/// default limits: the tree (kept alive), the driver and the job's
/// directory.
fn a_job() -> (tempfile::TempDir, FsDriver, std::path::PathBuf) {
    let t = root_tree("cpu memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    driver
        .ensure(&name("job"), &limits(Overrides::default()))
        .unwrap();
    let dir = t.path().join("cortex.slice/job");
    (t, driver, dir)
}

#[test]
fn ensure_writes_every_limit_and_enables_controllers() {
    let t = root_tree("cpuset cpu io memory hugetlb pids rdma misc\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let l = limits(Overrides {
        cpus: Some(parse_cpus("0-3,8").unwrap()),
        ..Overrides::default()
    });

    let done = driver.ensure(&name("job"), &l).unwrap();
    assert!(done.created);
    assert_eq!(done.shortfalls, vec![]);

    let dir = t.path().join("cortex.slice/job");
    assert_eq!(read(&dir.join(CPU_MAX)), "400000 100000");
    assert_eq!(read(&dir.join(CPU_WEIGHT)), "400");
    assert_eq!(read(&dir.join(MEMORY_MAX)), (32u64 << 30).to_string());
    assert_eq!(read(&dir.join(MEMORY_HIGH)), (28u64 << 30).to_string());
    assert_eq!(read(&dir.join(CPUSET_CPUS)), "0-3,8");
    let enabled = "+cpu +cpuset +io +memory +pids";
    assert_eq!(read(&t.path().join(SUBTREE_CONTROL)), enabled);
    assert_eq!(
        read(&t.path().join("cortex.slice").join(SUBTREE_CONTROL)),
        enabled
    );
    assert!(
        !dir.join(SUBTREE_CONTROL).exists(),
        "a profile cgroup is a leaf: nothing enabled below it"
    );

    let again = driver.ensure(&name("job"), &l).unwrap();
    assert!(!again.created, "a second ensure finds the cgroup");
}

#[test]
fn unlimited_values_are_written_as_max() {
    let t = root_tree("cpu memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let l = limits(Overrides {
        cpu: Some(Limit::Max),
        memory_max: Some(Limit::Max),
        ..Overrides::default()
    });
    driver.ensure(&name("free"), &l).unwrap();
    let dir = t.path().join("cortex.slice/free");
    assert_eq!(read(&dir.join(CPU_MAX)), "max 100000");
    assert_eq!(read(&dir.join(MEMORY_MAX)), "max");
    assert_eq!(read(&dir.join(MEMORY_HIGH)), "max");
    assert!(
        !dir.join(CPUSET_CPUS).exists(),
        "no cpuset controller, no cpuset file"
    );
}

#[test]
fn controllers_already_on_are_not_written_again() {
    let t = root_tree("cpu memory pids\n");
    fs::write(t.path().join(SUBTREE_CONTROL), "cpu memory pids\n").unwrap();
    let driver = FsDriver::new(t.path(), t.path(), 0);
    driver
        .ensure(&name("job"), &limits(Overrides::default()))
        .unwrap();
    assert_eq!(read(&t.path().join(SUBTREE_CONTROL)), "cpu memory pids\n");
}

#[test]
fn a_missing_controller_is_a_shortfall_not_a_silent_drop() {
    let t = root_tree("cpu pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let l = limits(Overrides {
        cpus: Some(parse_cpus("1").unwrap()),
        ..Overrides::default()
    });
    let done = driver.ensure(&name("job"), &l).unwrap();
    let what: Vec<&str> = done.shortfalls.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(what, ["memory.max and memory.high", "cpuset.cpus"]);
    assert!(
        done.shortfalls[1]
            .to_string()
            .contains("cpuset controller is not available"),
        "{}",
        done.shortfalls[1]
    );
}

#[test]
fn a_refused_limit_names_the_file_and_the_value() {
    let t = root_tree("cpu memory pids\n");
    // A directory where memory.high should be makes the write fail, as a
    // kernel refusal would.
    let dir = t.path().join("cortex.slice/job");
    fs::create_dir_all(dir.join(MEMORY_HIGH)).unwrap();
    let err = write_limits(&dir, &limits(Overrides::default()), &["cpu", "memory"]).unwrap_err();
    let CgroupError::Write { path, value, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &dir.join(MEMORY_HIGH));
    assert_eq!(value, &(28u64 << 30).to_string());
    assert!(
        err.to_string()
            .starts_with("cannot write '30064771072' to "),
        "{err}"
    );
}

#[test]
fn a_refused_controller_write_leaves_no_profile_cgroup() {
    let t = root_tree("cpu memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    // A directory where the slice's subtree_control should be: the kernel
    // file can be neither read nor written.
    fs::create_dir_all(t.path().join("cortex.slice").join(SUBTREE_CONTROL)).unwrap();
    let err = driver
        .ensure(&name("job"), &limits(Overrides::default()))
        .unwrap_err();
    assert!(
        matches!(err, CgroupError::Read { ref path, .. } if path.ends_with("cortex.slice/cgroup.subtree_control")),
        "{err:?}"
    );
    assert!(!t.path().join("cortex.slice/job").exists());
}

#[test]
fn attach_writes_the_pid_to_cgroup_procs() {
    let (_t, driver, dir) = a_job();
    driver.attach(&name("job"), 4242).unwrap();
    assert_eq!(read(&dir.join(PROCS)), "4242");
}

#[test]
fn live_reads_the_kernel_formats() {
    let t = root_tree("cpu memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let dir = t.path().join("cortex.slice/job");
    fs::create_dir_all(&dir).unwrap();
    let files = [
        (PROCS, "812\n813\n"),
        (CPU_MAX, "50000 100000\n"),
        (CPU_WEIGHT, "400\n"),
        (CPUSET_CPUS, "0-3,8\n"),
        (MEMORY_CURRENT, "1052672\n"),
        (MEMORY_MAX, "67108864\n"),
        (MEMORY_HIGH, "max\n"),
        (
            CPU_STAT,
            "usage_usec 2000000\nuser_usec 1990000\nsystem_usec 10000\nnr_periods 40\nnr_throttled 38\nthrottled_usec 1900000\n",
        ),
        (MEMORY_EVENTS, "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"),
    ];
    for (file, text) in files {
        fs::write(dir.join(file), text).unwrap();
    }
    let live = driver.live(&name("job"), Detail::Full).unwrap();
    assert!(live.exists);
    assert_eq!(live.pids, [812, 813]);
    assert_eq!(live.cpu_max, Some((Limit::Value(50_000), 100_000)));
    assert_eq!(live.cpu_weight, Some(400));
    assert_eq!(live.cpuset_cpus, Some(parse_cpus("0-3,8").unwrap()));
    assert_eq!(live.memory_current, Some(1_052_672));
    assert_eq!(
        live.memory_max,
        Some(Limit::Value(crate::units::Bytes(64 << 20)))
    );
    assert_eq!(live.memory_high, Some(Limit::Max));
    assert_eq!(live.cpu_stat.unwrap().nr_throttled, 38);
    assert_eq!(live.memory_events.unwrap().oom_kill, 1);

    let absent = driver.live(&name("other"), Detail::Full).unwrap();
    assert!(!absent.exists);
    assert_eq!(absent.path, t.path().join("cortex.slice/other"));
}

#[test]
fn drift_names_the_files_that_differ() {
    let t = root_tree("cpu cpuset memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let l = limits(Overrides {
        cpus: Some(parse_cpus("0-1").unwrap()),
        ..Overrides::default()
    });
    driver.ensure(&name("job"), &l).unwrap();
    assert_eq!(
        driver.live(&name("job"), Detail::Full).unwrap().drift(&l),
        Vec::<&str>::new()
    );

    let dir = t.path().join("cortex.slice/job");
    fs::write(dir.join(CPU_WEIGHT), "100\n").unwrap();
    fs::remove_file(dir.join(CPUSET_CPUS)).unwrap();
    assert_eq!(
        driver.live(&name("job"), Detail::Full).unwrap().drift(&l),
        [CPU_WEIGHT, CPUSET_CPUS]
    );
}

#[test]
fn a_summary_reads_what_a_table_line_needs_and_no_more() {
    let t = root_tree("cpu cpuset memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let l = limits(Overrides {
        cpus: Some(parse_cpus("0-1").unwrap()),
        ..Overrides::default()
    });
    driver.ensure(&name("job"), &l).unwrap();
    let dir = t.path().join("cortex.slice/job");
    let files = [
        (PROCS, "812\n"),
        (MEMORY_CURRENT, "4096\n"),
        (MEMORY_PEAK, "8192\n"),
        (MEMORY_SWAP_CURRENT, "0\n"),
        (
            CPU_PRESSURE,
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=100\n",
        ),
    ];
    for (file, text) in files {
        fs::write(dir.join(file), text).unwrap();
    }

    let summary = driver.live(&name("job"), Detail::Summary).unwrap();
    assert_eq!(summary.pids, [812]);
    assert_eq!(summary.memory_current, Some(4096));
    assert_eq!(summary.drift(&l), Vec::<&str>::new());
    assert_eq!(summary.memory_peak, None);
    assert_eq!(summary.swap_current, None);
    assert_eq!(summary.cpu_pressure, None);

    let full = driver.live(&name("job"), Detail::Full).unwrap();
    assert_eq!(full.memory_peak, Some(8192));
    assert_eq!(full.swap_current, Some(0));
    assert!(full.cpu_pressure.is_some());
    assert_eq!(
        Live {
            memory_peak: None,
            swap_current: None,
            cpu_pressure: None,
            ..full
        },
        summary
    );
}

#[test]
fn a_process_list_longer_than_a_page_is_read_whole() {
    let (_t, driver, dir) = a_job();
    let pids: Vec<u32> = (100_000..103_000).collect();
    let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
    assert!(text.len() > 4 * 4096);
    fs::write(dir.join(PROCS), text).unwrap();

    let live = driver.live(&name("job"), Detail::Summary).unwrap();
    assert_eq!(live.pids, pids);
}

#[test]
fn a_file_that_is_not_text_is_a_read_error_naming_it() {
    let (_t, driver, dir) = a_job();
    let file = dir.join(MEMORY_CURRENT);
    fs::write(&file, b"\xff\xfe\n").unwrap();

    let err = driver.live(&name("job"), Detail::Summary).unwrap_err();
    let CgroupError::Read { path, source } = &err else {
        panic!("not a read error: {err:?}");
    };
    assert_eq!(path, &file);
    assert_eq!(source.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn remove_refuses_while_processes_are_inside() {
    let (_t, driver, dir) = a_job();
    fs::write(dir.join(PROCS), "4242\n").unwrap();

    let err = driver.remove(&name("job"), false).unwrap_err();
    let CgroupError::Busy { pids, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(pids, &[4242]);
    assert!(err.to_string().contains("use --force"), "{err}");
    assert!(dir.exists());

    fs::write(dir.join(PROCS), "").unwrap();
    let removed = driver.remove(&name("job"), false).unwrap();
    assert_eq!(
        removed,
        Removed {
            existed: true,
            killed: vec![]
        }
    );
    assert!(!dir.exists());
    assert!(!driver.remove(&name("job"), false).unwrap().existed);
}

#[test]
fn a_host_without_cgroup2_is_unavailable_for_every_operation() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("unified")).unwrap();
    fs::write(t.path().join("unified").join(CONTROLLERS), "").unwrap();
    let driver = FsDriver::new(t.path(), t.path(), 0);
    assert!(matches!(driver.base(), Err(Unavailable::Hybrid { .. })));
    assert_eq!(driver.path(&name("job")), None);
    let err = driver
        .ensure(&name("job"), &limits(Overrides::default()))
        .unwrap_err();
    assert!(err.to_string().contains("hybrid cgroup host"), "{err}");
    assert_eq!(err.kind(), crate::error::ErrorKind::Unsupported);
    assert!(!t.path().join("cortex.slice").exists());
}

#[test]
fn a_delegated_subtree_reports_what_it_lacks() {
    let t = root_tree("cpuset cpu io memory pids\n");
    let owner = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(t.path()).unwrap().uid()
    };
    let unit = t.path().join(format!(
        "user.slice/user-{owner}.slice/user@{owner}.service"
    ));
    fs::create_dir_all(&unit).unwrap();
    fs::write(unit.join(CONTROLLERS), "cpu memory pids\n").unwrap();
    fs::write(unit.join(PROCS), "").unwrap();
    let base = Base {
        dir: unit.clone(),
        delegated_to: Some(owner),
        controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
    };
    let driver = FsDriver {
        base: Ok(base),
        uid: owner,
    };
    let l = limits(Overrides {
        cpus: Some(parse_cpus("1").unwrap()),
        ..Overrides::default()
    });
    let done = driver.ensure(&name("job"), &l).unwrap();
    assert_eq!(done.shortfalls.len(), 1);
    let text = done.shortfalls[0].to_string();
    assert!(
        text.starts_with("cpuset.cpus not enforced: the cpuset controller is not delegated"),
        "{text}"
    );
    assert!(
        text.contains("Delegate=cpu cpuset io memory pids"),
        "{text}"
    );
    assert_eq!(
        read(&unit.join("cortex.slice/job").join(CPU_MAX)),
        "400000 100000"
    );
}

#[test]
fn device_filters_are_not_tried_off_cgroupfs() {
    let t = root_tree("cpu memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    let job = name("job");
    driver.ensure(&job, &limits(Overrides::default())).unwrap();

    // A test tree enforces nothing, so a filter is not missed there either.
    let mut policy = Policy::new();
    policy.push(device::Rule::allow(
        device::Devices::ANY,
        device::Access::ALL,
    ));
    assert_eq!(
        driver.filter_devices(&job, Some(&policy)).unwrap(),
        Isolation::None
    );
    assert_eq!(driver.filter_devices(&job, None).unwrap(), Isolation::None);
    assert_eq!(
        driver.live(&job, Detail::Full).unwrap().isolation,
        Isolation::None
    );
    assert!(driver.remove(&job, false).unwrap().existed);
}

#[test]
fn present_lists_the_profile_cgroups_from_one_directory() {
    let t = root_tree("cpu memory pids\n");
    let driver = FsDriver::new(t.path(), t.path(), 0);
    assert_eq!(
        driver.present().unwrap(),
        Some(HashSet::new()),
        "no slice yet: none present"
    );
    let l = limits(Overrides::default());
    driver.ensure(&name("a"), &l).unwrap();
    driver.ensure(&name("b.2"), &l).unwrap();
    let names = driver.present().unwrap().unwrap();
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["a", "b.2"],
        "the slice's own files are not profiles"
    );
    assert!(driver.path(&name("a")).unwrap().is_dir());

    let unavailable = FsDriver::new(&t.path().join("missing"), t.path(), 0);
    assert_eq!(unavailable.present().unwrap(), Some(HashSet::new()));
}
