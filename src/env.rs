//! The environment a profile's processes should run with, and its
//! rendering for shells.
//!
//! cgroups limit what a process may use; these variables tell the
//! libraries inside it what that is, so a thread pool is sized to the CPU
//! quota rather than to the machine, and a framework does not grab a
//! whole GPU it shares. Only variables that the named software reads, with
//! values it accepts, are emitted.

use crate::accel::{GpuBinding, ReservedGpu, Vendor};
use crate::plan::Limits;

/// One variable, with the reason it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The name.
    pub name: &'static str,
    /// The value.
    pub value: String,
    /// Who reads it and what it changes.
    pub why: &'static str,
}

/// The thread-pool variables, each read by one library at start-up.
const THREAD_VARIABLES: [(&str, &str); 4] = [
    (
        "OMP_NUM_THREADS",
        "OpenMP runtimes (and PyTorch's intra-op pool) size their thread pool to it",
    ),
    ("MKL_NUM_THREADS", "Intel MKL sizes its thread pool to it"),
    (
        "OPENBLAS_NUM_THREADS",
        "OpenBLAS sizes its thread pool to it",
    ),
    (
        "NUMEXPR_NUM_THREADS",
        "numexpr (used by pandas) sizes its thread pool to it",
    ),
];

/// The variables for a profile that holds no GPUs, in a fixed order.
pub fn variables(limits: &Limits) -> Vec<Variable> {
    variables_with_gpus(limits, &[])
}

/// The variables for a profile holding `reserved`, in a fixed order:
/// threads, then GPU visibility for the vendors it holds GPUs of, then
/// the hints for a shared GPU.
pub fn variables_with_gpus(limits: &Limits, reserved: &[ReservedGpu]) -> Vec<Variable> {
    let mut vars = Vec::new();

    // Whole cores of the quota: more busy threads than that only queue
    // for the quota and get throttled together.
    if let Some(threads) = limits.thread_count() {
        for (name, why) in THREAD_VARIABLES {
            vars.push(Variable {
                name,
                value: threads.to_string(),
                why,
            });
        }
    }

    match limits.gpus {
        // No request: GPU visibility is left as it is.
        None => {}
        // Zero GPUs: every runtime is told it has none.
        Some(0) => {
            vars.push(Variable {
                name: "CUDA_VISIBLE_DEVICES",
                value: String::new(),
                why: "CUDA enumerates only the listed devices; empty hides every NVIDIA GPU",
            });
            vars.push(Variable {
                name: "HIP_VISIBLE_DEVICES",
                value: String::new(),
                why: "HIP enumerates only the listed devices; empty hides every AMD GPU",
            });
            vars.push(Variable {
                name: "ROCR_VISIBLE_DEVICES",
                value: String::new(),
                why: "the ROCm runtime enumerates only the listed devices; empty hides every AMD GPU",
            });
            vars.push(Variable {
                name: "ONEAPI_DEVICE_SELECTOR",
                value: "*:cpu".into(),
                why: "oneAPI/SYCL offers only the selected devices; CPU devices only hides every GPU",
            });
        }
        Some(_) => {
            if limits.gpu_binding == GpuBinding::Local {
                visibility(reserved, &mut vars);
            }
            let share = limits.gpu_share.percent();
            let nvidia = reserved.is_empty() || reserved.iter().any(|g| g.vendor == Vendor::Nvidia);
            if share < 100 && nvidia {
                vars.push(Variable {
                    name: "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
                    value: share.to_string(),
                    why: "under NVIDIA MPS, caps the share of each GPU's SMs a client may use; without an MPS daemon it has no effect",
                });
            }
            if share < 100 {
                vars.push(Variable {
                    name: "TF_FORCE_GPU_ALLOW_GROWTH",
                    value: "true".into(),
                    why: "TensorFlow allocates GPU memory as needed instead of taking all of it, so a shared GPU stays usable",
                });
                vars.push(Variable {
                    name: "XLA_PYTHON_CLIENT_MEM_FRACTION",
                    value: format!("{:.2}", f64::from(share) / 100.0),
                    why: "JAX preallocates this fraction of each GPU's memory instead of 75%",
                });
                vars.push(Variable {
                    name: "PYTORCH_CUDA_ALLOC_CONF",
                    value: format!("garbage_collection_threshold:{:.2}", f64::from(share) / 100.0),
                    why: "PyTorch's caching allocator starts returning cached blocks once usage passes this fraction of GPU memory",
                });
            }
        }
    }
    vars
}

