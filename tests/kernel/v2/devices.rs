//! The device filter on the real kernel: a program attached to a cgroup
//! makes opens of hidden GPU nodes fail with EPERM inside it, and nowhere
//! else; an update replaces it and removal leaves nothing behind.
//!
//! The GPU nodes are made with mknod and have no driver behind them, so an
//! open the filter lets through fails later, with ENXIO or ENODEV: that is
//! how a test tells "allowed" from "denied" without a GPU. The binary finds
//! the GPUs in a fixture tree (`--accel-root`) describing four NVIDIA GPUs.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cortex_limits::cgroup::device::{self, bpf, gpu, Access, Devices, Policy, Rule};

use crate::support::{
    profile_cgroup, require_vm, unique, wait_until, Cortex, Helper, CGROUP_ROOT, USER,
};

const NVIDIA: u32 = 195;
const NVIDIACTL: u32 = 255;

/// What one open came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// It opened.
    Ok,
    /// The device filter refused it.
    Denied,
    /// It got past the filter and found no driver.
    NoDriver,
    /// Anything else: the errno.
    Other(i32),
}

impl Opened {
    fn of(errno: i32) -> Opened {
        match errno {
            0 => Opened::Ok,
            libc::EPERM => Opened::Denied,
            libc::ENXIO | libc::ENODEV => Opened::NoDriver,
            other => Opened::Other(other),
        }
    }
}

/// A path to open and how, or a pty pair.
#[derive(Debug, Clone, Copy)]
enum Probe {
    Open(&'static str, libc::c_int),
    Pty,
}

/// The GPU nodes and /dev/nvidiactl, made once per test run.
fn make_nvidia_nodes() {
    for (path, minor) in [
        ("/dev/nvidia0", 0),
        ("/dev/nvidia1", 1),
        ("/dev/nvidia2", 2),
        ("/dev/nvidia3", 3),
        ("/dev/nvidiactl", NVIDIACTL),
    ] {
        let c = CString::new(path).unwrap();
        // SAFETY: mknod reads the path and nothing else.
        let rc = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(NVIDIA, minor),
            )
        };
        let err = std::io::Error::last_os_error();
        assert!(
            rc == 0 || err.raw_os_error() == Some(libc::EEXIST),
            "mknod {path}: {err}"
        );
    }
}

/// Mounts devpts when the VM's init did not, so a pty can be opened.
fn mount_devpts() {
    if Path::new("/dev/pts/ptmx").exists() {
        return;
    }
    fs::create_dir_all("/dev/pts").expect("mkdir /dev/pts");
    let (src, target, fstype) = (c"devpts", c"/dev/pts", c"devpts");
    // SAFETY: all arguments are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            c"ptmxmode=0666".as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount devpts: {}", std::io::Error::last_os_error());
}

/// A cgroup of the test's own, removed when dropped.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new() -> TestCgroup {
        require_vm();
        let path = Path::new(CGROUP_ROOT).join(unique("cortex-kt-devices"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup(path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Forks a child that moves itself into `cgroup` (when given), tries each
/// probe and reports the errno of each (0 for success) through a pipe.
/// The child makes only system calls, as a forked child of a threaded
/// process must.
fn probe(cgroup: Option<&Path>, probes: &[Probe]) -> Vec<Opened> {
    let procs =
        cgroup.map(|c| CString::new(c.join("cgroup.procs").as_os_str().as_bytes()).unwrap());
    let paths: Vec<Option<CString>> = probes
        .iter()
        .map(|p| match p {
            Probe::Open(path, _) => Some(CString::new(*path).unwrap()),
            Probe::Pty => None,
        })
        .collect();
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read_end, write_end) = (fds[0], fds[1]);

    // SAFETY: the child runs only async-signal-safe system calls on memory
    // prepared before the fork, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe { child(procs.as_deref(), probes, &paths, write_end) }
    }

    // SAFETY: plain descriptor and wait calls on our own descriptors and child.
    unsafe { libc::close(write_end) };
    let mut bytes = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = unsafe { libc::read(read_end, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n as usize]);
    }
    unsafe { libc::close(read_end) };
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };

    let codes: Vec<i32> = bytes
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    if let Some(&first) = codes.first() {
        assert!(
            first >= 0,
            "the child could not join {cgroup:?}: errno {}",
            -first
        );
    }
    assert_eq!(
        codes.len(),
        probes.len() + 1,
        "the child reported {codes:?}"
    );
    codes[1..].iter().map(|&e| Opened::of(e)).collect()
}

