//! Cargo on the host: the host test run, and building what the VM runs.

use std::env;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::image::Payload;
use crate::results::{self, Tally};

/// The test target that holds the real-kernel tests.
const KERNEL_TESTS: &str = "kernel";
/// The binary the tests drive.
const BINARY: &str = "cortex";

fn cargo(repo: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo);
    cmd
}

/// Runs `cargo test --workspace` with its output shown as it comes, and
/// counts what the test harness reports.
pub fn test(repo: &Path) -> Result<Tally> {
    let mut child = cargo(repo)
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;

    let mut tally = Tally::default();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some((name, outcome)) = results::test_line(&line) {
            // Counted here rather than from the summary lines, so that each
            // failure is named in the closing report.
            tally.record(&format!("host: {name}"), name, outcome);
        }
    }
    let status = child.wait()?;
    if !status.success() && tally.failed == 0 {
        tally.fail(format!(
            "host: cargo test --workspace failed ({status}) before any test failed"
        ));
    }
    Ok(tally)
}

/// Builds the binary and the test executables (the same debug build the
/// host run uses, so nothing is compiled twice) and returns what the VM
/// needs.
pub fn build_payload(repo: &Path) -> Result<Payload> {
    let mut child = cargo(repo)
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test --no-run")?;

    let (mut cortex, mut kernel_tests) = (None, None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let is = |kind: &str| kinds.iter().any(|k| k == kind);
        // A bin target comes twice: the program, and its unit tests.
        let harness = msg["profile"]["test"] == true;
        match msg["target"]["name"].as_str() {
            Some(BINARY) if is("bin") && !harness => cortex = Some(PathBuf::from(exe)),
            Some(KERNEL_TESTS) if is("test") => kernel_tests = Some(PathBuf::from(exe)),
            _ => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo test --no-run failed: {status}");
    }

    Ok(Payload {
        cortex: cortex.context("cargo built no cortex binary")?,
        kernel_tests: Some(kernel_tests.context("cargo built no tests/kernel.rs executable")?),
        helper: env::current_exe().context("finding the xtask executable")?,
        script: repo.join("tests/vm/run-tests.sh"),
        foreign: None,
    })
}
