//! The initramfs images the VM boots.
//!
//! - busybox: a static busybox, `tests/vm/init.sh` as `/init`, and the test
//!   payload with its shared libraries. One image serves the plain and the
//!   hybrid mode; the kernel command line says which.
//! - systemd: a Debian root made with mmdebstrap, packed once and cached,
//!   followed by a small archive with the payload and a oneshot unit that
//!   runs the tests. The kernel unpacks concatenated archives in order.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cpio::{Archive, Owner};
use crate::prereq;

/// Bump when the recipe of the cached systemd root changes.
const SYSTEMD_BASE: &str = "systemd-base-v2.cpio.zst";

/// The users of the busybox image: root, and the unprivileged user of the
/// delegation tests.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n";
const GROUP: &str = "root:x:0:\nuser:x:1000:\n";

/// Units masked in the systemd image.
const MASKED: &[&str] = &["serial-getty@ttyS0.service", "getty@tty1.service"];

/// Documentation and translations are of no use in a test VM.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
];

/// The programs the tests run inside the VM.
pub struct Payload {
    /// The `cortex` binary.
    pub cortex: PathBuf,
    /// The `tests/kernel.rs` test executable; the benchmark has none.
    pub kernel_tests: Option<PathBuf>,
    /// The xtask binary, used as `vm-helper` for test processes.
    pub helper: PathBuf,
    /// The script PID 1 (or the systemd unit) runs, as `/tests/run-tests.sh`.
    pub script: PathBuf,
    /// Programs unpacked from Debian packages, for the busybox image.
    pub foreign: Option<Foreign>,
}

/// Executables unpacked from `.deb` files (not installed on this host),
/// copied to the image's `/bin` with their libraries.
pub struct Foreign {
    /// The executables.
    pub binaries: Vec<PathBuf>,
    /// Where their own libraries lie in the unpacked tree.
    pub lib_dir: PathBuf,
}

/// Builds the busybox image at `vm_dir/busybox/initrd.img`.
pub fn busybox(vm_dir: &Path, repo: &Path, payload: &Payload) -> Result<PathBuf> {
    let dir = vm_dir.join("busybox");
    let stage = fresh_dir(&dir.join("stage"))?;
    for d in [
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "home/user",
    ] {
        fs::create_dir_all(stage.join(d))?;
    }
    fs::set_permissions(stage.join("tmp"), fs::Permissions::from_mode(0o1777))?;

    let busybox = prereq::find("busybox").context("busybox is not installed")?;
    install(&busybox, &stage.join("bin/busybox"), &stage, true)?;
    install(
        &repo.join("tests/vm/init.sh"),
        &stage.join("init"),
        &stage,
        false,
    )?;
    std::os::unix::fs::chown(stage.join("home/user"), Some(1000), Some(1000))?;
    add_payload(&stage, payload, true)?;
    if let Some(foreign) = &payload.foreign {
        for binary in &foreign.binaries {
            install_foreign(binary, &foreign.lib_dir, &stage)?;
        }
    }

    let image = dir.join("initrd.img");
    pack(&stage, &image, |archive| {
        // The kernel opens /dev/console for /init before devtmpfs is there.
        archive.char_device("dev/console", Owner::root(0o600), 5, 1)?;
        archive.file("etc/passwd", Owner::root(0o644), PASSWD.as_bytes())?;
        archive.file("etc/group", Owner::root(0o644), GROUP.as_bytes())
    })?;
    Ok(image)
}

