//! What the real-kernel tests share: running the `cortex` binary, reading
//! kernel files back, and helper processes to put under limits.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::chown;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where the VM mounts cgroup2 (or, in hybrid mode, the v1 tmpfs).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The uid (and gid) of the unprivileged user in the VM images.
pub const USER: u32 = 1000;

/// Panics unless this runs inside a VM booted by `cargo xtask vm-test`,
/// which sets `CORTEX_VM_MODE`: the tests make, change and delete cgroups
/// and must never do so on the machine they were built on.
pub fn require_vm() {
    assert!(
        std::env::var_os("CORTEX_VM_MODE").is_some(),
        "these tests change the machine's cgroups and run only inside the VM: \
         use cargo xtask vm-test"
    );
}

/// The `cortex` binary: `CORTEX_BIN` when the VM harness sets it, otherwise
/// the one cargo built next to this test.
pub fn cortex_bin() -> PathBuf {
    std::env::var_os("CORTEX_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cortex")))
}

/// The helper-process executable (`xtask vm-helper`): `CORTEX_VM_HELPER`
/// when set, otherwise the xtask binary in this test's target directory.
fn helper_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CORTEX_VM_HELPER") {
        return PathBuf::from(path);
    }
    // This executable is target/<profile>/deps/kernel-<hash>.
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("xtask")
}

/// The cgroup of a root-owned profile.
pub fn profile_cgroup(name: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join("cortex.slice").join(name)
}

/// Reads a kernel file, trimmed; panics naming the file when it is missing.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Writes a kernel file; panics naming the file and value on failure.
pub fn write(path: impl AsRef<Path>, value: &str) {
    require_vm();
    let path = path.as_ref();
    fs::write(path, value)
        .unwrap_or_else(|e| panic!("writing {value:?} to {}: {e}", path.display()));
}

/// One `key value` field of a flat-keyed file such as cpu.stat or
/// memory.events.
pub fn keyed(path: impl AsRef<Path>, key: &str) -> u64 {
    let path = path.as_ref();
    let text = read(path);
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}:\n{text}", path.display()))
}

/// The words of a space-separated file such as cgroup.subtree_control.
pub fn words(path: impl AsRef<Path>) -> Vec<String> {
    read(path).split_whitespace().map(str::to_string).collect()
}

/// Asserts that a space-separated kernel file lists each of `wanted`.
pub fn assert_lists(path: impl AsRef<Path>, wanted: &[&str]) {
    let path = path.as_ref();
    let have = words(path);
    for w in wanted {
        assert!(
            have.iter().any(|h| h == w),
            "{} lacks {w}: {have:?}",
            path.display()
        );
    }
}

/// The finished run of one command.
#[derive(Debug)]
pub struct Output {
    /// The exit code, or -1 when a signal ended it.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    fn of(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing the command's output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32, what: &str) -> Output {
        assert_eq!(
            self.code, code,
            "{what}: exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A database and a home directory of their own, and whom to run as.
pub struct Cortex {
    dir: tempfile::TempDir,
    uid: Option<u32>,
}

impl Cortex {
    /// Runs `cortex` as root with a fresh database.
    pub fn root() -> Cortex {
        require_vm();
        Cortex {
            dir: tempdir(),
            uid: None,
        }
    }

    /// Runs `cortex` as the unprivileged user, with a fresh database and
    /// home directory owned by that user.
    pub fn user() -> Cortex {
        require_vm();
        let dir = tempdir();
        chown(dir.path(), Some(USER), Some(USER)).expect("chown of the user's temp dir");
        Cortex {
            dir,
            uid: Some(USER),
        }
    }

    /// The database path every command gets with `--db`.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("limits.db")
    }

    /// Runs `cortex limits ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self
            .command(Command::new(cortex_bin()), args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", cortex_bin().display()));
        Output::of(out)
    }

    /// Runs `cortex limits ARGS...` from inside the cgroup `cgroup`: a shell
    /// started with the same user and environment waits until root has
    /// moved it there, then becomes cortex.
    pub fn run_in(&self, cgroup: &Path, args: &[&str]) -> Output {
        let mut gate = Command::new("/bin/sh");
        gate.args(["-c", "read go && exec \"$0\" \"$@\""])
            .arg(cortex_bin());
        let mut child = self
            .command(gate, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting /bin/sh");
        write(cgroup.join("cgroup.procs"), &child.id().to_string());
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"go\n")
            .expect("starting cortex in the shell");
        drop(stdin);
        Output::of(child.wait_with_output().expect("waiting for cortex"))
    }

    /// `cmd` with the cortex arguments, database, home and user added.
    fn command(&self, mut cmd: Command, args: &[&str]) -> Command {
        cmd.arg("limits").args(args).arg("--db").arg(self.db());
        cmd.env("HOME", self.dir.path())
            .env_remove("CORTEX_LIMITS_DB");
        if let Some(uid) = self.uid {
            cmd.uid(uid).gid(uid);
            cmd.env("XDG_STATE_HOME", self.dir.path().join("state"));
        }
        cmd
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cortex-kt-")
        .tempdir()
        .expect("a temp dir")
}

/// A helper process (`xtask vm-helper ROLE`), killed when dropped.
pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts a helper as root and waits until it says `ready`.
    pub fn start(role: &[&str]) -> Helper {
        Helper::spawn(role, None)
    }

    /// Starts a helper as the unprivileged user.
    pub fn start_as_user(role: &[&str]) -> Helper {
        Helper::spawn(role, Some(USER))
    }

    fn spawn(role: &[&str], uid: Option<u32>) -> Helper {
        let mut cmd = Command::new(helper_bin());
        cmd.arg("vm-helper").args(role);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} vm-helper: {e}", helper_bin().display()));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut helper = Helper {
            child,
            stdin,
            stdout,
        };
        helper.expect_line("ready");
        helper
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid as a command-line argument.
    pub fn pid_arg(&self) -> String {
        self.pid().to_string()
    }

    /// Sends one line (a hog starts allocating on it).
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the helper's stdin");
        writeln!(stdin, "{line}").expect("writing to the helper");
    }

    /// Reads the next line and asserts that it is `word`.
    pub fn expect_line(&mut self, word: &str) {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading from the helper");
        assert_eq!(line.trim(), word, "helper {} said {line:?}", self.pid());
    }

    /// The exit status, if the helper has ended.
    pub fn ended(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waiting for the helper")
    }

    /// Waits up to `limit` for the helper to end.
    pub fn wait_end(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_until(limit, || self.ended())
    }

    /// Whether the helper ended by SIGKILL.
    pub fn killed(status: ExitStatus) -> bool {
        status.signal() == Some(9)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 50 ms until it gives a value or `limit` passes.
pub fn wait_until<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The cgroup v2 path of a task, from a /proc/.../cgroup file ("0::/x/y").
pub fn cgroup_of(proc_cgroup_file: impl AsRef<Path>) -> String {
    let text = read(proc_cgroup_file);
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line in {text:?}"))
        .to_string()
}

/// Every directory under `root` (the cgroup tree), relative and sorted.
pub fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                let path = entry.path();
                found.push(path.strip_prefix(root).unwrap().display().to_string());
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A profile name no other test uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