/// The forked child: reports a join result (0 or -errno), then one errno
/// per probe.
unsafe fn child(
    procs: Option<&std::ffi::CStr>,
    probes: &[Probe],
    paths: &[Option<CString>],
    out: libc::c_int,
) -> ! {
    let report = |code: i32| {
        let bytes = code.to_ne_bytes();
        libc::write(out, bytes.as_ptr().cast(), 4);
    };
    let errno = || *libc::__errno_location();
    if let Some(procs) = procs {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            report(-errno());
            libc::_exit(1);
        }
        libc::close(fd);
    }
    report(0);
    for (probe, path) in probes.iter().zip(paths) {
        let code = match (probe, path) {
            (Probe::Open(_, flags), Some(path)) => {
                let fd = libc::open(path.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY);
                if fd < 0 {
                    errno()
                } else {
                    libc::close(fd);
                    0
                }
            }
            _ => open_pty(),
        };
        report(code);
    }
    libc::_exit(0)
}

/// Opens /dev/ptmx and its peer by path; the first errno, or 0.
unsafe fn open_pty() -> i32 {
    let errno = || *libc::__errno_location();
    let master = libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
    if master < 0 {
        return errno();
    }
    let mut unlock: libc::c_int = 0;
    let mut number: libc::c_uint = 0;
    if libc::ioctl(master, libc::TIOCSPTLCK, &mut unlock) != 0
        || libc::ioctl(master, libc::TIOCGPTN, &mut number) != 0
    {
        return errno();
    }
    // "/dev/pts/" and the number, built without allocating.
    let mut path = [0u8; 32];
    let prefix = b"/dev/pts/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut n = number;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        path[prefix.len() + i] = digits[len - 1 - i];
    }
    let peer = libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_NOCTTY);
    let code = if peer < 0 { errno() } else { 0 };
    if peer >= 0 {
        libc::close(peer);
    }
    libc::close(master);
    code
}

const RW: libc::c_int = libc::O_RDWR;

/// The policy of a profile holding `held` of four NVIDIA GPUs.
fn holding(held: &[u32]) -> Policy {
    let mut allow: Vec<Devices> = held.iter().map(|&i| Devices::char(NVIDIA, i)).collect();
    let mut deny: Vec<Devices> = (0..4)
        .filter(|i| !held.contains(i))
        .map(|i| Devices::char(NVIDIA, i))
        .collect();
    let ctl = Devices::char(NVIDIA, NVIDIACTL);
    if held.is_empty() {
        deny.push(ctl);
    } else {
        allow.push(ctl);
    }
    gpu::hiding(allow, deny)
}

const GPUS: [Probe; 5] = [
    Probe::Open("/dev/nvidia0", RW),
    Probe::Open("/dev/nvidia1", RW),
    Probe::Open("/dev/nvidia2", RW),
    Probe::Open("/dev/nvidia3", RW),
    Probe::Open("/dev/nvidiactl", RW),
];

fn expect(what: &str, got: &[Opened], want: &[Opened]) {
    assert_eq!(got, want, "{what}: nvidia0..3, nvidiactl");
}