/// The visibility variables for the reserved GPUs, vendor by vendor; a
/// vendor the profile holds no GPU of is left alone.
fn visibility(reserved: &[ReservedGpu], vars: &mut Vec<Variable>) {
    let of = |vendor| -> Vec<&ReservedGpu> {
        let mut gpus: Vec<&ReservedGpu> = reserved.iter().filter(|g| g.vendor == vendor).collect();
        gpus.sort_by_key(|g| g.vendor_index);
        gpus
    };
    let join = |items: Vec<String>| items.join(",");
    let ordinals =
        |gpus: &[&ReservedGpu]| join(gpus.iter().map(|g| g.vendor_index.to_string()).collect());
    let relative = |n: usize| join((0..n).map(|i| i.to_string()).collect());

    let nvidia = of(Vendor::Nvidia);
    if !nvidia.is_empty() {
        // UUIDs name a GPU whatever order CUDA enumerates in and whatever
        // else is hidden; indices are the fallback where the driver did not
        // say a UUID, and mean nvidia-smi's order only with PCI_BUS_ID.
        let (value, why) = if nvidia.iter().all(|g| g.uuid.is_some()) {
            (
                join(nvidia.iter().filter_map(|g| g.uuid.clone()).collect()),
                "CUDA enumerates only the reserved GPUs, named by UUID",
            )
        } else {
            (
                ordinals(&nvidia),
                "CUDA enumerates only the reserved GPUs, by PCI-order index (the driver gave no UUID)",
            )
        };
        vars.push(Variable {
            name: "CUDA_DEVICE_ORDER",
            value: "PCI_BUS_ID".into(),
            why: "CUDA numbers devices in PCI bus order, as nvidia-smi and `cortex limits gpus` do, instead of fastest first",
        });
        vars.push(Variable {
            name: "CUDA_VISIBLE_DEVICES",
            value,
            why,
        });
    }

    let amd = of(Vendor::Amd);
    if !amd.is_empty() {
        vars.push(Variable {
            name: "ROCR_VISIBLE_DEVICES",
            value: ordinals(&amd),
            why: "the ROCm runtime enumerates only the reserved GPUs, by their index in KFD topology order",
        });
        // HIP applies its list to what ROCr left visible, so its indices
        // count from 0 within the reserved GPUs.
        vars.push(Variable {
            name: "HIP_VISIBLE_DEVICES",
            value: relative(amd.len()),
            why:
                "HIP indexes the GPUs ROCR_VISIBLE_DEVICES left visible, so all of them are 0..n-1",
        });
    }

    let intel = of(Vendor::Intel);
    if !intel.is_empty() {
        vars.push(Variable {
            name: "ZE_FLAT_DEVICE_HIERARCHY",
            value: "COMPOSITE".into(),
            why: "Level Zero shows each card as one device rather than one per tile, so indices name cards",
        });
        vars.push(Variable {
            name: "ZE_ENABLE_PCI_ID_DEVICE_ORDER",
            value: "1".into(),
            why: "Level Zero numbers devices in PCI bus order, as `cortex limits gpus` does",
        });
        vars.push(Variable {
            name: "ZE_AFFINITY_MASK",
            value: ordinals(&intel),
            why: "the Level Zero loader exposes only the reserved GPUs",
        });
        // SYCL sees only what Level Zero exposes, so its ids count from 0
        // within the reserved GPUs.
        vars.push(Variable {
            name: "ONEAPI_DEVICE_SELECTOR",
            value: format!("level_zero:{}", relative(intel.len())),
            why: "oneAPI/SYCL offers only the Level Zero devices ZE_AFFINITY_MASK left, numbered 0..n-1",
        });
    }
}

