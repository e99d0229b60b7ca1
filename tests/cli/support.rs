//! A test environment: a temp directory holding a fake cgroupfs root and a
//! database path, and a way to run the real `cortex` binary against them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The controllers a Linux 6.1 host offers at its cgroup2 root.
pub const ALL_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

pub struct TestEnv {
    dir: tempfile::TempDir,
}

/// What a run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            code: output
                .status
                .code()
                .expect("the binary exited, not killed by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Run {
        assert_eq!(
            self.code, want,
            "exit code\n--- stdout\n{}--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts success with nothing on stderr.
    #[track_caller]
    pub fn ok(&self) -> &Run {
        self.code(0);
        assert_eq!(self.stderr, "", "stderr of a clean success");
        self
    }

    /// Asserts stderr is exactly one `cortex: error:` line holding `part`.
    #[track_caller]
    pub fn one_error(&self, part: &str) -> &Run {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got:\n{}", self.stderr);
        assert!(lines[0].starts_with("cortex: error: "), "{}", lines[0]);
        assert!(lines[0].contains(part), "{:?} in {:?}", part, lines[0]);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl TestEnv {
    /// A root with every controller, as on a cgroup v2 host.
    pub fn new() -> TestEnv {
        let env = TestEnv::bare();
        env.write("cgroup/cgroup.controllers", ALL_CONTROLLERS);
        env
    }

    /// An empty directory as the cgroup root.
    pub fn bare() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("cgroup")).unwrap();
        TestEnv { dir }
    }

    /// A hybrid host: v1 controllers and an empty cgroup2 at `unified`.
    pub fn hybrid() -> TestEnv {
        let env = TestEnv::bare();
        env.write("cgroup/unified/cgroup.controllers", "");
        env.write("cgroup/memory/tasks", "1\n");
        env.write("cgroup/cpu/tasks", "1\n");
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cgroup_root(&self) -> PathBuf {
        self.path("cgroup")
    }

    pub fn db(&self) -> PathBuf {
        self.path("state/limits.db")
    }

    /// A profile's cgroup directory.
    pub fn profile_dir(&self, name: &str) -> PathBuf {
        self.cgroup_root().join("cortex.slice").join(name)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    pub fn read(&self, path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The command, with the roots pointed at this environment and no
    /// inherited overrides.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex"));
        cmd.args(args)
            .env("CORTEX_LIMITS_DB", self.db())
            .env("CORTEX_CGROUP_ROOT", self.cgroup_root())
            .env_remove("CORTEX_PROC_ROOT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cortex ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Runs `cortex limits ARGS...`.
    pub fn limits(&self, args: &[&str]) -> Run {
        let mut all = vec!["limits"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Everything under the cgroup root, as sorted relative paths.
    pub fn cgroup_tree(&self) -> Vec<String> {
        let root = self.cgroup_root();
        let mut paths = Vec::new();
        let mut todo = vec![root.clone()];
        while let Some(dir) = todo.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                paths.push(path.strip_prefix(&root).unwrap().display().to_string());
                if path.is_dir() {
                    todo.push(path);
                }
            }
        }
        paths.sort();
        paths
    }
}

/// Whether this process may lower OOM adjustments.
pub fn has_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

/// A child that sleeps until killed; killed when dropped.
pub struct Sleeper(pub std::process::Child);

impl Sleeper {
    pub fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("300").spawn().unwrap())
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
