//! Live GPU data from NVML, where the NVIDIA management library exists.
//!
//! `libnvidia-ml.so.1` is loaded at run time (`nvml-wrapper` opens it with
//! `dlopen`), so the binary builds and runs on machines without it: the
//! library's absence is an [`NvmlError`] value, and every caller treats it
//! as "no live data". The binary is linked statically; glibc's `dlopen`
//! from a static program works only while the library's glibc matches the
//! one linked in, so a load failure there is reported the same way.

use std::ffi::OsStr;

use serde::Serialize;
use thiserror::Error;

/// The library NVML is loaded from by default.
pub const LIBRARY: &str = "libnvidia-ml.so.1";

/// Why NVML gave no data.
#[derive(Debug, Error)]
pub enum NvmlError {
    /// The library is missing or would not initialise.
    #[error("NVML is not available ({LIBRARY} could not be loaded and initialised): live GPU utilization and memory are not shown; install the NVIDIA driver's libraries to see them")]
    Unavailable {
        /// What NVML said.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
    /// NVML does not know the GPU or refused a query.
    #[error("NVML has no data for the GPU at {bus_id}")]
    Device {
        /// The PCI address asked about.
        bus_id: String,
        /// What NVML said.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
}

/// What NVML reports about one GPU now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GpuLive {
    /// The model name.
    pub model: Option<String>,
    /// Total memory, bytes.
    pub memory_total: Option<u64>,
    /// Memory in use, bytes.
    pub memory_used: Option<u64>,
    /// Percent of the last sample period a kernel ran.
    pub utilization_gpu: Option<u32>,
    /// Percent of the last sample period memory was read or written.
    pub utilization_memory: Option<u32>,
}

/// A loaded, initialised NVML.
pub struct Nvml(nvml_wrapper::Nvml);

impl Nvml {
    /// Loads [`LIBRARY`] from the loader's search path.
    pub fn load() -> Result<Nvml, NvmlError> {
        nvml_wrapper::Nvml::init()
            .map(Nvml)
            .map_err(|source| NvmlError::Unavailable { source })
    }

    /// Loads NVML from a particular file.
    pub fn load_from(path: &OsStr) -> Result<Nvml, NvmlError> {
        nvml_wrapper::Nvml::builder()
            .lib_path(path)
            .init()
            .map(Nvml)
            .map_err(|source| NvmlError::Unavailable { source })
    }

    /// The live data of the GPU at a PCI address (`0000:18:00.0`). A
    /// query NVML refuses (not supported on this GPU) is left `None`.
    pub fn live(&self, bus_id: &str) -> Result<GpuLive, NvmlError> {
        let device = self
            .0
            .device_by_pci_bus_id(bus_id)
            .map_err(|source| NvmlError::Device {
                bus_id: bus_id.to_string(),
                source,
            })?;
        let memory = device.memory_info().ok();
        let utilization = device.utilization_rates().ok();
        Ok(GpuLive {
            model: device.name().ok(),
            memory_total: memory.as_ref().map(|m| m.total),
            memory_used: memory.as_ref().map(|m| m.used),
            utilization_gpu: utilization.as_ref().map(|u| u.gpu),
            utilization_memory: utilization.as_ref().map(|u| u.memory),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_value() {
        let err = Nvml::load_from(OsStr::new("/nonexistent/libnvidia-ml.so.1"))
            .err()
            .expect("no library at that path");
        assert!(matches!(err, NvmlError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().starts_with("NVML is not available"));
    }

    /// Builds the stand-in NVML of `tests/fixtures/nvml` with the C
    /// compiler that links Rust programs here, into `dir`.
    fn stand_in(dir: &std::path::Path) -> std::path::PathBuf {
        let source = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/nvml/stand_in.c"
        );
        let lib = dir.join(LIBRARY);
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(source)
            .output()
            .expect("cc, the C compiler Rust links with, is needed to build the stand-in NVML");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lib
    }

    /// This test program is linked statically, as the binary is: glibc's
    /// dlopen loads the library, and the calls reach it.
    #[test]
    fn a_static_program_loads_nvml_and_reads_a_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let nvml = Nvml::load_from(stand_in(dir.path()).as_os_str()).expect("NVML loads");
        assert_eq!(
            nvml.live("0000:18:00.0").unwrap(),
            GpuLive {
                model: Some("Stand-in H100".into()),
                memory_total: Some(80 << 30),
                memory_used: Some(1 << 30),
                utilization_gpu: Some(37),
                utilization_memory: Some(12),
            }
        );
        let err = nvml.live("0000:2a:00.0").unwrap_err();
        assert!(
            matches!(&err, NvmlError::Device { bus_id, .. } if bus_id == "0000:2a:00.0"),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_that_is_not_the_library_is_an_error_value() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libnvidia-ml.so.1");
        std::fs::write(&fake, "not an ELF file").unwrap();
        let err = Nvml::load_from(fake.as_os_str()).err().unwrap();
        assert!(matches!(err, NvmlError::Unavailable { .. }), "{err:?}");
    }
}
