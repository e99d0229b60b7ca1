//! `cargo xtask bench --vm`: `cortex limits run` against `/bin/true`,
//! `cgexec` and `systemd-run --scope` on a real cgroup v2 kernel, and
//! create-plus-delete cycles against cgroup-tools, in the VM of the test
//! suite.
//!
//! The busybox image gets Debian's cgroup-tools (unpacked from the
//! archive, cached under `target/vm/cgroup-tools/`), the systemd root has
//! it installed. Each boot runs the driver (`bench_driver`), whose JSON
//! lines come back on the result port; the tables are written to
//! `target/bench/vm.md` and `vm.json`. The VM runs under TCG, so only
//! ratios measured in the same boot carry over to real hardware.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench_driver::LINE;
use crate::image::{self, Foreign, Payload};
use crate::qemu::Boot;
use crate::stats::Summary;
use crate::vm::{self, Mode};
use crate::{bench, kernel, prereq};

/// The cgroup-tools executables the busybox image gets.
const TOOLS: [&str; 4] = ["cgexec", "cgcreate", "cgset", "cgdelete"];
/// What each tool is asked to enforce, as the kernel shows it.
const WANT_CPU_MAX: &str = "50000 100000";
const WANT_MEMORY_MAX: &str = "268435456";

/// `bench --vm [--mode plain|systemd|all] [--runs N]`.
pub fn main(repo: &Path, args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask bench --vm [--mode plain|systemd|all] [--runs N]";
    let mut modes = vec![Mode::Plain, Mode::Systemd];
    let mut runs = 100;
    let mut rest = args.iter().filter(|a| *a != "--vm");
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value\n{usage}"))?;
        match flag.as_str() {
            "--mode" => {
                modes = Mode::parse(value)?;
                modes.retain(|m| *m != Mode::Hybrid);
            }
            "--runs" => {
                runs = value
                    .parse()
                    .with_context(|| format!("--runs {value:?}\n{usage}"))?
            }
            _ => bail!("unknown argument {flag:?}\n{usage}"),
        }
    }
    if modes.is_empty() {
        bail!("the benchmark needs cgroup v2: use --mode plain or systemd");
    }
    run(repo, &modes, runs)
}

