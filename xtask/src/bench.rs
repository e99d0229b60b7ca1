//! `cargo xtask bench`: how fast the read-side commands are on this host,
//! against spawning `/bin/true` in the same run.
//!
//! Each command is spawned many times; the tables give the median and the
//! 10th and 90th percentiles of wall time, the ratio of medians to the
//! `/bin/true` floor, and the largest peak RSS seen (from `wait4`). The
//! stores hold 1, 1,000 and 10,000 profiles, written through the library
//! in one transaction; the cgroup root is a temp tree with each profile's
//! directory and files in the kernel's formats, so `status` reads what it
//! would read on a real host. Results go to `target/bench/host.md` and
//! `host.json`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use cortex_limits::plan::{Overrides, ProfileName};
use cortex_limits::preset::Preset;
use cortex_limits::store::{self, Profile, Store};

use crate::stats::{per_item, Summary};

/// Store sizes measured.
const SIZES: [usize; 3] = [1, 1_000, 10_000];

/// One measured command.
struct Sample {
    label: String,
    profiles: usize,
    wall_ms: Vec<f64>,
    max_rss_kib: i64,
}

impl Sample {
    fn summary(&self) -> Summary {
        Summary::of(&self.wall_ms).expect("every sample has at least one run")
    }

    fn median(&self) -> f64 {
        self.summary().median
    }
}

