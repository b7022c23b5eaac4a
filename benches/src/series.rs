//! The values one side of a comparison produced over its rounds, and the
//! summaries the report shows (median, spread, percentiles).

/// Values measured round after round, or the error that stopped them.
/// After the first error no further rounds are attempted for this series.
#[derive(Debug, Default)]
pub(crate) struct Series {
    values: Vec<f64>,
    error: Option<String>,
    /// Why the series was never measured (a baseline that is not built in).
    unavailable: Option<String>,
    /// How the value was obtained, when it is not a median of rounds.
    detail: Option<String>,
    /// For latencies pooled from every round: `(percentile, value)` at
    /// each of [`PLOTTED`], for the report's plot.
    percentiles: Vec<(f64, f64)>,
}

/// The percentiles of a latency series the HTML report plots.
pub(crate) const PLOTTED: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

impl Series {
    /// A series that will not be measured, and why.
    pub(crate) fn unavailable(why: impl Into<String>) -> Series {
        Series {
            unavailable: Some(why.into()),
            ..Series::default()
        }
    }

    /// A series of one value obtained as `detail` says (a percentile over
    /// all samples, one child process), or the error that prevented it.
    pub(crate) fn single(value: Result<f64, String>, detail: impl Into<String>) -> Series {
        let mut s = Series {
            detail: Some(detail.into()),
            ..Series::default()
        };
        s.push(value);
        s
    }

    /// The value of every successful round, in the order they ran.
    pub(crate) fn values(&self) -> &[f64] {
        &self.values
    }

    /// `(percentile, value)` pairs of a pooled latency series (see
    /// [`percentile_series`]); empty for other series.
    pub(crate) fn percentiles(&self) -> &[(f64, f64)] {
        &self.percentiles
    }

    /// Whether another round should be run.
    pub(crate) fn live(&self) -> bool {
        self.error.is_none() && self.unavailable.is_none()
    }

    /// Records one round's outcome.
    pub(crate) fn push(&mut self, round: Result<f64, String>) {
        match round {
            Ok(v) if v.is_finite() => self.values.push(v),
            Ok(v) => self.error = Some(format!("measured a non-finite value ({v})")),
            Err(e) => self.error = Some(e),
        }
    }

    /// The median round, when every round succeeded.
    pub(crate) fn median(&self) -> Option<f64> {
        if !self.live() || self.values.is_empty() {
            return None;
        }
        Some(percentile(&self.values, 50.0))
    }

    /// "min..max over n" for the table, or why there is no value.
    pub(crate) fn describe(&self) -> String {
        if let Some(why) = &self.unavailable {
            return why.clone();
        }
        if let Some(e) = &self.error {
            return format!("FAILED: {e}");
        }
        if let Some(d) = &self.detail {
            return d.clone();
        }
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        format!(
            "median of {} rounds, range {}..{}",
            self.values.len(),
            short(min),
            short(max)
        )
    }

    /// Why there is no value: the error or the reason it was not measured.
    pub(crate) fn missing_reason(&self) -> Option<String> {
        if let Some(why) = &self.unavailable {
            return Some(why.clone());
        }
        if let Some(e) = &self.error {
            return Some(format!("failed: {e}"));
        }
        if self.values.is_empty() {
            return Some("no rounds ran".into());
        }
        None
    }

    /// Whether the series failed (as opposed to being unavailable by build).
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// The `p`th percentile (0 to 100) of `values`, by the nearest rank on a
/// sorted copy. `values` must not be empty.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The `p`th percentile of latencies in microseconds pooled from every
/// round, as a one-value series: the failure when a round failed (`error`)
/// or nothing was measured. `what` names the samples in the details
/// ("round trips").
pub(crate) fn percentile_series(
    micros: &[f64],
    error: Option<&String>,
    p: f64,
    what: &str,
) -> Series {
    let value = match error {
        Some(e) => Err(e.clone()),
        None if micros.is_empty() => Err(format!("no {what}")),
        None => Ok(percentile(micros, p)),
    };
    let detail = if micros.is_empty() {
        format!("p{p}: no {what}")
    } else {
        let at = |q: f64| percentile(micros, q);
        format!(
            "p{p} of {} {what} from all rounds (min {:.1}, p10 {:.1}, p50 {:.1}, p90 {:.1}, \
             p99 {:.1} us)",
            micros.len(),
            at(0.0),
            at(10.0),
            at(50.0),
            at(90.0),
            at(99.0)
        )
    };
    let mut series = Series::single(value, detail);
    if !micros.is_empty() {
        series.percentiles = PLOTTED
            .iter()
            .map(|&q| (q, percentile(micros, q)))
            .collect();
    }
    series
}

/// A compact rendering of a number with about three significant digits.
pub(crate) fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_median() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        let mut s = Series::default();
        s.push(Ok(2.0));
        s.push(Ok(1.0));
        s.push(Ok(9.0));
        assert_eq!(s.median(), Some(2.0));
        s.push(Err("boom".into()));
        assert_eq!(s.median(), None);
        assert!(!s.live() && s.failed());
    }

    #[test]
    fn latency_percentiles_pool_every_round() {
        let micros = [30.0, 10.0, 20.0];
        let s = percentile_series(&micros, None, 50.0, "round trips");
        assert_eq!(s.median(), Some(20.0));
        assert!(s.describe().contains("3 round trips"), "{}", s.describe());
        let plotted: Vec<f64> = s.percentiles().iter().map(|&(p, _)| p).collect();
        assert_eq!(plotted, PLOTTED);
        assert_eq!(s.percentiles()[0].1, 20.0);
        let failed = percentile_series(&micros, Some(&"boom".to_string()), 50.0, "calls");
        assert!(failed.failed());
        let empty = percentile_series(&[], None, 50.0, "calls");
        assert_eq!(empty.missing_reason().as_deref(), Some("failed: no calls"));
    }
}
