//! Reading the standard Rust test harness's output, and adding up results.

use std::collections::BTreeSet;
use std::fmt;

/// The reason the real-kernel tests give for being ignored on the host;
/// such a test is not skipped when the VM suite runs it next.
pub const VM_REASON: &str = "run with cargo xtask vm-test";

/// The outcome of one test, as the harness prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `ok`
    Passed,
    /// `FAILED`
    Failed,
    /// `ignored`, with or without a reason
    Ignored,
    /// `ignored` because it runs in the VM (the reason ends in
    /// [`VM_REASON`])
    Deferred,
}

/// Passed, failed and skipped counts, with the names of what failed.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed, plus runs that failed without naming a test.
    pub failed: u32,
    /// Tests that were ignored.
    pub skipped: u32,
    /// One line for each failure, for the closing report.
    pub failures: Vec<String>,
    /// Tests left for the VM suite, by name.
    pub deferred: BTreeSet<String>,
    /// Tests that ran, passed or failed, by name (without the run's prefix).
    pub ran: BTreeSet<String>,
}

impl Tally {
    /// Counts one outcome of the test `name`, reported as `label` when it
    /// fails.
    pub fn record(&mut self, label: &str, name: &str, outcome: Outcome) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Ignored => self.skipped += 1,
            Outcome::Deferred => {
                self.deferred.insert(name.to_string());
            }
            Outcome::Failed => {
                self.failed += 1;
                self.failures.push(label.to_string());
            }
        }
        if matches!(outcome, Outcome::Passed | Outcome::Failed) {
            self.ran.insert(name.to_string());
        }
    }

    /// Counts a failure that is not one test's (a build, a boot, a hang).
    pub fn fail(&mut self, why: String) {
        self.failed += 1;
        self.failures.push(why);
    }

    /// Adds another tally into this one.
    pub fn absorb(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
        self.deferred.extend(other.deferred);
        self.ran.extend(other.ran);
    }

    /// Counts as skipped every deferred test that no run has run, so that
    /// a test the VM suite missed (a module no boot mode selects, a mode
    /// left out) is not lost between the two.
    pub fn settle(&mut self) {
        let missed = self.deferred.difference(&self.ran).count();
        self.skipped += u32::try_from(missed).unwrap_or(u32::MAX);
        self.deferred.clear();
    }
}

impl fmt::Display for Tally {
    /// The closing line CI reads: `N passed, N failed, N skipped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Reads a line such as `test v2::create ... ok` into the test's name and
/// outcome.
pub fn test_line(line: &str) -> Option<(&str, Outcome)> {
    let rest = line.trim_end().strip_prefix("test ")?;
    let (name, verdict) = rest.split_once(" ... ")?;
    let outcome = match verdict {
        "ok" => Outcome::Passed,
        "FAILED" => Outcome::Failed,
        v if v.starts_with("ignored, ") && v.ends_with(VM_REASON) => Outcome::Deferred,
        v if v == "ignored" || v.starts_with("ignored, ") => Outcome::Ignored,
        _ => return None,
    };
    Some((name, outcome))
}

/// Reads the name of a test the harness started but has not finished,
/// from an unterminated line such as `test v2::cpu_quota ... `.
pub fn started_test(partial: &str) -> Option<&str> {
    partial
        .strip_prefix("test ")?
        .strip_suffix(" ...")
        .or_else(|| partial.strip_prefix("test ")?.strip_suffix(" ... "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lines() {
        let cases = [
            (
                "test v2::create ... ok",
                Some(("v2::create", Outcome::Passed)),
            ),
            ("test a::b ... FAILED\r", Some(("a::b", Outcome::Failed))),
            ("test k ... ignored", Some(("k", Outcome::Ignored))),
            (
                "test k ... ignored, needs a real kernel",
                Some(("k", Outcome::Ignored)),
            ),
            (
                "test v2::k ... ignored, needs a real cgroup v2 kernel: run with cargo xtask vm-test",
                Some(("v2::k", Outcome::Deferred)),
            ),
            ("test k ... bench:  10 ns/iter", None),
            ("running 3 tests", None),
            ("test result: ok. 1 passed; 0 failed", None),
        ];
        for (line, want) in cases {
            assert_eq!(test_line(line), want, "{line:?}");
        }
    }

    #[test]
    fn started_tests() {
        assert_eq!(started_test("test v2::cpu ... "), Some("v2::cpu"));
        assert_eq!(started_test("test v2::cpu ..."), Some("v2::cpu"));
        assert_eq!(started_test("running 1 test"), None);
    }

    #[test]
    fn closing_line() {
        let mut t = Tally::default();
        t.record("a", "a", Outcome::Passed);
        t.record("host: b", "b", Outcome::Failed);
        t.fail("vm plain: timed out".into());
        t.record("c", "c", Outcome::Ignored);
        assert_eq!(t.to_string(), "1 passed, 2 failed, 1 skipped");
        assert_eq!(t.failures, ["host: b", "vm plain: timed out"]);
    }

    #[test]
    fn deferred_tests_count_once_where_they_ran() {
        let mut host = Tally::default();
        host.record("host: u", "u", Outcome::Passed);
        host.record("host: v2::a", "v2::a", Outcome::Deferred);
        host.record("host: v2::b", "v2::b", Outcome::Deferred);
        host.record("host: v2::c", "v2::c", Outcome::Deferred);
        let mut vm = Tally::default();
        vm.record("vm plain: v2::a", "v2::a", Outcome::Passed);
        vm.record("vm plain: v2::b", "v2::b", Outcome::Failed);
        host.absorb(vm);
        host.settle();
        // v2::c ran nowhere: skipped, not silently dropped.
        assert_eq!(host.to_string(), "2 passed, 1 failed, 1 skipped");
    }
}