/// Waits until the kernel has freed a program (freeing is deferred).
fn wait_freed(id: u32, what: &str) {
    let freed = wait_until(Duration::from_secs(10), || {
        (!bpf::exists(id).expect("looking a program up by id")).then_some(())
    });
    assert!(
        freed.is_some(),
        "program {id} still loaded 10s after {what}"
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn the_filter_hides_unreserved_gpus_inside_the_cgroup_only() {
    let cgroup = TestCgroup::new();
    make_nvidia_nodes();
    mount_devpts();
    use Opened::{Denied, NoDriver, Ok};

    let first = device::install(&cgroup.0, &holding(&[1, 2])).expect("install");
    assert!(first.replaced.is_empty(), "{first:?}");
    assert_eq!(device::installed(&cgroup.0).unwrap(), vec![first.id]);

    let inside = probe(Some(&cgroup.0), &GPUS);
    expect(
        "inside, holding 1 and 2",
        &inside,
        &[Denied, NoDriver, NoDriver, Denied, NoDriver],
    );
    let others = probe(
        Some(&cgroup.0),
        &[
            Probe::Open("/dev/null", RW),
            Probe::Open("/dev/zero", libc::O_RDONLY),
            Probe::Open("/dev/urandom", libc::O_RDONLY),
            Probe::Pty,
        ],
    );
    assert_eq!(others, [Ok, Ok, Ok, Ok], "null, zero, urandom, pty inside");
    let outside = probe(None, &GPUS);
    expect("outside", &outside, &[NoDriver; 5]);

    // An update swaps the program: one attached, the old one freed.
    let second = device::install(&cgroup.0, &holding(&[0])).expect("reinstall");
    assert_eq!(second.replaced, vec![first.id]);
    assert_ne!(second.id, first.id);
    assert_eq!(device::installed(&cgroup.0).unwrap(), vec![second.id]);
    wait_freed(first.id, "the update");
    expect(
        "inside, holding 0",
        &probe(Some(&cgroup.0), &GPUS),
        &[NoDriver, Denied, Denied, Denied, NoDriver],
    );

    // Holding nothing hides the control node too.
    let third = device::install(&cgroup.0, &holding(&[])).expect("reinstall");
    expect(
        "inside, holding none",
        &probe(Some(&cgroup.0), &GPUS),
        &[Denied; 5],
    );

    assert_eq!(device::uninstall(&cgroup.0).unwrap(), vec![third.id]);
    assert!(device::installed(&cgroup.0).unwrap().is_empty());
    wait_freed(third.id, "uninstall");
    expect(
        "inside, after uninstall",
        &probe(Some(&cgroup.0), &GPUS),
        &[NoDriver; 5],
    );
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn removing_the_cgroup_frees_its_program() {
    let cgroup = TestCgroup::new();
    let installed = device::install(&cgroup.0, &holding(&[1])).expect("install");
    assert!(bpf::exists(installed.id).unwrap());
    fs::remove_dir(&cgroup.0).expect("rmdir of the test cgroup");
    wait_freed(installed.id, "rmdir");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn a_read_only_rule_refuses_read_write_opens() {
    let cgroup = TestCgroup::new();
    let null = Devices::char(1, 3);
    let mut policy = Policy::new();
    policy
        .push(Rule::allow(null, Access::READ))
        .push(Rule::deny(null, Access::ALL))
        .push(Rule::allow(Devices::char(1, 5), Access::READ_WRITE));
    device::install(&cgroup.0, &policy).expect("install");
    use Opened::{Denied, Ok};
    let got = probe(
        Some(&cgroup.0),
        &[
            Probe::Open("/dev/null", libc::O_RDONLY),
            Probe::Open("/dev/null", libc::O_WRONLY),
            Probe::Open("/dev/null", libc::O_RDWR),
            Probe::Open("/dev/zero", libc::O_RDWR),
            Probe::Open("/dev/urandom", libc::O_RDONLY),
        ],
    );
    assert_eq!(
        got,
        [Ok, Denied, Denied, Ok, Denied],
        "null r, null w, null rw, zero rw, urandom r (default deny)"
    );
}

/// An accelerator root describing four NVIDIA GPUs, minors 0..3, in the
/// shapes of sysfs and the driver's procfs files.
fn four_nvidia_gpus() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("cortex-kt-accel-")
        .tempdir()
        .expect("a temp dir");
    for n in 0..4 {
        let bus = format!("0000:1{n}:00.0");
        let pci = root.path().join("sys/bus/pci/devices").join(&bus);
        let info = root.path().join("proc/driver/nvidia/gpus").join(&bus);
        fs::create_dir_all(&pci).unwrap();
        fs::create_dir_all(&info).unwrap();
        for (file, text) in [
            ("class", "0x030200\n"),
            ("vendor", "0x10de\n"),
            ("device", "0x2330\n"),
            ("numa_node", "0\n"),
            ("local_cpulist", "0\n"),
        ] {
            fs::write(pci.join(file), text).unwrap();
        }
        fs::write(
            info.join("information"),
            format!(
                "Model: \t\t NVIDIA H100 80GB HBM3\n\
                 GPU UUID: \t GPU-00000000-0000-0000-0000-00000000000{n}\n\
                 Bus Location: \t {bus}\n\
                 Device Minor: \t {n}\n"
            ),
        )
        .unwrap();
    }
    // The unprivileged user reads it too.
    let mut dirs = vec![root.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    root
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn a_profile_holding_gpus_1_and_2_opens_only_those() {
    let cortex = Cortex::root();
    make_nvidia_nodes();
    mount_devpts();
    let accel = four_nvidia_gpus();
    let accel = accel.path().to_str().unwrap();
    let name = unique("gpus");
    use Opened::{Denied, NoDriver, Ok};

    cortex
        .run(&["create", &name, "--gpu-ids", "1,2", "--accel-root", accel])
        .expect(0, "create --gpu-ids 1,2");
    let cgroup = profile_cgroup(&name);
    let ids = device::installed(&cgroup).expect("reading the filter back");
    assert_eq!(ids.len(), 1, "one program attached: {ids:?}");
    let id = ids[0];

    expect(
        "inside the profile",
        &probe(Some(&cgroup), &GPUS),
        &[Denied, NoDriver, NoDriver, Denied, NoDriver],
    );
    let others = probe(
        Some(&cgroup),
        &[
            Probe::Open("/dev/null", RW),
            Probe::Open("/dev/zero", libc::O_RDONLY),
            Probe::Open("/dev/urandom", libc::O_RDONLY),
            Probe::Pty,
        ],
    );
    assert_eq!(others, [Ok, Ok, Ok, Ok], "null, zero, urandom, pty inside");
    expect("outside", &probe(None, &GPUS), &[NoDriver; 5]);

    let status = cortex
        .run(&["status", &name, "--accel-root", accel])
        .expect(0, "status");
    let line = format!("isolation  kernel (program id {id})");
    assert!(
        status.stdout.contains(&line),
        "no '{line}' in:\n{}",
        status.stdout
    );
    let json = cortex
        .run(&["status", &name, "--json", "--accel-root", accel])
        .expect(0, "status --json");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
    assert_eq!(value["isolation"]["mode"], "kernel", "{}", json.stdout);
    assert_eq!(value["isolation"]["program_id"], id, "{}", json.stdout);

    // update moves the profile to GPUs 0 and 3: the filter follows, and
    // the old program is replaced, not stacked.
    cortex
        .run(&["update", &name, "--gpu-ids", "0,3", "--accel-root", accel])
        .expect(0, "update --gpu-ids 0,3");
    let updated = device::installed(&cgroup).expect("reading the filter back");
    assert_eq!(updated.len(), 1, "one program after update: {updated:?}");
    assert_ne!(updated[0], id, "update loaded a fresh program");
    wait_freed(id, "update replaced it");
    expect(
        "inside the profile after update",
        &probe(Some(&cgroup), &GPUS),
        &[NoDriver, Denied, Denied, NoDriver, NoDriver],
    );
    let id = updated[0];

    // apply puts the filter on again: it replaces the old one, no stacking.
    let target = Helper::start(&["sleep"]);
    cortex
        .run(&[
            "apply",
            &name,
            "--pid",
            &target.pid_arg(),
            "--accel-root",
            accel,
        ])
        .expect(0, "apply");
    let after = device::installed(&cgroup).expect("reading the filter back");
    assert_eq!(
        after.len(),
        1,
        "one program attached after apply: {after:?}"
    );
    assert_ne!(after[0], id, "apply loaded a fresh program");
    wait_freed(id, "apply replaced it");
    let id = after[0];

    // run joins the cgroup, puts the filter on again, and tells the command
    // which GPUs it holds; the others stay closed to it.
    let db = cortex.db();
    let script = "echo CUDA=$CUDA_VISIBLE_DEVICES; cat /dev/nvidia1; cat /dev/nvidia0; true";
    let out = cortex
        .run(&[
            "--db",
            db.to_str().unwrap(),
            "--accel-root",
            accel,
            "run",
            &name,
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .expect(0, "run");
    assert!(
        out.stdout.contains(
            "CUDA=GPU-00000000-0000-0000-0000-000000000000,GPU-00000000-0000-0000-0000-000000000003\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("/dev/nvidia1': Operation not permitted"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr
            .contains("/dev/nvidia0': Operation not permitted"),
        "{}",
        out.stderr
    );
    let after = device::installed(&cgroup).expect("reading the filter back");
    assert_eq!(after.len(), 1, "one program attached after run: {after:?}");
    assert_ne!(after[0], id, "run loaded a fresh program");
    wait_freed(id, "run replaced it");

    cortex
        .run(&["delete", &name, "--force", "--accel-root", accel])
        .expect(0, "delete --force");
    drop(target);
    assert!(!cgroup.exists(), "{} outlived delete", cgroup.display());
    wait_freed(after[0], "delete");
}

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn without_root_gpus_are_hidden_by_the_environment_only() {
    let cortex = Cortex::user();
    super::user::delegated();
    let accel = four_nvidia_gpus();
    let accel = accel.path().to_str().unwrap();
    let name = unique("usergpu");

    let out = cortex
        .run(&["create", &name, "--gpus", "1", "--accel-root", accel])
        .expect(5, "create --gpus 1 as a user");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("GPU isolation"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{}", out.stderr);
    assert!(
        warnings[0].starts_with("cortex: warning: GPU isolation not enforced:")
            && warnings[0].contains(&format!("uid {USER}")),
        "{}",
        warnings[0]
    );
    let status = cortex
        .run(&["status", &name, "--accel-root", accel])
        .expect(0, "status");
    assert!(
        status
            .stdout
            .contains("isolation  environment only (cortex runs as uid"),
        "{}",
        status.stdout
    );
}
