//! Project tasks, run as `cargo xtask <command>`: the host tests and the
//! real-kernel VM suite that CI runs, and the helper processes the VM tests
//! drive.

mod bench;
mod bench_driver;
mod bench_vm;
mod cpio;
mod helper;
mod host;
mod image;
mod kernel;
mod prereq;
mod qemu;
mod results;
mod stats;
mod vm;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::results::Tally;
use crate::vm::Mode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test                   cargo test --workspace, then the VM suite; the last line
                         printed is \"N passed, N failed, N skipped\" for both, where a
                         real-kernel test ignored on the host counts once, in the VM
  vm-test [--mode MODE]  the VM suite alone; MODE is plain, systemd, hybrid or all
                         (the default)
  vm-helper ROLE [N]     a process for the VM tests: sleep, busy, threads N, hog MIB,
                         forks N
  bench [--runs N]       host benchmark of env, list and status against /bin/true;
                         tables in target/bench/host.md and host.json
  bench --vm [--mode plain|systemd|all] [--runs N]
                         cortex limits run against /bin/true, cgexec and
                         systemd-run --scope, create + delete against cgroup-tools,
                         in the VM (TCG: only ratios carry over); tables in
                         target/bench/vm.md and vm.json
  vm-bench MODE RUNS     the benchmark driver inside the VM

The VM suite needs qemu-system-x86, busybox-static, zstd and mmdebstrap, and
installs them when run as root on Debian. Downloads and images are cached
under target/vm/, the last run's logs in target/vm/logs/<mode>/.
XTASK_VM_TIMEOUT=SECONDS sets how long a VM may run before it counts as hung.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one command; `Ok(false)` means tests failed.
fn run(args: &[String]) -> Result<bool> {
    let repo = repo_root();
    match args.first().map(String::as_str) {
        Some("test") => {
            let mut tally = host::test(&repo)?;
            tally.absorb(vm_suite(&repo, &Mode::ALL));
            tally.settle();
            Ok(close(&tally))
        }
        Some("vm-test") => {
            let modes = match &args[1..] {
                [] => Mode::ALL.to_vec(),
                [flag, mode] if flag == "--mode" => Mode::parse(mode)?,
                [flag] if flag.starts_with("--mode=") => Mode::parse(&flag["--mode=".len()..])?,
                _ => bail!("bad arguments to vm-test\n\n{USAGE}"),
            };
            let mut tally = vm_suite(&repo, &modes);
            tally.settle();
            Ok(close(&tally))
        }
        Some("vm-helper") => helper::run(&args[1..]).map(|()| true),
        Some("bench") if args[1..].iter().any(|a| a == "--vm") => {
            bench_vm::main(&repo, &args[1..]).map(|()| true)
        }
        Some("bench") => bench::run(&repo, &args[1..]).map(|()| true),
        Some("vm-bench") => bench_driver::run(&args[1..]).map(|()| true),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(true)
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// The VM suite; a setup failure (no kernel, no image) counts as one failed
/// test so the closing line still adds up.
fn vm_suite(repo: &Path, modes: &[Mode]) -> Tally {
    vm::suite(repo, modes).unwrap_or_else(|err| {
        eprintln!("xtask: error: VM suite: {err:#}");
        let mut tally = Tally::default();
        tally.fail(format!("vm: setup failed: {err}"));
        tally
    })
}

/// Lists the failures, then prints the closing line last of all.
fn close(tally: &Tally) -> bool {
    if !tally.failures.is_empty() {
        println!("\nfailures:");
        for failure in &tally.failures {
            println!("  {failure}");
        }
    }
    println!("{tally}");
    tally.failed == 0
}

/// The workspace root: the directory above this crate's manifest.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