/// The shells whose syntax `env` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// POSIX sh, bash and zsh.
    Posix,
    /// fish.
    Fish,
}

/// Renders variables for `eval`. Every line ends in `;` because
/// `eval $(cortex limits env NAME)` joins the lines into one.
pub fn render(vars: &[Variable], shell: Shell) -> String {
    let mut out = String::new();
    for var in vars {
        match shell {
            Shell::Posix => out.push_str(&format!(
                "export {}={};\n",
                var.name,
                quote_posix(&var.value)
            )),
            Shell::Fish => out.push_str(&format!(
                "set -gx {} {};\n",
                var.name,
                quote_fish(&var.value)
            )),
        }
    }
    out
}

/// Single-quotes a value for POSIX shells: inside single quotes nothing is
/// special, and a quote itself is closed, escaped and reopened.
pub fn quote_posix(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Single-quotes a value for fish, where `\` and `'` are escaped inside
/// single quotes.
pub fn quote_fish(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{parse_cpu, parse_cpus, GpuShare};
    use crate::preset::Preset;
    use crate::units::Limit;

    fn names_and_values(vars: &[Variable]) -> Vec<(&str, &str)> {
        vars.iter().map(|v| (v.name, v.value.as_str())).collect()
    }

    #[test]
    fn thread_counts_follow_the_quota() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("400", None, Some("4")),
            ("250", None, Some("2")),
            ("50", None, Some("1")),
            ("1600", Some("0-3"), Some("4")),
            ("max", Some("0-5"), Some("6")),
            ("max", None, None),
        ];
        for (cpu, cpus, want) in cases {
            let mut limits = Preset::Inference.limits();
            limits.cpu = parse_cpu(cpu).unwrap();
            limits.cpus = cpus.map(|c| parse_cpus(c).unwrap());
            let vars = variables(&limits);
            let got: Vec<&str> = vars
                .iter()
                .filter(|v| v.name.ends_with("_NUM_THREADS"))
                .map(|v| v.value.as_str())
                .collect();
            match want {
                Some(n) => assert_eq!(got, [*n; 4], "cpu {cpu} cpus {cpus:?}"),
                None => assert!(got.is_empty(), "cpu {cpu}: {got:?}"),
            }
        }
    }

    #[test]
    fn gpu_variables() {
        let mut limits = Preset::Inference.limits();
        assert_eq!(
            names_and_values(&variables(&limits)).len(),
            4,
            "no GPU request: only threads"
        );

        limits.gpus = Some(0);
        let vars = variables(&limits);
        assert_eq!(
            names_and_values(&vars)[4..],
            [
                ("CUDA_VISIBLE_DEVICES", ""),
                ("HIP_VISIBLE_DEVICES", ""),
                ("ROCR_VISIBLE_DEVICES", ""),
                ("ONEAPI_DEVICE_SELECTOR", "*:cpu"),
            ]
        );

        limits.gpus = Some(2);
        assert_eq!(
            variables(&limits).len(),
            4,
            "a whole GPU needs no memory hints"
        );

        limits.gpu_share = GpuShare::new(80).unwrap();
        let vars = variables(&limits);
        assert_eq!(
            names_and_values(&vars)[4..],
            [
                ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "80"),
                ("TF_FORCE_GPU_ALLOW_GROWTH", "true"),
                ("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.80"),
                (
                    "PYTORCH_CUDA_ALLOC_CONF",
                    "garbage_collection_threshold:0.80"
                ),
            ]
        );
    }

    #[test]
    fn reserved_gpus_by_vendor() {
        use crate::accel::{ReservedGpu, Vendor};
        let gpu = |vendor, vendor_index, uuid: Option<&str>| ReservedGpu {
            bus_id: format!("0000:{vendor_index:02x}:00.0"),
            index: vendor_index,
            vendor,
            vendor_index,
            uuid: uuid.map(str::to_string),
            share: 100,
        };
        let mut limits = Preset::Inference.limits();
        limits.cpu = Limit::Max;
        limits.gpus = Some(2);
        // (name, reserved, variables)
        type Case = (
            &'static str,
            Vec<ReservedGpu>,
            Vec<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "NVIDIA without UUIDs: PCI-order indices",
                vec![gpu(Vendor::Nvidia, 1, None), gpu(Vendor::Nvidia, 3, None)],
                vec![
                    ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
                    ("CUDA_VISIBLE_DEVICES", "1,3"),
                ],
            ),
            (
                "NVIDIA with one UUID missing: indices for all",
                vec![
                    gpu(Vendor::Nvidia, 0, Some("GPU-a")),
                    gpu(Vendor::Nvidia, 1, None),
                ],
                vec![
                    ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
                    ("CUDA_VISIBLE_DEVICES", "0,1"),
                ],
            ),
            (
                "AMD in vendor order, whatever order they were stored in",
                vec![gpu(Vendor::Amd, 3, None), gpu(Vendor::Amd, 1, None)],
                vec![
                    ("ROCR_VISIBLE_DEVICES", "1,3"),
                    ("HIP_VISIBLE_DEVICES", "0,1"),
                ],
            ),
            (
                "two vendors: each gets its own",
                vec![
                    gpu(Vendor::Intel, 0, None),
                    gpu(Vendor::Nvidia, 0, Some("GPU-x")),
                ],
                vec![
                    ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
                    ("CUDA_VISIBLE_DEVICES", "GPU-x"),
                    ("ZE_FLAT_DEVICE_HIERARCHY", "COMPOSITE"),
                    ("ZE_ENABLE_PCI_ID_DEVICE_ORDER", "1"),
                    ("ZE_AFFINITY_MASK", "0"),
                    ("ONEAPI_DEVICE_SELECTOR", "level_zero:0"),
                ],
            ),
        ];
        for (name, reserved, want) in cases {
            let vars = variables_with_gpus(&limits, &reserved);
            assert_eq!(names_and_values(&vars), want, "{name}");
        }

        limits.gpu_binding = crate::accel::GpuBinding::ExportOnly;
        let reserved = vec![gpu(Vendor::Nvidia, 0, Some("GPU-x"))];
        assert_eq!(
            variables_with_gpus(&limits, &reserved),
            vec![],
            "export-only names no GPU"
        );
    }

    #[test]
    fn no_variable_the_frameworks_do_not_read() {
        let mut limits = Preset::Batch.limits();
        limits.gpus = Some(1);
        limits.memory_max = Limit::Max;
        for var in variables(&limits) {
            assert_ne!(var.name, "TF_MEMORY_ALLOCATION", "not read by TensorFlow");
            assert!(!var.why.is_empty(), "{} says why", var.name);
        }
    }

    #[test]
    fn rendering_quotes_values() {
        let vars = [
            Variable {
                name: "A",
                value: "4".into(),
                why: "",
            },
            Variable {
                name: "B",
                value: String::new(),
                why: "",
            },
            Variable {
                name: "C",
                value: r"it's \ odd".into(),
                why: "",
            },
        ];
        assert_eq!(
            render(&vars, Shell::Posix),
            "export A='4';\nexport B='';\nexport C='it'\\''s \\ odd';\n"
        );
        assert_eq!(
            render(&vars, Shell::Fish),
            "set -gx A '4';\nset -gx B '';\nset -gx C 'it\\'s \\\\ odd';\n"
        );
    }

    #[test]
    fn posix_output_evaluates_in_a_real_shell() {
        let vars = [
            Variable {
                name: "X_ONE",
                value: "a 'quoted' $HOME `x` value".into(),
                why: "",
            },
            Variable {
                name: "X_TWO",
                value: String::new(),
                why: "",
            },
        ];
        let script = format!(
            "eval $(cat <<'EOF'\n{}EOF\n); printf '%s|%s|%s' \"$X_ONE\" \"${{X_TWO-unset}}\" \"${{#X_TWO}}\"",
            render(&vars, Shell::Posix)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "a 'quoted' $HOME `x` value||0",
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
