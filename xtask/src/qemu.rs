//! Booting a VM under qemu (TCG) and watching its two serial ports.
//!
//! ttyS0 is the kernel console, saved to `console.log` and watched for a
//! panic. ttyS1 carries only what the in-VM test script prints, saved to
//! `results.log` and handed line by line to the caller as it arrives, so
//! kernel messages (the OOM killer is chatty) never interleave with test
//! output.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const POLL: Duration = Duration::from_millis(100);
const PANIC: &str = "Kernel panic";

/// One boot.
pub struct Boot<'a> {
    /// The bzImage.
    pub kernel: &'a Path,
    /// The (possibly concatenated) initramfs.
    pub initrd: &'a Path,
    /// The kernel command line.
    pub append: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Where the logs go.
    pub log_dir: &'a Path,
    /// The VM is killed after this long.
    pub timeout: Duration,
}

/// How a boot ended.
pub struct Ending {
    /// The VM ran past its timeout and was killed.
    pub timed_out: bool,
    /// The console showed a kernel panic.
    pub panicked: bool,
    /// From start to the VM's exit.
    pub elapsed: Duration,
    /// What was left on ttyS1 after its last newline.
    pub partial_line: String,
    /// The console log, for pointing at when something went wrong.
    pub console_log: PathBuf,
    /// What qemu itself printed on stderr (bad options, missing files).
    pub qemu_errors: String,
}

impl Boot<'_> {
    /// Boots and calls `on_line` for every complete ttyS1 line, without its
    /// line ending, as it arrives. Returns when qemu exits or the timeout
    /// passes.
    pub fn run(&self, mut on_line: impl FnMut(&str)) -> Result<Ending> {
        fs::create_dir_all(self.log_dir)?;
        let console_log = self.log_dir.join("console.log");
        let results_log = self.log_dir.join("results.log");
        let qemu_out = self.log_dir.join("qemu.out");
        let qemu_err = self.log_dir.join("qemu.err");
        for f in [&console_log, &results_log] {
            File::create(f).with_context(|| format!("creating {}", f.display()))?;
        }

        let start = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            // KVM hangs in the nested setup of these machines; TCG works.
            .args(["-accel", "tcg,thread=multi", "-smp", "2"])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", &self.append])
            .arg("-serial")
            .arg(format!("file:{}", console_log.display()))
            .arg("-serial")
            .arg(format!("file:{}", results_log.display()))
            .stdin(Stdio::null())
            .stdout(File::create(&qemu_out)?)
            .stderr(File::create(&qemu_err)?)
            .spawn()
            .context("starting qemu-system-x86_64")?;

        let mut results = Tail::open(&results_log)?;
        let mut console = Tail::open(&console_log)?;
        let mut panicked = false;
        let mut timed_out = false;
        loop {
            let exited = child.try_wait()?.is_some();
            results.lines(&mut on_line)?;
            panicked |= console.lines(&mut |_| {})? && console.seen(PANIC);
            if exited {
                break;
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                child.kill().ok();
                child.wait()?;
                results.lines(&mut on_line)?;
                break;
            }
            thread::sleep(POLL);
        }
        console.lines(&mut |_| {})?;
        panicked |= console.seen(PANIC);

        Ok(Ending {
            timed_out,
            panicked,
            elapsed: start.elapsed(),
            partial_line: results.pending.trim_end_matches(['\r', '\n']).to_string(),
            console_log,
            qemu_errors: fs::read_to_string(&qemu_err).unwrap_or_default(),
        })
    }
}

/// Follows a growing file and splits it into lines.
struct Tail {
    file: File,
    pending: String,
    all: String,
}

impl Tail {
    fn open(path: &Path) -> Result<Tail> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Tail {
            file,
            pending: String::new(),
            all: String::new(),
        })
    }

    /// Reads what was appended and calls `on_line` for each complete line;
    /// returns whether anything new arrived.
    fn lines(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<bool> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(false);
        }
        let text = String::from_utf8_lossy(&buf);
        self.all.push_str(&text);
        self.pending.push_str(&text);
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            on_line(line.trim_end_matches(['\r', '\n']));
        }
        Ok(true)
    }

    fn seen(&self, needle: &str) -> bool {
        self.all.contains(needle)
    }
}
