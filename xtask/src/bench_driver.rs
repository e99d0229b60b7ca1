//! `xtask vm-bench MODE RUNS` and `xtask vm-bench probe`: the benchmark
//! driver that runs inside the VM.
//!
//! The driver sets up one group per tool with the same limits (half a
//! core, 256 MiB), then spawns each command `RUNS` times, the tools taking
//! turns within each round so that a slow spell of the emulator falls on
//! all of them alike. Each series is printed as one JSON line after
//! [`LINE`]; the host computes the statistics. `probe` is the command each
//! tool starts once to read its own limits back from the kernel.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

/// The prefix of every result line the host reads.
pub const LINE: &str = "@@bench ";

const CGROUP: &str = "/sys/fs/cgroup";
const CORTEX: &str = "/tests/cortex";
const SELF: &str = "/tests/vm-helper";
const DB: &str = "/tmp/bench/limits.db";
/// The profile `run` enters, and the cgroup-tools group beside it.
const PROFILE: &str = "bench";
const GROUP: &str = "cgbench";
/// Half a core and 256 MiB, in each tool's own words.
const CPU_MAX: &str = "50000 100000";
const MEMORY_MAX: &str = "268435456";
/// The idle time before each measured spawn: longer than a grace period
/// of the emulated kernel.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const SYSTEMD_PROPS: [&str; 4] = ["-p", "CPUQuota=50%", "-p", "MemoryMax=256M"];

/// Runs the driver; `args` is `MODE RUNS` or `probe`.
pub fn run(args: &[String]) -> Result<()> {
    match args {
        [probe] if probe == "probe" => probe_self(),
        [mode, runs] => {
            let runs: usize = runs.parse().context("vm-bench RUNS must be a number")?;
            drive(mode, runs.max(1))
        }
        _ => bail!("usage: xtask vm-bench MODE RUNS | xtask vm-bench probe"),
    }
}

/// Prints this process's cgroup and the limits the kernel holds for it.
fn probe_self() -> Result<()> {
    let own = fs::read_to_string("/proc/self/cgroup")?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup2 line in /proc/self/cgroup")?
        .to_string();
    let dir = format!("{CGROUP}{path}");
    let read = |file: &str| {
        fs::read_to_string(format!("{dir}/{file}"))
            .map_or_else(|e| format!("unreadable: {e}"), |t| t.trim().to_string())
    };
    println!(
        "{}",
        json!({ "cgroup": path, "cpu.max": read("cpu.max"), "memory.max": read("memory.max") })
    );
    Ok(())
}

/// One command measured, with how to start it.
struct Series {
    tool: &'static str,
    runs: usize,
    argv: Vec<String>,
    /// Moves the child into a cgroup between fork and exec.
    move_into: Option<CString>,
    wall_ms: Vec<f64>,
}