/// Builds the systemd image at `vm_dir/systemd/initrd.img`, making the
/// cached Debian root first when it is missing.
pub fn systemd(vm_dir: &Path, repo: &Path, payload: &Payload) -> Result<PathBuf> {
    let dir = vm_dir.join("systemd");
    let base = systemd_base(&dir)?;

    let stage = fresh_dir(&dir.join("stage"))?;
    let units = stage.join("etc/systemd/system");
    fs::create_dir_all(units.join("multi-user.target.wants"))?;
    let unit = repo.join("tests/vm/cortex-tests.service");
    fs::copy(&unit, units.join("cortex-tests.service"))
        .with_context(|| format!("copying {}", unit.display()))?;
    // The root has the same libraries as this host: it is built from the
    // host's own suite and package sources.
    add_payload(&stage, payload, false)?;
    let overlay = dir.join("overlay.cpio.zst");
    pack(&stage, &overlay, |archive| {
        archive.symlink(
            "etc/systemd/system/multi-user.target.wants/cortex-tests.service",
            "../cortex-tests.service",
        )?;
        // The image has no udev, so the gettys would wait 90 s for their
        // tty devices to show up, and nobody logs in anyway.
        for getty in MASKED {
            archive.symlink(&format!("etc/systemd/system/{getty}"), "/dev/null")?;
        }
        Ok(())
    })?;

    let image = dir.join("initrd.img");
    let mut out = BufWriter::new(File::create(&image)?);
    for part in [&base, &overlay] {
        let mut f = File::open(part).with_context(|| format!("opening {}", part.display()))?;
        std::io::copy(&mut f, &mut out)?;
    }
    out.flush()?;
    Ok(image)
}

/// The packed Debian root with systemd, made once with mmdebstrap.
fn systemd_base(dir: &Path) -> Result<PathBuf> {
    let packed = dir.join(SYSTEMD_BASE);
    if packed.is_file() {
        return Ok(packed);
    }
    if prereq::euid() != Some(0) {
        bail!("making the systemd root with mmdebstrap needs root");
    }

    let root = dir.join("rootfs.tmp");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::create_dir_all(dir)?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--variant=minbase",
        // cgroup-tools: the benchmark measures cgexec against cortex.
        "--include=systemd,systemd-sysv,dbus,cgroup-tools",
        "-q",
    ]);
    for exclude in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={exclude}"));
    }
    cmd.arg("--customize-hook=echo cortex-vm > \"$1/etc/hostname\"");
    cmd.arg("--customize-hook=chroot \"$1\" useradd -m -u 1000 -s /bin/sh user");
    cmd.arg(host_suite()).arg(&root);
    if let Some(sources) = host_sources() {
        cmd.arg(sources);
    }
    eprintln!("xtask: making the systemd root with mmdebstrap (about a minute, once)");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .context("running mmdebstrap")?;
    if !status.success() {
        bail!("mmdebstrap failed: {status}");
    }

    let partial = dir.join(format!("{SYSTEMD_BASE}.part"));
    pack(&root, &partial, |_| Ok(()))?;
    fs::rename(&partial, &packed)?;
    fs::remove_dir_all(&root).ok();
    Ok(packed)
}

/// Copies the payload and its script into `stage/tests`.
fn add_payload(stage: &Path, payload: &Payload, with_libs: bool) -> Result<()> {
    let tests = stage.join("tests");
    fs::create_dir_all(&tests)?;
    install(&payload.script, &tests.join("run-tests.sh"), stage, false)?;
    install(&payload.cortex, &tests.join("cortex"), stage, with_libs)?;
    if let Some(kernel_tests) = &payload.kernel_tests {
        install(kernel_tests, &tests.join("kernel-tests"), stage, with_libs)?;
    }
    install(&payload.helper, &tests.join("vm-helper"), stage, with_libs)?;
    Ok(())
}

