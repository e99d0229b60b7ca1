//! CPU lists in the kernel's list format (`0-3,8,10-11`), as users write
//! them for `--cpus` and as sysfs and cgroupfs print them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The highest CPU number accepted. Linux builds allow at most 8192 CPUs
/// (`CONFIG_NR_CPUS`), so anything above is a typo, and the bound keeps a
/// range such as `0-4000000000` from allocating a huge set.
pub const MAX_CPU: u32 = 8191;

/// A set of CPU numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(BTreeSet<u32>);

/// Why a CPU list was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpuListError {
    /// A part of the list is not a number or a range.
    #[error("'{list}' is not a CPU list: '{part}' should be a CPU number or a range such as 0-3")]
    Invalid {
        /// The whole list.
        list: String,
        /// The part that failed.
        part: String,
    },
    /// A range runs backwards.
    #[error("'{list}' is not a CPU list: the range '{part}' runs backwards")]
    Backwards {
        /// The whole list.
        list: String,
        /// The part that failed.
        part: String,
    },
    /// A CPU number is above [`MAX_CPU`].
    #[error("'{list}' names CPU {cpu}, above the highest CPU Linux supports ({MAX_CPU})")]
    TooHigh {
        /// The whole list.
        list: String,
        /// The number that is too high.
        cpu: u64,
    },
}

impl CpuSet {
    /// Parses a list such as `0-3,8`. Blanks and a trailing newline (as
    /// sysfs prints) are ignored; an empty text is the empty set.
    pub fn parse(text: &str) -> Result<CpuSet, CpuListError> {
        let list = text.trim();
        let mut cpus = BTreeSet::new();
        if list.is_empty() {
            return Ok(CpuSet(cpus));
        }
        for part in list.split(',') {
            let part = part.trim();
            let invalid = || CpuListError::Invalid {
                list: list.to_string(),
                part: part.to_string(),
            };
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (number(a.trim()), number(b.trim())),
                None => (number(part), number(part)),
            };
            let (first, last) = (first.ok_or_else(invalid)?, last.ok_or_else(invalid)?);
            if first > last {
                return Err(CpuListError::Backwards {
                    list: list.to_string(),
                    part: part.to_string(),
                });
            }
            if last > u64::from(MAX_CPU) {
                return Err(CpuListError::TooHigh {
                    list: list.to_string(),
                    cpu: last,
                });
            }
            // Both bounds are at most MAX_CPU here, so they fit in u32.
            cpus.extend(first as u32..=last as u32);
        }
        Ok(CpuSet(cpus))
    }

    /// The number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// Whether every CPU of `self` is also in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuSet(iter.into_iter().collect())
    }
}

impl FromStr for CpuSet {
    type Err = CpuListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuSet::parse(s)
    }
}

impl fmt::Display for CpuSet {
    /// The canonical list: sorted, runs of two or more joined as ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cpus = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end += 1;
                cpus.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[u32]) -> CpuSet {
        cpus.iter().copied().collect()
    }

    #[test]
    fn parses_lists() {
        let cases: &[(&str, &str, &[u32])] = &[
            ("single", "3", &[3]),
            ("range", "0-3", &[0, 1, 2, 3]),
            ("range and single", "0-3,8", &[0, 1, 2, 3, 8]),
            ("sysfs newline", "0-1\n", &[0, 1]),
            ("blanks", " 1 , 4 - 5 ", &[1, 4, 5]),
            ("overlap", "0-2,1-3", &[0, 1, 2, 3]),
            ("one-cpu range", "5-5", &[5]),
            ("empty", "", &[]),
            ("highest", "8191", &[8191]),
        ];
        for (label, input, want) in cases {
            assert_eq!(CpuSet::parse(input), Ok(set(want)), "{label}: {input:?}");
        }
    }

    #[test]
    fn refuses_bad_lists() {
        let invalid = |list: &str, part: &str| CpuListError::Invalid {
            list: list.into(),
            part: part.into(),
        };
        let cases: &[(&str, &str, CpuListError)] = &[
            ("letters", "a-b", invalid("a-b", "a-b")),
            ("trailing comma", "1,", invalid("1,", "")),
            ("negative", "-1", invalid("-1", "-1")),
            ("half range", "3-", invalid("3-", "3-")),
            ("plus sign", "+3", invalid("+3", "+3")),
            (
                "backwards",
                "4-2",
                CpuListError::Backwards {
                    list: "4-2".into(),
                    part: "4-2".into(),
                },
            ),
            (
                "too high",
                "0-4000000000",
                CpuListError::TooHigh {
                    list: "0-4000000000".into(),
                    cpu: 4_000_000_000,
                },
            ),
            (
                "beyond u64",
                "99999999999999999999999",
                invalid("99999999999999999999999", "99999999999999999999999"),
            ),
        ];
        for (label, input, want) in cases {
            assert_eq!(&CpuSet::parse(input).unwrap_err(), want, "{label}");
        }
    }

    #[test]
    fn prints_canonical_lists() {
        let cases: &[(&[u32], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[0, 1], "0-1"),
            (&[0, 1, 2, 3, 8], "0-3,8"),
            (&[1, 3, 5], "1,3,5"),
            (&[0, 1, 2, 4, 5, 6, 7, 9], "0-2,4-7,9"),
        ];
        for (cpus, want) in cases {
            let shown = set(cpus).to_string();
            assert_eq!(&shown, want);
            assert_eq!(CpuSet::parse(&shown), Ok(set(cpus)), "round trip");
        }
    }
}