/// Runs the VM benchmark for `modes` with `runs` spawns per command.
fn run(repo: &Path, modes: &[Mode], runs: usize) -> Result<()> {
    let start = Instant::now();
    let vm_dir = repo.join("target/vm");
    let _lock = vm::lock(&vm_dir)?;
    let systemd = modes.contains(&Mode::Systemd);
    prereq::ensure(systemd)?;
    let kernel = kernel::ensure(&vm_dir)?;
    let cortex = bench::build(repo)?;
    let payload = Payload {
        cortex,
        kernel_tests: None,
        helper: std::env::current_exe().context("finding the xtask executable")?,
        script: repo.join("tests/vm/run-bench.sh"),
        foreign: Some(cgroup_tools(&vm_dir)?),
    };

    let mut boots = Vec::new();
    for &mode in modes {
        let image = match mode {
            Mode::Systemd => image::systemd(&vm_dir, repo, &payload)?,
            Mode::Plain => image::busybox(&vm_dir, repo, &payload)?,
            Mode::Hybrid => bail!("the benchmark needs cgroup v2: use --mode plain or systemd"),
        };
        let log_dir = vm_dir.join("logs").join(format!("bench-{}", mode.name()));
        let boot = Boot {
            kernel: &kernel.image,
            initrd: &image,
            append: format!("{} cortex.bench_runs={runs}", mode.append()),
            memory_mib: 1024,
            log_dir: &log_dir,
            timeout: Duration::from_secs(900),
        };
        println!("vm bench {}: booting", mode.name());
        let mut lines = Vec::new();
        let mut transcript = Vec::new();
        let ending = boot.run(|line| {
            if let Some(json) = line.strip_prefix(LINE) {
                lines.push(json.to_string());
                println!("  {}: {}", mode.name(), summary_of_line(json));
            } else {
                transcript.push(line.to_string());
            }
        })?;
        let result = parse(mode.name(), &lines);
        match result {
            Ok(boot) if ending.timed_out => bail!(
                "vm bench {}: timed out after {} measurements (see {})",
                mode.name(),
                boot.spawn.len() + boot.cycles.len(),
                ending.console_log.display()
            ),
            Ok(boot) => boots.push(boot),
            Err(err) => {
                for line in transcript.iter().rev().take(30).rev() {
                    println!("    | {line}");
                }
                bail!(
                    "vm bench {}: {err:#} (see {} and {})",
                    mode.name(),
                    log_dir.join("results.log").display(),
                    ending.console_log.display()
                );
            }
        }
    }

    let (markdown, json) = report(&kernel.release, &boots);
    let out = repo.join("target/bench");
    fs::create_dir_all(&out)?;
    fs::write(out.join("vm.md"), &markdown)?;
    fs::write(
        out.join("vm.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    print!("{markdown}");
    println!(
        "\nwritten to {} in {:.0} s",
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Debian's cgroup-tools and libcgroup, downloaded and unpacked once.
fn cgroup_tools(vm_dir: &Path) -> Result<Foreign> {
    let dir = vm_dir.join("cgroup-tools");
    let tree = dir.join("tree");
    let binaries: Vec<PathBuf> = TOOLS.iter().map(|t| tree.join("usr/bin").join(t)).collect();
    if !binaries.iter().all(|b| b.is_file()) {
        let downloads = vm_dir.join("downloads");
        fs::create_dir_all(&downloads)?;
        if tree.exists() {
            fs::remove_dir_all(&tree)?;
        }
        fs::create_dir_all(&tree)?;
        for package in ["cgroup-tools", "libcgroup2"] {
            let deb = kernel::download(&downloads, package)?;
            let status = Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&tree)
                .status()?;
            if !status.success() {
                bail!("dpkg -x {} failed: {status}", deb.display());
            }
        }
        if let Some(missing) = binaries.iter().find(|b| !b.is_file()) {
            bail!("cgroup-tools has no {}", missing.display());
        }
    }
    // Debian moves libraries from /lib to /usr/lib over releases.
    let lib_dir = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
        .map(|d| tree.join(d))
        .into_iter()
        .find(|d| d.join("libcgroup.so.2").exists())
        .with_context(|| {
            format!(
                "libcgroup2 unpacked no libcgroup.so.2 under {}",
                tree.display()
            )
        })?;
    Ok(Foreign { binaries, lib_dir })
}

/// One command's wall times.
#[derive(Debug)]
struct Row {
    tool: String,
    command: String,
    /// How cgroup2 was mounted: `default` or `favordynmods`.
    mount: String,
    summary: Summary,
}

/// What one boot measured.
#[derive(Debug)]
struct Measured {
    mode: String,
    info: Value,
    readback: Vec<(String, Value)>,
    spawn: Vec<Row>,
    cycles: Vec<Row>,
    notes: Vec<String>,
}

impl Measured {
    fn spawn_median(&self, mount: &str, tool: &str) -> Option<f64> {
        self.spawn
            .iter()
            .find(|r| r.mount == mount && r.tool == tool)
            .map(|r| r.summary.median)
    }

    /// The mounts spawns were measured under, in the order measured.
    fn mounts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.spawn {
            if !out.contains(&r.mount.as_str()) {
                out.push(&r.mount);
            }
        }
        out
    }
}

/// A short line for the console while the VM runs.
fn summary_of_line(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    match (&v["kind"], v["wall_ms"].as_array()) {
        (Value::String(kind), Some(ms)) => format!("{kind} {}: {} runs", v["tool"], ms.len()),
        _ => json.to_string(),
    }
}

/// Reads the driver's lines of one boot; it must have reached `done`.
fn parse(mode: &str, lines: &[String]) -> Result<Measured> {
    let mut measured = Measured {
        mode: mode.to_string(),
        info: Value::Null,
        readback: Vec::new(),
        spawn: Vec::new(),
        cycles: Vec::new(),
        notes: Vec::new(),
    };
    let mut done = false;
    for line in lines {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("a bad result line: {line}"))?;
        let tool = || v["tool"].as_str().unwrap_or("?").to_string();
        let row = || -> Result<Row> {
            let ms: Vec<f64> = v["wall_ms"]
                .as_array()
                .context("a series without wall_ms")?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            Ok(Row {
                tool: tool(),
                command: v["command"].as_str().unwrap_or("").to_string(),
                mount: v["mount"].as_str().unwrap_or("default").to_string(),
                summary: Summary::of(&ms)
                    .with_context(|| format!("no measurement of {}", tool()))?,
            })
        };
        match v["kind"].as_str() {
            Some("info") => measured.info = v.clone(),
            Some("readback") => measured.readback.push((tool(), v["kernel"].clone())),
            Some("spawn") => measured.spawn.push(row()?),
            Some("cycle") => measured.cycles.push(row()?),
            Some("note") => measured
                .notes
                .push(v["text"].as_str().unwrap_or("").to_string()),
            Some("done") => done = true,
            _ => bail!("an unknown result line: {line}"),
        }
    }
    if !done {
        bail!(
            "the driver stopped after {} series without finishing",
            measured.spawn.len() + measured.cycles.len()
        );
    }
    Ok(measured)
}

/// Whether a readback shows the limits every tool was asked to write.
fn limits_match(kernel: &Value) -> bool {
    kernel["cpu.max"] == WANT_CPU_MAX && kernel["memory.max"] == WANT_MEMORY_MAX
}

/// The targets, judged from one boot's medians, for each mount measured.
fn targets(m: &Measured) -> Vec<(String, Option<bool>, String)> {
    let mut out = Vec::new();
    for mount in m.mounts() {
        let under = if mount == "default" {
            String::new()
        } else {
            format!(" (cgroup2 with {mount})")
        };
        let floor = m.spawn_median(mount, "/bin/true");
        let run = m.spawn_median(mount, "cortex limits run");
        let cgexec = m.spawn_median(mount, "cgexec");
        if let (Some(floor), Some(run), Some(cgexec)) = (floor, run, cgexec) {
            let (ours, theirs) = (run - floor, cgexec - floor);
            out.push((
                format!("`run` overhead no more than cgexec's{under}"),
                Some(ours <= theirs),
                format!("{ours:.1} ms against {theirs:.1} ms over /bin/true"),
            ));
        }
        if let (Some(run), Some(scope)) = (run, m.spawn_median(mount, "systemd-run --scope")) {
            out.push((
                format!("`run` at least 5x faster than `systemd-run --scope`{under}"),
                Some(scope >= 5.0 * run),
                format!("{:.1}x", scope / run),
            ));
        }
    }
    let all_match = m.readback.iter().all(|(_, k)| limits_match(k));
    out.push((
        "each tool's group holds the same limits".to_string(),
        Some(all_match && !m.readback.is_empty()),
        format!("{} tools read back", m.readback.len()),
    ));
    out
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "met",
        Some(false) => "not met",
        None => "-",
    }
}