/// Copies an executable to `dest` (without debug info when `strip` is at
/// hand, which keeps the image small) and, with `with_libs`, the shared
/// libraries `ldd` names to the same paths under `stage`.
fn install(src: &Path, dest: &Path, stage: &Path, with_libs: bool) -> Result<()> {
    let stripped = prereq::find("strip").is_some_and(|strip| {
        Command::new(strip)
            .arg("--strip-debug")
            .arg("-o")
            .arg(dest)
            .arg(src)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !stripped {
        fs::copy(src, dest)
            .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
    if !with_libs {
        return Ok(());
    }

    for lib in shared_libraries(src)? {
        let inside = stage.join(lib.strip_prefix("/").unwrap_or(&lib));
        if inside.exists() {
            continue;
        }
        fs::create_dir_all(inside.parent().unwrap())?;
        fs::copy(&lib, &inside).with_context(|| format!("copying {}", lib.display()))?;
    }
    Ok(())
}

/// Copies an unpacked executable to the image's `/bin`, with the
/// libraries it needs: its own from `lib_dir`, the rest from this host,
/// all put where the image's loader looks (beside libc).
fn install_foreign(binary: &Path, lib_dir: &Path, stage: &Path) -> Result<()> {
    let name = binary.file_name().context("an executable without a name")?;
    install(binary, &stage.join("bin").join(name), stage, false)?;
    let mut libs = shared_libraries_in(binary, Some(lib_dir))?;
    let system_dir = libs
        .iter()
        .find(|l| l.file_name().is_some_and(|n| n == "libc.so.6"))
        .and_then(|l| l.parent())
        .map(|d| d.strip_prefix("/").unwrap_or(d).to_path_buf())
        .with_context(|| format!("ldd names no libc for {}", binary.display()))?;
    for lib in libs.drain(..) {
        let inside = match lib.strip_prefix(lib_dir) {
            Ok(own) => stage.join(&system_dir).join(own),
            Err(_) => stage.join(lib.strip_prefix("/").unwrap_or(&lib)),
        };
        if inside.exists() {
            continue;
        }
        fs::create_dir_all(inside.parent().unwrap())?;
        fs::copy(&lib, &inside).with_context(|| format!("copying {}", lib.display()))?;
    }
    Ok(())
}

/// The libraries `ldd` lists for a binary, loader included; none for a
/// static one.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    shared_libraries_in(binary, None)
}

/// As [`shared_libraries`], looking in `extra` first.
fn shared_libraries_in(binary: &Path, extra: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut ldd = Command::new("ldd");
    ldd.arg(binary);
    if let Some(dir) = extra {
        ldd.env("LD_LIBRARY_PATH", dir);
    }
    let out = ldd.output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let (Some(dir), Some(missing)) = (extra, text.lines().find(|l| l.contains("not found"))) {
        bail!(
            "{} needs a library found neither in {} nor on this host: {}",
            binary.display(),
            dir.display(),
            missing.trim()
        );
    }
    if !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once(" => ") {
                Some((_, rest)) => rest,
                None => line,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Writes `stage` as a zstd-compressed newc archive at `out`; `extra`
/// adds entries after the staged tree (device nodes, small files).
fn pack<F>(stage: &Path, out: &Path, extra: F) -> Result<()>
where
    F: FnOnce(&mut Archive<BufWriter<std::process::ChildStdin>>) -> Result<()>,
{
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    // Level 3 packs the 150 MB systemd root in about a second on two cores,
    // and the kernel unpacks it faster than gzip.
    let mut zstd = Command::new("zstd")
        .args(["-q", "-3", "-T0", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("running zstd")?;
    let stdin = zstd.stdin.take().unwrap();
    let mut archive = Archive::new(BufWriter::with_capacity(1 << 20, stdin));
    archive.tree(stage, "")?;
    extra(&mut archive)?;
    drop(archive.finish()?);
    let status = zstd.wait()?;
    if !status.success() {
        bail!("zstd failed packing {}: {status}", stage.display());
    }
    Ok(())
}

fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// The host's Debian suite, so the VM root has the host's libraries.
fn host_suite() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bookworm".to_string())
}

/// The host's package sources, given to mmdebstrap as its mirror.
fn host_sources() -> Option<PathBuf> {
    [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ]
            .map(PathBuf::from)
        );
    }
}
