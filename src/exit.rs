//! Exit codes: what a script can tell from `$?`.

use std::process::ExitCode;

use cortex_limits::error::ErrorKind;

/// Every exit code the binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done, and everything asked for is in force.
    Ok,
    /// A failure: I/O, the kernel refused a value, the database.
    Failure,
    /// Bad input or usage: nothing was changed.
    Usage,
    /// The profile or process does not exist.
    NotFound,
    /// A taken name, or processes still inside without --force.
    Conflict,
    /// Done, but some limits are not enforced; the warnings say which.
    Partial,
    /// Not possible on this host or for this user: no cgroup v2, no
    /// delegated subtree, no permission.
    Unsupported,
    /// `run` could not start the command: 126 (not executable) or 127
    /// (not found), as shells report it.
    Command(u8),
}

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done; everything asked for is in force
  1  failure: I/O, the kernel refused a value, the database
  2  bad input or usage; nothing was changed
  3  no such profile or process
  4  conflict: the name is taken, or processes are still inside (use --force)
  5  partly done: stored or applied, but some limits are not enforced here
     (each is named in a warning on stderr)
  6  not possible here: no cgroup v2, no delegated subtree, or no permission
`run` exits with the command's own status once the command has started,
127 when it is not found and 126 when it cannot be executed.";

impl From<ErrorKind> for Exit {
    fn from(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::BadInput => Exit::Usage,
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::Conflict => Exit::Conflict,
            ErrorKind::Unsupported => Exit::Unsupported,
            ErrorKind::Failure => Exit::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(match exit {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
            Exit::Conflict => 4,
            Exit::Partial => 5,
            Exit::Unsupported => 6,
            Exit::Command(status) => status,
        })
    }
}
