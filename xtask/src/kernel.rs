//! The kernel the VM boots: Debian's cloud kernel, fetched once and cached.
//!
//! Exact kernel package versions leave the archive, so the version is
//! resolved through the `linux-image-cloud-amd64` meta package each time the
//! cache is empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// Options the suite relies on. Each is a bool option, so it is either built
/// in or missing: the image loads no modules.
const REQUIRED: &[&str] = &[
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_RD_ZSTD",
    "CONFIG_DEVTMPFS",
    "CONFIG_TMPFS",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_CGROUPS",
    "CONFIG_MEMCG",
    "CONFIG_CGROUP_SCHED",
    "CONFIG_FAIR_GROUP_SCHED",
    "CONFIG_CFS_BANDWIDTH",
    "CONFIG_CPUSETS",
    "CONFIG_CGROUP_PIDS",
    "CONFIG_CGROUP_CPUACCT",
];

/// A kernel ready to boot.
pub struct Kernel {
    /// The bzImage.
    pub image: PathBuf,
    /// Its release string, e.g. `6.1.0-57-cloud-amd64`.
    pub release: String,
}

/// Returns the cached kernel under `vm_dir/kernel`, fetching it first when
/// the cache is empty.
pub fn ensure(vm_dir: &Path) -> Result<Kernel> {
    let dir = vm_dir.join("kernel");
    let image = dir.join("vmlinuz");
    let release_file = dir.join("release");
    if let (true, Ok(release)) = (image.is_file(), fs::read_to_string(&release_file)) {
        return Ok(Kernel {
            image,
            release: release.trim().to_string(),
        });
    }

    let downloads = vm_dir.join("downloads");
    fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    let meta = download(&downloads, META_PACKAGE)?;
    let package = image_package(&deb_field(&meta, "Depends")?)
        .with_context(|| format!("{} depends on no linux-image package", meta.display()))?;
    let deb = download(&downloads, &package)?;

    let tree = dir.join("tree");
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    fs::create_dir_all(&tree)?;
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .status()?;
    if !status.success() {
        bail!("dpkg -x {} failed: {status}", deb.display());
    }

    let boot = tree.join("boot");
    let vmlinuz = only_entry(&boot, "vmlinuz-")?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    let config = fs::read_to_string(boot.join(format!("config-{release}")))
        .with_context(|| format!("reading the config of kernel {release}"))?;
    let problems = config_problems(&config);
    if !problems.is_empty() {
        bail!(
            "kernel {release} lacks what the VM suite needs:\n  {}",
            problems.join("\n  ")
        );
    }

    fs::copy(&vmlinuz, &image).with_context(|| format!("copying {}", vmlinuz.display()))?;
    fs::remove_dir_all(&tree).ok();
    fs::write(&release_file, format!("{release}\n"))?;
    eprintln!("xtask: kernel {release} from {}", deb.display());
    Ok(Kernel { image, release })
}

/// `apt-get download NAME` into `dir`; on failure, refreshes the package
/// lists once (as root) and tries again. Returns the downloaded file.
pub fn download(dir: &Path, name: &str) -> Result<PathBuf> {
    for old in debs(dir, name)? {
        fs::remove_file(old).ok();
    }
    let attempt = || {
        Command::new("apt-get")
            .args(["download", "-q", name])
            .current_dir(dir)
            .output()
    };
    let mut out = attempt().context("running apt-get download")?;
    if !out.status.success() && crate::prereq::euid() == Some(0) {
        eprintln!("xtask: apt-get download {name} failed; running apt-get update");
        Command::new("apt-get").args(["update", "-q"]).status()?;
        out = attempt()?;
    }
    if !out.status.success() {
        bail!(
            "apt-get download {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    debs(dir, name)?
        .pop()
        .with_context(|| format!("apt-get download {name} left no .deb in {}", dir.display()))
}

fn debs(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let prefix = format!("{name}_");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".deb") {
            found.push(dir.join(file));
        }
    }
    Ok(found)
}

fn deb_field(deb: &Path, field: &str) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()?;
    if !out.status.success() {
        bail!("dpkg-deb -f {} {field} failed", deb.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The kernel image package named in a meta package's `Depends`, e.g.
/// `linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)`.
fn image_package(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && *name != META_PACKAGE)
        .map(str::to_string)
}

fn only_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        {
            return Ok(path);
        }
    }
    bail!("no {prefix}* in {}", dir.display())
}

/// What in a kernel config keeps the suite from working, one line each.
fn config_problems(config: &str) -> Vec<String> {
    REQUIRED
        .iter()
        .filter_map(|option| {
            let value = config
                .lines()
                .find_map(|l| l.strip_prefix(option)?.strip_prefix('='))
                .unwrap_or("");
            match value {
                "y" => None,
                "m" => Some(format!("{option} is a module; the image loads no modules")),
                _ => Some(format!("{option} is not set")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_package_from_depends() {
        let cases = [
            (
                "linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)",
                Some("linux-image-6.1.0-57-cloud-amd64"),
            ),
            (
                "linux-image-6.12.9-cloud-amd64-unsigned (= 6.12.9-1) | foo",
                Some("linux-image-6.12.9-cloud-amd64-unsigned"),
            ),
            (
                "initramfs-tools, linux-image-6.1.0-9-cloud-amd64",
                Some("linux-image-6.1.0-9-cloud-amd64"),
            ),
            ("", None),
        ];
        for (depends, want) in cases {
            assert_eq!(image_package(depends).as_deref(), want, "{depends:?}");
        }
    }

    #[test]
    fn config_modules_and_gaps_are_reported() {
        let mut config: String = REQUIRED.iter().map(|o| format!("{o}=y\n")).collect();
        assert!(config_problems(&config).is_empty());

        config = config.replace("CONFIG_MEMCG=y", "CONFIG_MEMCG=m");
        config = config.replace("CONFIG_CPUSETS=y", "# CONFIG_CPUSETS is not set");
        assert_eq!(
            config_problems(&config),
            [
                "CONFIG_MEMCG is a module; the image loads no modules",
                "CONFIG_CPUSETS is not set",
            ]
        );
    }
}