fn report(release: &str, boots: &[Measured]) -> (String, Value) {
    let mut md = format!(
        "VM benchmark: kernel {release} under qemu TCG (software emulation) on {}. \
         Absolute times are those of the emulator; only ratios measured in the same boot \
         carry over to real hardware. Wall time per spawn from the in-VM driver, \
         tools taking turns in an order that rotates every round, each spawn after a 50 ms \
         pause (so that none inherits another's recent cgroup move), after 3 warm-up runs \
         each, with address \
         randomisation off in the guest (under TCG it makes every spawn translate its code \
         afresh, a cost real hardware does not have).\n",
        bench::machine()
    );
    let mut boots_json = Vec::new();
    for m in boots {
        md.push_str(&format!("\n### {} boot\n", m.mode));
        let mut spawn_json = Vec::new();
        for mount in m.mounts() {
            let floor = m.spawn_median(mount, "/bin/true").unwrap_or(f64::NAN);
            let cgexec = m.spawn_median(mount, "cgexec").unwrap_or(f64::NAN);
            md.push_str(&format!(
                "\ncgroup2 mounted {}:\n\n\
                 | tool | command | runs | median ms | p10 | p90 | ratio to /bin/true | over /bin/true ms | ratio to cgexec |\n\
                 |---|---|---|---|---|---|---|---|---|\n",
                if mount == "default" {
                    "as booted".to_string()
                } else {
                    format!("with {mount}")
                }
            ));
            for r in m.spawn.iter().filter(|r| r.mount == mount) {
                let s = r.summary;
                md.push_str(&format!(
                    "| {} | `{}` | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} |\n",
                    r.tool,
                    r.command,
                    s.runs,
                    s.median,
                    s.p10,
                    s.p90,
                    s.median / floor,
                    s.median - floor,
                    s.median / cgexec
                ));
                spawn_json.push(json!({
                    "mount": mount, "tool": r.tool, "command": r.command, "runs": s.runs,
                    "median_ms": s.median, "p10_ms": s.p10, "p90_ms": s.p90,
                    "ratio_to_true": s.median / floor, "ratio_to_cgexec": s.median / cgexec,
                }));
            }
        }
        for note in &m.notes {
            md.push_str(&format!("\nNote: {note}\n"));
        }

        md.push_str(
            "\n| create + delete cycle | cycles | median ms | p10 | p90 | cycles/s | ratio to cortex |\n\
             |---|---|---|---|---|---|---|\n",
        );
        let ours = m.cycles.first().map_or(f64::NAN, |r| r.summary.median);
        let mut cycle_json = Vec::new();
        for r in &m.cycles {
            let s = r.summary;
            md.push_str(&format!(
                "| `{}` | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |\n",
                r.command,
                s.runs,
                s.median,
                s.p10,
                s.p90,
                1000.0 / s.median,
                s.median / ours
            ));
            cycle_json.push(json!({
                "tool": r.tool, "command": r.command, "runs": s.runs,
                "median_ms": s.median, "p10_ms": s.p10, "p90_ms": s.p90,
                "cycles_per_s": 1000.0 / s.median,
            }));
        }

        md.push_str(
            "\nLimits read back from the kernel by a process each tool started:\n\n\
             | tool | cgroup | cpu.max | memory.max | as asked |\n|---|---|---|---|---|\n",
        );
        let mut readback_json = Vec::new();
        for (tool, k) in &m.readback {
            let text = |key: &str| k[key].as_str().unwrap_or("?").to_string();
            md.push_str(&format!(
                "| {tool} | `{}` | `{}` | `{}` | {} |\n",
                text("cgroup"),
                text("cpu.max"),
                text("memory.max"),
                if limits_match(k) { "yes" } else { "no" }
            ));
            readback_json.push(json!({ "tool": tool, "kernel": k, "as_asked": limits_match(k) }));
        }

        md.push_str("\n| target | | measured |\n|---|---|---|\n");
        let mut target_json = Vec::new();
        for (what, met, detail) in targets(m) {
            md.push_str(&format!("| {what} | {} | {detail} |\n", yes_no(met)));
            target_json.push(json!({ "target": what, "met": met, "measured": detail }));
        }
        boots_json.push(json!({
            "mode": m.mode, "info": m.info, "spawn": spawn_json, "cycles": cycle_json,
            "readback": readback_json, "targets": target_json, "notes": m.notes,
        }));
    }
    let json = json!({
        "emulation": "qemu TCG: only ratios within a boot carry over",
        "kernel": release,
        "host": bench::machine(),
        "boots": boots_json,
    });
    (md, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(kind: &str, tool: &str, ms: &[f64]) -> String {
        json!({ "kind": kind, "tool": tool, "command": tool, "wall_ms": ms }).to_string()
    }

    fn readback(tool: &str, cpu: &str, mem: &str) -> String {
        json!({ "kind": "readback", "tool": tool,
                "kernel": { "cgroup": "/g", "cpu.max": cpu, "memory.max": mem } })
        .to_string()
    }

    fn boot(scope_ms: f64, cgexec_ms: f64, cpu: &str) -> Vec<String> {
        vec![
            json!({ "kind": "info", "mode": "systemd", "runs": 3 }).to_string(),
            readback("cortex run", WANT_CPU_MAX, WANT_MEMORY_MAX),
            readback("cgexec", cpu, WANT_MEMORY_MAX),
            series("spawn", "/bin/true", &[10.0, 11.0, 12.0]),
            series("spawn", "cortex limits run", &[60.0, 50.0, 70.0]),
            series("spawn", "cgexec", &[cgexec_ms; 3]),
            series("spawn", "systemd-run --scope", &[scope_ms]),
            series("cycle", "cortex limits create + delete", &[100.0, 120.0]),
            json!({ "kind": "done" }).to_string(),
        ]
    }

    #[test]
    fn a_boot_is_read_and_judged() {
        let cases = [
            ("all met", 600.0, 100.0, WANT_CPU_MAX, [true, true, true]),
            (
                "cgexec cheaper",
                600.0,
                40.0,
                WANT_CPU_MAX,
                [false, true, true],
            ),
            (
                "scope under 5x",
                200.0,
                100.0,
                WANT_CPU_MAX,
                [true, false, true],
            ),
            (
                "a limit differs",
                600.0,
                100.0,
                "max 100000",
                [true, true, false],
            ),
        ];
        for (name, scope, cgexec, cpu, want) in cases {
            let m = parse("systemd", &boot(scope, cgexec, cpu)).unwrap();
            assert_eq!(m.spawn.len(), 4, "{name}");
            assert_eq!(
                m.spawn_median("default", "cortex limits run"),
                Some(60.0),
                "{name}"
            );
            assert_eq!(m.cycles[0].summary.median, 110.0, "{name}");
            let got: Vec<bool> = targets(&m).iter().map(|t| t.1.unwrap()).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn each_mount_gets_its_table_and_targets() {
        let mut lines = boot(600.0, 100.0, WANT_CPU_MAX);
        let done = lines.pop().unwrap();
        for (tool, ms) in [
            ("/bin/true", 10.0),
            ("cortex limits run", 20.0),
            ("cgexec", 30.0),
            ("systemd-run --scope", 90.0),
        ] {
            lines.push(
                json!({ "kind": "spawn", "mount": "favordynmods", "tool": tool,
                        "command": tool, "wall_ms": [ms] })
                .to_string(),
            );
        }
        lines.push(json!({ "kind": "note", "text": "a note" }).to_string());
        lines.push(done);
        let m = parse("systemd", &lines).unwrap();
        assert_eq!(m.mounts(), ["default", "favordynmods"]);
        assert_eq!(m.spawn_median("favordynmods", "cgexec"), Some(30.0));
        let got: Vec<(String, bool)> = targets(&m)
            .into_iter()
            .map(|(what, met, _)| (what, met.unwrap()))
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(
            got[3],
            (
                "`run` at least 5x faster than `systemd-run --scope` (cgroup2 with favordynmods)"
                    .to_string(),
                false
            )
        );
        let (md, json) = report("6.1.0-test", &[m]);
        assert!(md.contains("cgroup2 mounted with favordynmods:"), "{md}");
        assert!(md.contains("Note: a note"), "{md}");
        assert_eq!(json["boots"][0]["spawn"][4]["mount"], "favordynmods");
    }

    #[test]
    fn an_unfinished_or_bad_boot_is_an_error() {
        let mut lines = boot(600.0, 100.0, WANT_CPU_MAX);
        lines.pop();
        let cases = [
            ("no done line", lines.clone(), "without finishing"),
            ("not json", vec!["{oops".to_string()], "a bad result line"),
            (
                "unknown kind",
                vec![json!({ "kind": "what" }).to_string()],
                "an unknown result line",
            ),
            (
                "empty series",
                vec![series("spawn", "cgexec", &[])],
                "no measurement of cgexec",
            ),
        ];
        for (name, lines, want) in cases {
            let err = format!("{:#}", parse("plain", &lines).unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn the_report_names_emulation_and_ratios() {
        let m = parse("plain", &boot(600.0, 100.0, WANT_CPU_MAX)).unwrap();
        let (md, json) = report("6.1.0-test", &[m]);
        assert!(md.contains("TCG"), "{md}");
        assert!(
            md.contains("| cortex limits run | `cortex limits run` | 3 | 60.0 |"),
            "{md}"
        );
        assert_eq!(json["boots"][0]["spawn"][1]["ratio_to_true"], 60.0 / 11.0);
        assert_eq!(
            json["boots"][0]["cycles"][0]["cycles_per_s"],
            1000.0 / 110.0
        );
    }
}
