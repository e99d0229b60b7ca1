//! Order statistics of the benchmark samples.

/// The median and spread of one series of wall times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub runs: usize,
    /// The 10th percentile.
    pub p10: f64,
    /// The median.
    pub median: f64,
    /// The 90th percentile.
    pub p90: f64,
}

impl Summary {
    /// Summarises `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            runs: sorted.len(),
            p10: percentile(&sorted, 0.1),
            median: percentile(&sorted, 0.5),
            p90: percentile(&sorted, 0.9),
        })
    }
}

/// The nearest-rank percentile of sorted values (`p` in 0..=1); the
/// median of an even count is the mean of the middle two, so that it does
/// not lean to either side.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n.is_multiple_of(2) && p == 0.5 {
        return (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
    }
    let rank = ((n - 1) as f64 * p).round() as usize;
    sorted[rank]
}

/// Cost per profile between two store sizes, from the medians: how the
/// time grows as profiles are added, with start-up cost taken out.
pub fn per_item(small: (usize, f64), large: (usize, f64)) -> f64 {
    (large.1 - small.1) / (large.0 - small.0) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        type Case<'a> = (&'a str, &'a [f64], Option<(f64, f64, f64)>);
        let cases: [Case; 5] = [
            ("empty", &[], None),
            ("one", &[3.0], Some((3.0, 3.0, 3.0))),
            ("odd, unsorted", &[5.0, 1.0, 3.0], Some((1.0, 3.0, 5.0))),
            (
                "even: mean of the middle two",
                &[4.0, 1.0, 2.0, 3.0],
                Some((1.0, 2.5, 4.0)),
            ),
            (
                "ten values",
                &[10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
                Some((2.0, 5.5, 9.0)),
            ),
        ];
        for (name, values, want) in cases {
            let got = Summary::of(values).map(|s| (s.p10, s.median, s.p90));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn growth_per_profile() {
        assert_eq!(per_item((1_000, 7.0), (10_000, 70.0)), 0.007);
        assert_eq!(per_item((1, 2.0), (1_001, 2.0)), 0.0);
    }
}
