//! `xtask vm-helper ROLE`: processes for the VM tests to put under limits.
//!
//! Every role prints `ready` once it is set up, and exits when its standard
//! input closes, so a test that drops the process handle leaves nothing
//! behind.
//!
//! - `sleep`: does nothing.
//! - `busy`: spins on one CPU.
//! - `threads N`: N extra threads, all asleep.
//! - `hog MIB`: after reading one line from standard input, allocates and
//!   touches MIB mebibytes, one at a time, then prints `done`.
//! - `forks N`: after reading one line from standard input, forks N
//!   children that sleep until it exits, then prints `done`; so that a
//!   test can move it into a cgroup first and have the children born
//!   there.

use std::io::{self, BufRead, Write};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// Runs the role named by `args[0]`.
pub fn run(args: &[String]) -> Result<()> {
    let role = args.first().map(String::as_str).unwrap_or("");
    let number = || -> Result<usize> {
        let text = args
            .get(1)
            .with_context(|| format!("vm-helper {role} needs a number"))?;
        text.parse()
            .with_context(|| format!("vm-helper {role}: bad number {text:?}"))
    };
    match role {
        "sleep" => {
            say("ready")?;
            wait_for_eof();
        }
        "busy" => {
            exit_on_eof();
            say("ready")?;
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "threads" => {
            for _ in 0..number()? {
                thread::spawn(|| loop {
                    thread::sleep(Duration::from_secs(3600));
                });
            }
            say("ready")?;
            wait_for_eof();
        }
        "hog" => {
            let mib = number()?;
            say("ready")?;
            let mut go = String::new();
            io::stdin().lock().read_line(&mut go)?;
            let mut held: Vec<Vec<u8>> = Vec::with_capacity(mib);
            for _ in 0..mib {
                let mut chunk = vec![0u8; MIB];
                // Touch every page so the memory is really charged.
                for i in (0..MIB).step_by(PAGE) {
                    chunk[i] = 1;
                }
                held.push(std::hint::black_box(chunk));
            }
            say("done")?;
            wait_for_eof();
        }
        "forks" => {
            let children = number()?;
            say("ready")?;
            let mut go = String::new();
            io::stdin().lock().read_line(&mut go)?;
            for _ in 0..children {
                fork_sleeper()?;
            }
            say("done")?;
            wait_for_eof();
        }
        other => bail!(
            "unknown vm-helper role {other:?}: use sleep, busy, threads N, hog MIB or forks N"
        ),
    }
    Ok(())
}

/// Forks a child that sleeps until this process exits.
fn fork_sleeper() -> Result<()> {
    // SAFETY: this process has one thread when it forks (no role that
    // forks starts any), so the child may run any code; it runs only
    // async-signal-safe calls.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()).context("fork"),
        0 => unsafe {
            // The parent's exit kills the child; if it exited before the
            // request took effect, end now.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() == 1 {
                libc::_exit(0);
            }
            loop {
                libc::pause();
            }
        },
        _ => Ok(()),
    }
}

fn say(word: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{word}")?;
    out.flush()?;
    Ok(())
}

fn wait_for_eof() {
    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
}

fn exit_on_eof() {
    thread::spawn(|| {
        wait_for_eof();
        std::process::exit(0);
    });
}