/// Runs the benchmark and writes its tables.
pub fn run(repo: &Path, args: &[String]) -> Result<()> {
    let runs: usize = match args {
        [] => 200,
        [flag, n] if flag == "--runs" => n.parse().context("--runs takes a number")?,
        _ => bail!("usage: cargo xtask bench [--runs N]"),
    };
    let cortex = build(repo)?;
    let work = tempdir(repo)?;

    let mut samples = Vec::new();
    let floor = measure("/bin/true", 0, Command::new("/bin/true"), runs)?;
    samples.push(floor);

    for &n in &SIZES {
        let dir = work.join(format!("n{n}"));
        let (db, cgroup) = populate(&dir, n)?;
        let cmd = |args: &[&str]| {
            let mut c = Command::new(&cortex);
            c.arg("limits")
                .args(args)
                .env("CORTEX_LIMITS_DB", &db)
                .env("CORTEX_CGROUP_ROOT", &cgroup);
            c
        };
        // Fewer runs where one run reads thousands of rows or files.
        let heavy = if n >= 10_000 { runs.min(40) } else { runs };
        samples.push(measure("env p0", n, cmd(&["env", "p0"]), runs)?);
        samples.push(measure("status p0", n, cmd(&["status", "p0"]), runs)?);
        samples.push(measure("list", n, cmd(&["list"]), heavy)?);
        samples.push(measure("list --json", n, cmd(&["list", "--json"]), heavy)?);
        samples.push(measure("status (all)", n, cmd(&["status"]), heavy)?);
        samples.push(measure(
            "status --json (all)",
            n,
            cmd(&["status", "--json"]),
            heavy,
        )?);
    }

    let (markdown, json) = report(&samples, runs);
    let out = repo.join("target/bench");
    fs::create_dir_all(&out)?;
    fs::write(out.join("host.md"), &markdown)?;
    fs::write(
        out.join("host.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    print!("{markdown}");
    println!("\nwritten to {}", out.display());
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// Builds the release `cortex` binary and returns its path, as cargo
/// reports it.
pub fn build(repo: &Path) -> Result<PathBuf> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(repo)
        .args([
            "build",
            "--release",
            "--bin",
            "cortex",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("building the release binary")?;
    if !out.status.success() {
        bail!("cargo build --release failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no executable for cortex")
}

fn tempdir(repo: &Path) -> Result<PathBuf> {
    let dir = repo
        .join("target/bench/work")
        .join(std::process::id().to_string());
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A store of `n` profiles and a cgroup tree with a directory for each.
fn populate(dir: &Path, n: usize) -> Result<(PathBuf, PathBuf)> {
    let db = dir.join("limits.db");
    let cgroup = dir.join("cgroup");
    let slice = cgroup.join("cortex.slice");
    fs::create_dir_all(&slice)?;
    fs::write(
        cgroup.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )?;

    let mut store = Store::open(&db)?;
    let tx = store.begin()?;
    let presets = Preset::ALL;
    for i in 0..n {
        let preset = presets[i % presets.len()];
        let limits = cortex_limits::plan::Limits::resolve(preset, &Overrides::default())?;
        let profile = Profile {
            name: ProfileName::new(&format!("p{i}"))?,
            preset,
            limits: limits.clone(),
            created_at: store::now(),
            updated_at: store::now(),
        };
        tx.insert(&profile)?;
        write_cgroup(&slice.join(format!("p{i}")), &limits)?;
    }
    tx.commit()?;
    Ok((db, cgroup))
}

/// A profile directory as the kernel would show it after `create`.
fn write_cgroup(dir: &Path, limits: &cortex_limits::plan::Limits) -> Result<()> {
    fs::create_dir_all(dir)?;
    let bytes = |l: cortex_limits::units::Limit<cortex_limits::units::Bytes>| {
        l.value().map_or("max".to_string(), |b| b.0.to_string())
    };
    let quota = limits
        .cpu
        .value()
        .map_or("max".to_string(), |q| q.usec().to_string());
    let files = [
        ("cgroup.procs", String::new()),
        ("cgroup.events", "populated 0\nfrozen 0\n".into()),
        ("cpu.max", format!("{quota} 100000\n")),
        ("cpu.weight", format!("{}\n", limits.cpu_weight.get())),
        ("cpuset.cpus", "\n".into()),
        ("memory.max", format!("{}\n", bytes(limits.memory_max))),
        ("memory.high", format!("{}\n", bytes(limits.memory_high))),
        ("memory.current", "0\n".into()),
        (
            "cpu.stat",
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
                .into(),
        ),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n".into(),
        ),
    ];
    for (name, text) in files {
        fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Spawns `cmd` `runs` times (after five unmeasured warm-up runs).
fn measure(label: &str, profiles: usize, mut cmd: Command, runs: usize) -> Result<Sample> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut sample = Sample {
        label: label.to_string(),
        profiles,
        wall_ms: Vec::with_capacity(runs),
        max_rss_kib: 0,
    };
    for i in 0..runs + 5 {
        let start = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawning {label}"))?;
        let (status, rss) = wait4(child.id())?;
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        if status != 0 {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            bail!("{label} exited with status {status}: {stderr}");
        }
        if i >= 5 {
            sample.wall_ms.push(elapsed);
            sample.max_rss_kib = sample.max_rss_kib.max(rss);
        }
    }
    Ok(sample)
}

/// Reaps a child, returning its wait status and peak RSS in KiB.
fn wait4(pid: u32) -> Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the reaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    if got < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    Ok((status, usage.ru_maxrss))
}

fn report(samples: &[Sample], runs: usize) -> (String, serde_json::Value) {
    let floor = samples[0].median();
    let mut md = format!(
        "Host benchmark: {} ({} CPUs). Wall time per spawn in ms over {runs} runs \
         (40 where one run reads 10,000 profiles), after 5 warm-up runs; ratio = median / \
         median of /bin/true in the same run.\n\n\
         | command | profiles | median ms | p10 | p90 | ratio to /bin/true | peak RSS KiB |\n\
         |---|---|---|---|---|---|---|\n",
        machine(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    for s in samples {
        let sum = s.summary();
        let ratio = sum.median / floor;
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            s.label, s.profiles, sum.median, sum.p10, sum.p90, ratio, s.max_rss_kib
        ));
        rows.push(json!({
            "command": s.label,
            "profiles": s.profiles,
            "runs": sum.runs,
            "median_ms": sum.median,
            "p10_ms": sum.p10,
            "p90_ms": sum.p90,
            "ratio_to_true": ratio,
            "peak_rss_kib": s.max_rss_kib,
        }));
    }

    md.push_str(
        "\nGrowth: cost per stored profile in µs between store sizes, from the medians. \
         Linear growth keeps it flat; a larger figure for the larger step means worse \
         than linear.\n\n\
         | command | µs/profile, 1 → 1,000 | µs/profile, 1,000 → 10,000 | no worse than linear |\n\
         |---|---|---|---|\n",
    );
    let mut growth = Vec::new();
    for (label, small, mid, large) in growth_rows(samples) {
        let first = per_item(small, mid) * 1000.0;
        let second = per_item(mid, large) * 1000.0;
        let linear = within_linear(first, second);
        md.push_str(&format!(
            "| {label} | {first:.3} | {second:.3} | {} |\n",
            if linear { "yes" } else { "no" }
        ));
        growth.push(json!({
            "command": label,
            "us_per_profile_1_to_1k": first,
            "us_per_profile_1k_to_10k": second,
            "no_worse_than_linear": linear,
        }));
    }
    (
        md,
        json!({ "machine": machine(), "results": rows, "growth": growth }),
    )
}

/// A store size and the median at it, in ms.
type Point = (usize, f64);

/// For each command measured at all three sizes, its median at each.
fn growth_rows(samples: &[Sample]) -> Vec<(String, Point, Point, Point)> {
    let mut out = Vec::new();
    for s in samples.iter().filter(|s| s.profiles == SIZES[0]) {
        let at = |n: usize| {
            samples
                .iter()
                .find(|o| o.label == s.label && o.profiles == n)
                .map(|o| (n, o.median()))
        };
        if let (Some(a), Some(b), Some(c)) = (at(SIZES[0]), at(SIZES[1]), at(SIZES[2])) {
            out.push((s.label.clone(), a, b, c));
        }
    }
    out
}

/// Whether the cost per profile of the larger step stays within that of
/// the smaller one. Below a microsecond per profile the command does not
/// grow with the store at all and noise decides the comparison; a 25 %
/// margin absorbs run-to-run spread.
fn within_linear(first_us: f64, second_us: f64) -> bool {
    second_us < 1.0 || second_us <= first_us.max(0.0) * 1.25
}

/// The host's CPU model, as `/proc/cpuinfo` names it.
pub fn machine() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_judged_per_profile() {
        let cases = [
            ("flat: the store is not read", 0.2, 0.3, true),
            ("linear", 70.0, 71.0, true),
            ("within the margin", 60.0, 74.0, true),
            ("worse than linear", 60.0, 90.0, false),
            ("negative first step, growing second", -5.0, 20.0, false),
        ];
        for (name, first, second, want) in cases {
            assert_eq!(within_linear(first, second), want, "{name}");
        }
    }

    #[test]
    fn growth_rows_pair_the_three_sizes() {
        let sample = |label: &str, profiles, ms: f64| Sample {
            label: label.into(),
            profiles,
            wall_ms: vec![ms],
            max_rss_kib: 0,
        };
        let samples = [
            sample("/bin/true", 0, 1.0),
            sample("list", 1, 2.0),
            sample("list", 1_000, 9.0),
            sample("list", 10_000, 72.0),
            sample("env p0", 1, 1.5),
            sample("env p0", 1_000, 1.5),
        ];
        let rows = growth_rows(&samples);
        assert_eq!(rows.len(), 1, "env p0 lacks the 10,000 point");
        let (label, a, b, c) = &rows[0];
        assert_eq!(label, "list");
        assert_eq!((*a, *b, *c), ((1, 2.0), (1_000, 9.0), (10_000, 72.0)));
        let (md, json) = report(&samples, 1);
        assert!(md.contains("| list | 7.007 | 7.000 | yes |"), "{md}");
        assert_eq!(json["growth"][0]["no_worse_than_linear"], true);
    }
}
