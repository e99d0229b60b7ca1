//! The command line as the user types it, and its conversion into checked
//! requests. Options arrive as text and are validated here, so every bad
//! value gets the same one-line error and exit code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use cortex_limits::env::Shell;
use cortex_limits::plan::{
    parse_cpu, parse_cpus, parse_gpu_ids, parse_gpus, GpuBinding, Overrides, PlanError, ProfileName,
};
use cortex_limits::preset::Preset;
use cortex_limits::units::parse_memory;

use crate::exit::EXIT_CODES_HELP;

mod ops;

pub use ops::{RunArgs, UpdateArgs};

/// Resource profiles for AI workloads: CPU, memory and GPU limits enforced
/// by cgroup v2, and the environment that tells frameworks about them.
#[derive(Debug, Parser)]
#[command(name = "cortex", version, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: TopCommand,

    #[command(flatten)]
    pub global: Global,
}

/// Options every command takes, before or after the subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// The profile database [default: /var/lib/cortex/limits.db for root,
    /// $XDG_STATE_HOME/cortex/limits.db (~/.local/state) for other users]
    #[arg(long, global = true, env = "CORTEX_LIMITS_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Where cgroup2 is mounted
    #[arg(
        long,
        global = true,
        env = "CORTEX_CGROUP_ROOT",
        value_name = "PATH",
        default_value = "/sys/fs/cgroup"
    )]
    pub cgroup_root: PathBuf,

    /// Where procfs is mounted
    #[arg(
        long,
        global = true,
        env = "CORTEX_PROC_ROOT",
        value_name = "PATH",
        default_value = "/proc"
    )]
    pub proc_root: PathBuf,

    /// Where GPU discovery reads sys/, proc/driver/nvidia/ and dev/ from
    #[arg(
        long,
        global = true,
        env = "CORTEX_ACCEL_ROOT",
        value_name = "PATH",
        default_value = "/"
    )]
    pub accel_root: PathBuf,

    /// Print debug logs on stderr (-vv for more); RUST_LOG works too
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The tool's command groups.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Put AI workloads under named resource profiles
    #[command(after_long_help = EXIT_CODES_HELP)]
    Limits {
        #[command(subcommand)]
        command: Box<LimitsCommand>,
    },
    /// Print shell completions: cortex completions bash > /etc/bash_completion.d/cortex
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): cortex man > /usr/local/share/man/man1/cortex.1
    Man,
}

/// The `cortex limits` commands.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Create a profile from a preset with overrides, and its cgroup
    #[command(after_long_help = CREATE_HELP)]
    Create(CreateArgs),
    /// Move a running process, all its threads, under a profile
    Apply(ApplyArgs),
    /// Print a profile's environment variables for `eval`
    #[command(after_long_help = ENV_HELP)]
    Env(EnvArgs),
    /// Show profiles with their live cgroup state
    Status(StatusArgs),
    /// List the stored profiles
    List(JsonArgs),
    /// Show the workload presets
    Presets(JsonArgs),
    /// Delete a profile and its cgroup
    Delete(DeleteArgs),
    /// List the machine's GPUs and the profiles holding each
    Gpus(JsonArgs),
    /// Run a command under a profile: cgroup, OOM priority, environment
    #[command(after_long_help = RUN_HELP)]
    Run(RunArgs),
    /// Change a profile's limits, stored and live, with the options of create
    Update(UpdateArgs),
    /// Re-create every stored profile's cgroup (after a reboot)
    Restore,
    /// Check this host: cgroup v2, controllers, delegation, BPF, GPUs, database
    Doctor(JsonArgs),
}

const RUN_HELP: &str = "\
The command replaces cortex (exec), so no extra process stays behind and its
exit status is the one returned. A command that cannot be found exits 127;
one that cannot be executed, 126. If cortex fails before starting it, it
exits with its own codes (below) and a `cortex: error:` line.

Example:
  cortex limits run inference-job -- python serve.py --port 8000";

const CREATE_HELP: &str = "\
Sizes: a bare number is GiB (--memory 32 is 32 GiB); units are binary
(512M, 1.5T, 64K); max means no limit. Sizes are rounded down to 4 KiB pages.
CPU: --cpu is a percentage of one core: 100 = one core, 50 = half a core,
250 = two and a half; max means no quota.
--memory without --memory-high sets the soft limit to 7/8 of the hard one.

Examples:
  cortex limits create inference-job --preset inference --gpus 2
  cortex limits create notebook --preset interactive --cpu 150 --memory 8G
  cortex limits create pinned --cpus 0-3,8 --cpu-weight 500";

const ENV_HELP: &str = "\
Use it as:  eval \"$(cortex limits env NAME)\"    (bash, zsh)
            cortex limits env NAME --shell fish | source
