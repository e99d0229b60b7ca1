//! The real-kernel suite: one VM boot per mode, each running the
//! `tests/kernel.rs` tests meant for it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::kernel::{self, Kernel};
use crate::qemu::Boot;
use crate::results::{self, Tally};
use crate::{host, image, prereq};

/// The line prefix the in-VM script marks its progress with.
const MARK: &str = "@@cortex-vm ";

/// How the VM's cgroups are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// busybox as PID 1, cgroup2 alone at /sys/fs/cgroup.
    Plain,
    /// busybox as PID 1, cgroup v1 controllers plus an empty cgroup2.
    Hybrid,
    /// systemd as PID 1 on a Debian root.
    Systemd,
}

impl Mode {
    /// Every mode, fastest first.
    pub const ALL: [Mode; 3] = [Mode::Plain, Mode::Hybrid, Mode::Systemd];

    /// Reads a `--mode` value; `all` gives every mode.
    pub fn parse(text: &str) -> Result<Vec<Mode>> {
        Ok(match text {
            "plain" => vec![Mode::Plain],
            "hybrid" => vec![Mode::Hybrid],
            "systemd" => vec![Mode::Systemd],
            "all" => Mode::ALL.to_vec(),
            other => bail!("unknown mode {other:?}: use plain, systemd, hybrid or all"),
        })
    }

    /// The mode's name on the command line and in paths.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Hybrid => "hybrid",
            Mode::Systemd => "systemd",
        }
    }

    /// A generous bound, so that a hang fails the run instead of stalling
    /// it; `XTASK_VM_TIMEOUT` (seconds) overrides it for every mode.
    fn timeout(self) -> Duration {
        let default = match self {
            Mode::Plain => 180,
            Mode::Hybrid => 90,
            Mode::Systemd => 180,
        };
        let secs = std::env::var("XTASK_VM_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default);
        Duration::from_secs(secs)
    }

    /// The kernel command line of the mode.
    pub fn append(self) -> String {
        let init = match self {
            Mode::Plain | Mode::Hybrid => "/init",
            Mode::Systemd => "/lib/systemd/systemd",
        };
        format!(
            "console=ttyS0 loglevel=4 panic=-1 rdinit={init} cortex.mode={}",
            self.name()
        )
    }
}

/// Runs the suite for `modes`, printing each test's result and a summary
/// per mode, and returns the counts. A mode whose image cannot be made
/// counts as one failure; the other modes still run.
pub fn suite(repo: &Path, modes: &[Mode]) -> Result<Tally> {
    let start = Instant::now();
    let vm_dir = repo.join("target/vm");
    let _lock = lock(&vm_dir)?;
    prereq::ensure(modes.contains(&Mode::Systemd))?;
    let kernel = kernel::ensure(&vm_dir)?;
    let payload = host::build_payload(repo)?;
    println!(
        "vm: kernel {}, payload built after {:.1} s",
        kernel.release,
        start.elapsed().as_secs_f64()
    );

    let mut tally = Tally::default();
    // One busybox image serves two modes: made (or failed) once.
    let mut busybox: Option<Result<PathBuf, String>> = None;
    for &mode in modes {
        let image = match mode {
            Mode::Systemd => image::systemd(&vm_dir, repo, &payload).map_err(|e| format!("{e:#}")),
            Mode::Plain | Mode::Hybrid => busybox
                .get_or_insert_with(|| {
                    image::busybox(&vm_dir, repo, &payload).map_err(|e| format!("{e:#}"))
                })
                .clone(),
        };
        match image {
            Ok(image) => tally.absorb(run_mode(mode, &kernel, &image, &vm_dir)?),
            Err(err) => {
                eprintln!("xtask: error: vm {}: {err}", mode.name());
                tally.fail(format!("vm {}: no image: {err}", mode.name()));
            }
        }
    }
    println!(
        "vm suite: {tally} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(tally)
}

/// Holds `vm_dir/lock` until dropped, so that two runs in one checkout do
/// not build images over each other.
pub fn lock(vm_dir: &Path) -> Result<File> {
    fs::create_dir_all(vm_dir)?;
    let path = vm_dir.join("lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    if file.try_lock().is_err() {
        println!("vm: waiting for another run to release {}", path.display());
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

fn run_mode(mode: Mode, kernel: &Kernel, initrd: &Path, vm_dir: &Path) -> Result<Tally> {
    let name = mode.name();
    let log_dir = vm_dir.join("logs").join(name);
    let boot = Boot {
        kernel: &kernel.image,
        initrd,
        append: mode.append(),
        memory_mib: 1024,
        log_dir: &log_dir,
        timeout: mode.timeout(),
    };
    println!("vm {name}: booting");

    let start = Instant::now();
    let mut tally = Tally::default();
    let mut began: Option<(Duration, String)> = None;
    let mut exit_code: Option<String> = None;
    let mut transcript = Vec::new();
    let ending = boot.run(|line| {
        if let Some(mark) = line.strip_prefix(MARK) {
            if let Some(uptime) = mark.strip_prefix("begin ") {
                began = Some((start.elapsed(), uptime.to_string()));
            } else if let Some(end) = mark.strip_prefix("end ") {
                exit_code = end.split_whitespace().next().map(str::to_string);
            }
            return;
        }
        if let Some((test, outcome)) = results::test_line(line) {
            println!("  {name}: {line}");
            tally.record(&format!("vm {name}: {test}"), test, outcome);
        }
        transcript.push(line.to_string());
    })?;

    let console = ending.console_log.display();
    match (&began, &exit_code) {
        _ if ending.panicked => tally.fail(format!("vm {name}: kernel panic (see {console})")),
        _ if ending.timed_out => {
            let at = results::started_test(&ending.partial_line)
                .map(|t| format!(" while running {t}"))
                .unwrap_or_default();
            tally.fail(format!(
                "vm {name}: timed out after {} s{at} (see {console})",
                mode.timeout().as_secs()
            ));
        }
        (None, _) if !ending.qemu_errors.trim().is_empty() => tally.fail(format!(
            "vm {name}: qemu failed: {}",
            ending.qemu_errors.trim()
        )),
        (None, _) => tally.fail(format!(
            "vm {name}: the tests never started (see {console})"
        )),
        (Some(_), None) => tally.fail(format!(
            "vm {name}: the VM stopped before the tests ended (see {console})"
        )),
        (Some(_), Some(rc)) if rc != "rc=0" && tally.failed == 0 => {
            tally.fail(format!("vm {name}: the test executable ended with {rc}"))
        }
        _ => {}
    }
    if tally.passed + tally.failed == 0 {
        tally.fail(format!("vm {name}: ran no test"));
    }

    if tally.failed > 0 {
        print_failures(&transcript);
    }
    let boot_time = began
        .map(|(host, guest)| format!("tests began after {:.1} s ({guest})", host.as_secs_f64()))
        .unwrap_or_else(|| "tests never began".to_string());
    println!(
        "vm {name}: {tally}; {boot_time}; done in {:.1} s",
        ending.elapsed.as_secs_f64()
    );
    Ok(tally)
}

/// Prints the harness's `failures:` block (each failed test's output).
fn print_failures(transcript: &[String]) {
    let Some(first) = transcript.iter().position(|l| l == "failures:") else {
        for line in transcript.iter().rev().take(40).rev() {
            println!("    | {line}");
        }
        return;
    };
    for line in &transcript[first..] {
        if line.starts_with("test result:") {
            break;
        }
        println!("    | {line}");
    }
}