impl Series {
    fn new(tool: &'static str, runs: usize, argv: &[&str]) -> Series {
        Series {
            tool,
            runs,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            move_into: None,
            wall_ms: Vec::with_capacity(runs),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env("CORTEX_LIMITS_DB", DB)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(procs) = self.move_into.clone() {
            // SAFETY: between fork and exec only async-signal-safe calls
            // are made (open, write, close), on memory prepared beforehand.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // "0" moves the writer itself.
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Spawns the command once and records its wall time.
    fn once(&mut self) -> Result<()> {
        let start = Instant::now();
        let out = self
            .command()
            .output()
            .with_context(|| format!("spawning {}", self.argv.join(" ")))?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                self.argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.wall_ms.push(ms);
        Ok(())
    }
}

/// A create-then-delete cycle, one command per step, timed as a whole.
struct Cycle {
    tool: &'static str,
    steps: Vec<Vec<String>>,
    wall_ms: Vec<f64>,
}

impl Cycle {
    fn once(&mut self) -> Result<()> {
        let start = Instant::now();
        for step in &self.steps {
            let out = Command::new(&step[0])
                .args(&step[1..])
                .env("CORTEX_LIMITS_DB", DB)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("spawning {}", step.join(" ")))?;
            if !out.status.success() {
                bail!(
                    "{} failed ({}): {}",
                    step.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        self.wall_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        Ok(())
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE}{value}");
    let _ = out.flush();
}

/// Runs a setup command; its failure ends the benchmark.
fn setup(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("CORTEX_LIMITS_DB", DB)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "setup step {} failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn drive(mode: &str, runs: usize) -> Result<()> {
    let systemd = mode == "systemd";
    // Under TCG a program loaded at a new address is translated afresh, so
    // with address randomisation every spawn pays translation in proportion
    // to the code it runs: an emulator cost that real hardware does not
    // have, and that would be charged to the largest binary. Every tool
    // here is position-independent, so all lose it alike.
    fs::write("/proc/sys/kernel/randomize_va_space", "0")
        .context("turning address randomisation off")?;
    fs::create_dir_all(Path::new(DB).parent().unwrap())?;
    emit(json!({
        "kind": "info",
        "mode": mode,
        "runs": runs,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease")?.trim(),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "address_randomisation": false,
    }));

    // cgroup-tools makes its group under the root: the root must hand
    // down the controllers (cortex does this for its own slice).
    fs::write(format!("{CGROUP}/cgroup.subtree_control"), "+cpu +memory")
        .context("enabling cpu and memory in the root cgroup")?;
    setup(&[
        CORTEX, "limits", "create", PROFILE, "--cpu", "50", "--memory", "256M",
    ])?;
    setup(&["cgcreate", "-g", &format!("cpu,memory:{GROUP}")])?;
    setup(&[
        "cgset",
        "-r",
        &format!("cpu.max={CPU_MAX}"),
        "-r",
        &format!("memory.max={MEMORY_MAX}"),
        GROUP,
    ])?;
    // The raw floor writes its pid into a group of its own.
    let raw_group = format!("{CGROUP}/rawbench");
    fs::create_dir_all(&raw_group)?;
    fs::write(format!("{raw_group}/cpu.max"), CPU_MAX)?;
    fs::write(format!("{raw_group}/memory.max"), MEMORY_MAX)?;

    // Fairness: each tool's group, as the kernel holds it, read from
    // inside by a process the tool started.
    let group_arg = format!("cpu,memory:{GROUP}");
    let mut probes: Vec<(&str, Vec<&str>)> = vec![
        (
            "cortex run",
            vec![
                CORTEX, "limits", "run", PROFILE, "--", SELF, "vm-bench", "probe",
            ],
        ),
        (
            "cgexec",
            vec!["cgexec", "-g", &group_arg, SELF, "vm-bench", "probe"],
        ),
    ];
    let mut scope_probe = vec!["systemd-run", "--scope", "-q"];
    scope_probe.extend(SYSTEMD_PROPS);
    scope_probe.extend([SELF, "vm-bench", "probe"]);
    if systemd {
        probes.push(("systemd-run --scope", scope_probe));
    }
    for (tool, argv) in probes {
        let text = setup(&argv)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("reading the probe of {tool}: {text:?}"))?;
        emit(json!({ "kind": "readback", "tool": tool, "kernel": value }));
    }

    let mut series = vec![
        Series::new("/bin/true", runs, &["/bin/true"]),
        Series::new("write pid + exec", runs, &["/bin/true"]),
        Series::new(
            "cortex limits env",
            runs,
            &[CORTEX, "limits", "env", PROFILE],
        ),
        Series::new(
            "cortex limits run",
            runs,
            &[CORTEX, "limits", "run", PROFILE, "--", "/bin/true"],
        ),
        Series::new("cgexec", runs, &["cgexec", "-g", &group_arg, "/bin/true"]),
    ];
    series[1].move_into = Some(CString::new(format!("{raw_group}/cgroup.procs"))?);
    if systemd {
        let mut argv = vec!["systemd-run", "--scope", "-q"];
        argv.extend(SYSTEMD_PROPS);
        argv.push("/bin/true");
        // A scope costs a round trip through systemd: fewer runs.
        series.push(Series::new("systemd-run --scope", runs.div_ceil(3), &argv));
    }
    measure_spawns(&mut series, runs, DEFAULT_MOUNT)?;
    let cycles_runs = runs.div_ceil(2);
    let mut cycles = vec![
        Cycle {
            tool: "cortex limits create + delete",
            steps: vec![
                words(&format!(
                    "{CORTEX} limits create cyc --cpu 50 --memory 256M"
                )),
                words(&format!("{CORTEX} limits delete cyc")),
            ],
            wall_ms: Vec::new(),
        },
        Cycle {
            tool: "cgcreate + cgset + cgdelete",
            steps: vec![
                words("cgcreate -g cpu,memory:cgcyc"),
                vec![
                    "cgset".into(),
                    "-r".into(),
                    format!("cpu.max={CPU_MAX}"),
                    "-r".into(),
                    format!("memory.max={MEMORY_MAX}"),
                    "cgcyc".into(),
                ],
                words("cgdelete -g cpu,memory:cgcyc"),
            ],
            wall_ms: Vec::new(),
        },
    ];
    for c in &mut cycles {
        c.once()?;
        c.wall_ms.clear();
    }
    for round in 0..cycles_runs {
        for k in 0..cycles.len() {
            let i = (round + k) % cycles.len();
            std::thread::sleep(PAUSE);
            cycles[i].once()?;
        }
    }
    for c in &cycles {
        let steps: Vec<String> = c.steps.iter().map(|s| s.join(" ")).collect();
        emit(
            json!({ "kind": "cycle", "tool": c.tool, "command": steps.join("; "), "wall_ms": c.wall_ms }),
        );
    }
    // With favordynmods the kernel keeps that lock in the mode where a
    // move need not wait for a grace period (at some cost to every fork):
    // the spawns again, to show what each tool costs without the wait.
    // A remount sets every cgroup2 option anew, so the present ones
    // (systemd's nsdelegate, for one) are given again.
    let options = mount_options()?;
    match remount(&format!("{options},favordynmods")) {
        Ok(()) => {
            for s in &mut series {
                s.wall_ms.clear();
            }
            measure_spawns(&mut series, runs, DYNMODS_MOUNT)?;
            remount(&options)?;
        }
        Err(e) => emit(
            json!({ "kind": "note", "text": format!("not measured with favordynmods: {e:#}") }),
        ),
    }
    emit(json!({ "kind": "done" }));
    Ok(())
}

/// How each set of spawns names its mount.
const DEFAULT_MOUNT: &str = "default";
const DYNMODS_MOUNT: &str = "favordynmods";

/// Measures every series `runs` times and prints each, tagged with `mount`.
fn measure_spawns(series: &mut [Series], runs: usize, mount: &str) -> Result<()> {
    // Warm the page cache and the database before measuring.
    for s in series.iter_mut() {
        for _ in 0..3 {
            s.once()?;
        }
        s.wall_ms.clear();
    }
    // Moving a process into a cgroup takes a lock whose writer waits for
    // an RCU grace period unless another move happened just before, so a
    // tool measured right after another one's move would be charged less.
    // A pause before every spawn lets each start from the same idle state,
    // as launches spaced in time do; the order also rotates every round.
    let n = series.len();
    for round in 0..runs {
        for k in 0..n {
            let s = &mut series[(round + k) % n];
            if round < s.runs {
                std::thread::sleep(PAUSE);
                s.once()?;
            }
        }
    }
    for s in series.iter() {
        emit(json!({
            "kind": "spawn", "mount": mount, "tool": s.tool,
            "command": s.argv.join(" "), "wall_ms": s.wall_ms,
        }));
    }
    Ok(())
}

/// The options the cgroup2 hierarchy is mounted with now.
fn mount_options() -> Result<String> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[1] == CGROUP && f[2] == "cgroup2")
        .map(|f| f[3].to_string())
        .with_context(|| format!("no cgroup2 mount at {CGROUP}"))
}

/// Remounts the cgroup2 hierarchy with `options`.
fn remount(options: &str) -> Result<()> {
    let out = Command::new("mount")
        .args(["-o", &format!("remount,{options}"), CGROUP])
        .output()
        .context("running mount")?;
    if !out.status.success() {
        bail!(
            "mount -o remount,{options} {CGROUP}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