Thread pools (OMP/MKL/OpenBLAS/numexpr) get floor(CPU quota) threads, at
least 1; GPU variables follow the profile's GPU request. See the README for
every variable and why it is set.";

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The profile name: letters, digits, '_', '.', '-'; starts with a letter or digit; at most 64
    pub name: String,
    /// Workload preset: inference, training, batch or interactive
    #[arg(long, default_value = "inference")]
    pub preset: String,
    #[command(flatten)]
    pub limits: LimitOptions,
}

/// The limit options, shared by every command that sets limits.
#[derive(Debug, Args)]
pub struct LimitOptions {
    /// Number of GPUs to ask for (0 hides all GPUs)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub gpus: Option<String>,
    /// Share of each GPU in percent, 1-100 [default: from the preset]
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub gpu_share: Option<String>,
    /// Particular GPUs: indices, UUIDs or PCI addresses, e.g. 0,3 (see `cortex limits gpus`)
    #[arg(long, value_name = "IDS", allow_hyphen_values = true)]
    pub gpu_ids: Option<String>,
    /// Keep the GPU count for another machine (export) without reserving GPUs here
    #[arg(long)]
    pub gpus_export_only: bool,
    /// CPU quota in percent of one core (100 = 1 core), or max
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub cpu: Option<String>,
    /// CPUs to run on, e.g. 0-3,8 [default: all]
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU weight under contention, 1-10000 (kernel default 100)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpu_weight: Option<String>,
    /// Hard memory limit (memory.max): 32 (GiB), 512M, 1.5T or max
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Soft memory limit (memory.high), where throttling starts
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_high: Option<String>,
    /// OOM score adjustment, -1000 (never killed) to 1000 (killed first)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub oom_adj: Option<String>,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The profile
    pub name: String,
    /// The process to move; all its threads go with it
    #[arg(long, allow_hyphen_values = true)]
    pub pid: String,
}

/// The shells `env` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    /// POSIX sh, bash and zsh
    Sh,
    /// bash (same as sh)
    Bash,
    /// zsh (same as sh)
    Zsh,
    /// fish
    Fish,
}

/// `env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The profile
    pub name: String,
    /// The shell syntax to print
    #[arg(long, value_enum, default_value = "sh")]
    pub shell: ShellArg,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The profile [default: every profile, one line each]
    pub name: Option<String>,
    /// Print JSON (schema in the README); with --watch, one line per refresh
    #[arg(long)]
    pub json: bool,
    /// Redraw every SECONDS (default 2) until interrupted
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
}

/// Commands whose only option is `--json`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON (schema in the README)
    #[arg(long)]
    pub json: bool,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The profile
    pub name: String,
    /// Kill the processes inside (cgroup.kill) instead of refusing
    #[arg(long)]
    pub force: bool,
}

/// A bad value that is not a plan error.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A value the plan refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// `--pid` is not a pid.
    #[error("invalid pid '{0}': use a process id, a whole number above 0 (see ps)")]
    Pid(String),
}

/// `create`, checked.
pub struct CreateRequest {
    pub name: ProfileName,
    pub preset: Preset,
    pub overrides: Overrides,
}

impl CreateArgs {
    /// Checks every value; the first bad one is the error.
    pub fn request(&self) -> Result<CreateRequest, RequestError> {
        Ok(CreateRequest {
            name: ProfileName::new(&self.name)?,
            preset: self.preset.parse()?,
            overrides: self.limits.overrides()?,
        })
    }
}

impl LimitOptions {
    /// The options given, checked; `None` fields were not given.
    pub fn overrides(&self) -> Result<Overrides, RequestError> {
        Ok(Overrides {
            cpu: opt(&self.cpu).map(parse_cpu).transpose()?,
            cpu_weight: opt(&self.cpu_weight).map(str::parse).transpose()?,
            cpus: opt(&self.cpus).map(parse_cpus).transpose()?,
            memory_max: opt(&self.memory)
                .map(parse_memory)
                .transpose()
                .map_err(PlanError::from)?,
            memory_high: opt(&self.memory_high)
                .map(parse_memory)
                .transpose()
                .map_err(PlanError::from)?,
            oom_score_adj: opt(&self.oom_adj).map(str::parse).transpose()?,
            gpus: opt(&self.gpus).map(parse_gpus).transpose()?,
            gpu_share: opt(&self.gpu_share).map(str::parse).transpose()?,
            gpu_ids: opt(&self.gpu_ids).map(parse_gpu_ids).transpose()?,
            gpu_binding: self.gpus_export_only.then_some(GpuBinding::ExportOnly),
        })
    }
}

fn opt(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim)
}

/// Parses `--pid`.
pub fn parse_pid(text: &str) -> Result<u32, RequestError> {
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(RequestError::Pid(text.to_string())),
    }
}

impl ShellArg {
    /// The syntax to render.
    pub fn shell(self) -> Shell {
        match self {
            ShellArg::Sh | ShellArg::Bash | ShellArg::Zsh => Shell::Posix,
            ShellArg::Fish => Shell::Fish,
        }
    }
}
