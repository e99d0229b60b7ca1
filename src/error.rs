//! The kinds of failure the binary turns into exit codes.

/// How a failure is classed. Each library error says which kind it is, so
/// the binary can choose an exit code without looking inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input is wrong: a bad name, size, list or number.
    BadInput,
    /// The named profile or process does not exist.
    NotFound,
    /// The request collides with what exists: a taken name, processes
    /// still inside a cgroup.
    Conflict,
    /// This host or this user cannot do it: no cgroup v2, no delegation,
    /// no permission.
    Unsupported,
    /// Anything else: I/O, the kernel refusing a value, the database.
    Failure,
}
