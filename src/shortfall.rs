//! What could not be enforced, why, and how to fix it.
//!
//! An operation that succeeds in part reports its shortfalls instead of
//! failing: the profile is stored and what the host allows is enforced,
//! and the user is told plainly about the rest. Nothing is silently
//! dropped and nothing is reported as done that was not.

use std::fmt;

/// One limit or setting that is not in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// What is not enforced, e.g. `cpuset.cpus` or `oom_score_adj -500`.
    pub what: String,
    /// Why not.
    pub why: String,
    /// How to make it work, where there is a way.
    pub fix: Option<String>,
}

impl Shortfall {
    /// A shortfall with no known fix.
    pub fn new(what: impl Into<String>, why: impl Into<String>) -> Shortfall {
        Shortfall {
            what: what.into(),
            why: why.into(),
            fix: None,
        }
    }

    /// Adds how to fix it.
    pub fn fix(mut self, fix: impl Into<String>) -> Shortfall {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} not enforced: {}", self.what, self.why)?;
        if let Some(fix) = &self.fix {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}
