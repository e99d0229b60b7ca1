//! The host tools the VM suite needs, and installing them on Debian.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A command the suite runs, and the Debian package that ships it.
struct Tool {
    command: &'static str,
    package: &'static str,
}

const ALWAYS: &[Tool] = &[
    Tool {
        command: "qemu-system-x86_64",
        package: "qemu-system-x86",
    },
    Tool {
        command: "zstd",
        package: "zstd",
    },
    Tool {
        command: "apt-get",
        package: "apt",
    },
    Tool {
        command: "dpkg-deb",
        package: "dpkg",
    },
    Tool {
        command: "ldd",
        package: "libc-bin",
    },
];

/// A statically linked busybox: it runs in an image with no libraries.
const BUSYBOX: Tool = Tool {
    command: "busybox",
    package: "busybox-static",
};

const SYSTEMD_ROOT: Tool = Tool {
    command: "mmdebstrap",
    package: "mmdebstrap",
};

/// Checks for every tool the chosen modes need; installs what is missing
/// when running as root on Debian, and otherwise says what to install.
pub fn ensure(need_systemd_root: bool) -> Result<()> {
    let mut tools: Vec<&Tool> = ALWAYS.iter().collect();
    tools.push(&BUSYBOX);
    if need_systemd_root {
        tools.push(&SYSTEMD_ROOT);
    }

    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|t| find(t.command).is_none())
        .map(|t| t.package)
        .collect();
    if find(BUSYBOX.command).is_some_and(|p| !is_static(&p)) {
        missing.push(BUSYBOX.package);
    }
    if missing.is_empty() {
        return Ok(());
    }

    let list = missing.join(" ");
    let root = euid() == Some(0);
    if !root || !Path::new("/etc/debian_version").exists() {
        bail!(
            "the VM suite needs these packages: {list}\n\
             install them first, e.g.: sudo apt-get install -y {list}"
        );
    }
    eprintln!("xtask: installing {list}");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// The first `command` on `PATH` (or in the sbin directories, which a
/// non-login root shell may lack).
pub fn find(command: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// Whether we run as root, read from /proc so no unsafe call is needed.
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn is_static(binary: &Path) -> bool {
    // ldd exits non-zero and says "not a dynamic executable" for static ones.
    Command::new("ldd")
        .arg(binary)
        .output()
        .map(|o| {
            !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("statically linked")
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
