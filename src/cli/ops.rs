//! Arguments of the commands that change or run things after `create`:
//! `run`, `update`, `restore`, and the tool's own `doctor`.

use std::ffi::OsString;

use clap::Args;

use cortex_limits::manager::Change;
use cortex_limits::plan::ProfileName;

use super::{LimitOptions, RequestError};

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The profile
    pub name: String,
    /// The command and its arguments (put `--` before it if it starts with a dash)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The profile
    pub name: String,
    /// Start again from this preset instead of the stored limits
    #[arg(long)]
    pub preset: Option<String>,
    #[command(flatten)]
    pub limits: LimitOptions,
    /// Allow a memory limit below what the profile uses now (the kernel
    /// reclaims and may OOM-kill)
    #[arg(long)]
    pub force: bool,
}

/// `update`, checked.
pub struct UpdateRequest {
    pub name: ProfileName,
    pub change: Change,
}

impl UpdateArgs {
    /// Checks every value; the first bad one is the error.
    pub fn request(&self) -> Result<UpdateRequest, RequestError> {
        Ok(UpdateRequest {
            name: ProfileName::new(&self.name)?,
            change: Change {
                preset: self.preset.as_deref().map(str::parse).transpose()?,
                overrides: self.limits.overrides()?,
            },
        })
    }
}
