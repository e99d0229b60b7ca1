//! Memory sizes and the "no limit" value, as the user writes them and as
//! the kernel reads them.
//!
//! A bare number is GiB (`--memory 32` is 32 GiB, as the original tool
//! read it); suffixes are binary (`512M` is 512 MiB), the way systemd and
//! docker read them. `max` is spelled out rather than encoded as a magic
//! number.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The page size the kernel rounds memory limits to. Writing a limit that
/// is not a multiple of it reads back rounded down, so sizes are rounded
/// here first and the stored value is the one the kernel will hold.
pub const PAGE_SIZE: u64 = 4096;

const GIB: u64 = 1 << 30;

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

/// A limit that is either a value or the kernel's `max` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit<T> {
    /// No limit: the kernel file reads `max`.
    Max,
    /// A limit of this value.
    Value(T),
}

/// Why a size was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SizeError {
    /// The text is not a size at all.
    #[error(
        "'{0}' is not a size: use a number of GiB (32), a number with a unit (512M, 1.5T), or max"
    )]
    Invalid(String),
    /// The size does not fit in 64 bits.
    #[error("'{0}' is too large: it does not fit in 64 bits of bytes")]
    Overflow(String),
    /// The size is zero or rounds down to less than one page.
    #[error("'{0}' is too small: a memory limit must be at least {PAGE_SIZE} bytes")]
    TooSmall(String),
}

impl Bytes {
    /// The size rounded down to a whole number of pages.
    pub fn page_aligned(self) -> Bytes {
        Bytes(self.0 - self.0 % PAGE_SIZE)
    }
}

impl fmt::Display for Bytes {
    /// Shows the largest binary unit that divides the size exactly, so the
    /// text reads back as the same number of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 5] = [
            (1 << 50, "P"),
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (size, suffix) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{}", self.0 / size, suffix);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<T: fmt::Display> fmt::Display for Limit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Max => f.write_str("max"),
            Limit::Value(v) => v.fmt(f),
        }
    }
}

impl<T> Limit<T> {
    /// The value, or `None` for `max`.
    pub fn value(&self) -> Option<&T> {
        match self {
            Limit::Max => None,
            Limit::Value(v) => Some(v),
        }
    }

    /// `Max` for `None`, otherwise the value.
    pub fn from_option(value: Option<T>) -> Self {
        value.map_or(Limit::Max, Limit::Value)
    }
}

/// Parses a memory size as a user writes it: `32` (GiB), `512M`, `1.5T`,
/// `64K`, `100B` or `max`. The result is rounded down to whole pages.
pub fn parse_memory(text: &str) -> Result<Limit<Bytes>, SizeError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("max") {
        return Ok(Limit::Max);
    }
    if text.starts_with('-') || text.starts_with('+') {
        return Err(SizeError::Invalid(text.to_string()));
    }
    let parser = parse_size::Config::new()
        .with_binary()
        .with_default_factor(GIB);
    let bytes = parser.parse_size(text).map_err(|e| match e {
        parse_size::Error::PosOverflow => SizeError::Overflow(text.to_string()),
        _ => SizeError::Invalid(text.to_string()),
    })?;
    let aligned = Bytes(bytes).page_aligned();
    if aligned.0 == 0 {
        return Err(SizeError::TooSmall(text.to_string()));
    }
    Ok(Limit::Value(aligned))
}

impl FromStr for Limit<Bytes> {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_memory(s)
    }
}

/// Parses the kernel's reading of a byte limit (`memory.max`,
/// `memory.high`): `max` or a decimal number.
pub fn parse_kernel_limit(text: &str) -> Option<Limit<Bytes>> {
    match text.trim() {
        "max" => Some(Limit::Max),
        n => n.parse().ok().map(|n| Limit::Value(Bytes(n))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn memory_sizes() {
        type Case = (&'static str, &'static str, Result<Limit<Bytes>, SizeError>);
        let cases: &[Case] = &[
            (
                "bare number is GiB",
                "32",
                Ok(Limit::Value(Bytes(32 * GIB))),
            ),
            ("G suffix", "32G", Ok(Limit::Value(Bytes(32 * GIB)))),
            ("GiB suffix", "32GiB", Ok(Limit::Value(Bytes(32 * GIB)))),
            (
                "GB is binary too",
                "32GB",
                Ok(Limit::Value(Bytes(32 * GIB))),
            ),
            ("lower-case m", "512m", Ok(Limit::Value(Bytes(512 * MIB)))),
            ("fraction of T", "1.5T", Ok(Limit::Value(Bytes(1536 * GIB)))),
            (
                "fraction of bare GiB",
                "0.5",
                Ok(Limit::Value(Bytes(512 * MIB))),
            ),
            ("K suffix", "64K", Ok(Limit::Value(Bytes(64 << 10)))),
            ("rounded to pages", "5000B", Ok(Limit::Value(Bytes(4096)))),
            ("max", "max", Ok(Limit::Max)),
            ("MAX", "MAX", Ok(Limit::Max)),
            (
                "surrounding blanks",
                " 2G ",
                Ok(Limit::Value(Bytes(2 * GIB))),
            ),
            ("zero", "0", Err(SizeError::TooSmall("0".into()))),
            ("zero bytes", "0B", Err(SizeError::TooSmall("0B".into()))),
            (
                "under a page",
                "100B",
                Err(SizeError::TooSmall("100B".into())),
            ),
            ("negative", "-1G", Err(SizeError::Invalid("-1G".into()))),
            ("garbage", "lots", Err(SizeError::Invalid("lots".into()))),
            ("empty", "", Err(SizeError::Invalid("".into()))),
            ("unknown unit", "3Q", Err(SizeError::Invalid("3Q".into()))),
            (
                "overflow",
                "99999999999999999999",
                Err(SizeError::Overflow("99999999999999999999".into())),
            ),
            (
                "overflow by unit",
                "20E",
                Err(SizeError::Overflow("20E".into())),
            ),
        ];
        for (label, input, want) in cases {
            assert_eq!(&parse_memory(input), want, "{label}: {input:?}");
        }
    }

    #[test]
    fn byte_display_reads_back_exactly() {
        let cases = [
            (32 * GIB, "32G"),
            (28 * GIB, "28G"),
            (1536 * GIB, "1536G"),
            (512 * MIB, "512M"),
            (1 << 40, "1T"),
            (4096, "4K"),
            (4095, "4095B"),
            (0, "0B"),
        ];
        for (bytes, want) in cases {
            let shown = Bytes(bytes).to_string();
            assert_eq!(shown, want);
            if bytes >= PAGE_SIZE && bytes % PAGE_SIZE == 0 {
                assert_eq!(parse_memory(&shown), Ok(Limit::Value(Bytes(bytes))));
            }
        }
    }

    #[test]
    fn kernel_limits() {
        assert_eq!(parse_kernel_limit("max\n"), Some(Limit::Max));
        assert_eq!(
            parse_kernel_limit("34359738368\n"),
            Some(Limit::Value(Bytes(32 * GIB)))
        );
        assert_eq!(parse_kernel_limit("32G"), None);
    }
}
