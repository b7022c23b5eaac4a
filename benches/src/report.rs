//! The result table: one row per comparison, printed for people and written
//! as JSON for scripts.
//!
//! The JSON is a list of objects with exactly these keys (scripts rely on
//! them): `case`, `unit`, `weft`, `baseline` (the baseline's name),
//! `baseline_value`, `ratio` (always `weft / baseline_value`, also for
//! lower-is-better units), `target` (human-readable), plus `note` when a
//! value is missing and why. A missing value is `null`.
//!
//! The same rows are drawn in a self-contained HTML page (see [`html`]):
//! each row's ratio against its target, its spread over rounds, and the
//! latency rows' percentiles.

mod html;

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::series::Series;

/// What a row must reach to meet its goal.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// `weft / baseline` at least this (higher is better).
    RatioAtLeast(f64),
    /// `weft / baseline` at most this (lower is better).
    RatioAtMost(f64),
    /// weft's value at most the baseline value, which is a fixed limit.
    WithinLimit,
    /// weft's value at least the baseline value, which is a fixed target.
    AtLeastValue,
}

/// One comparison.
#[derive(Debug)]
pub(crate) struct Row {
    case: String,
    unit: &'static str,
    weft: Option<f64>,
    weft_detail: String,
    baseline: &'static str,
    baseline_value: Option<f64>,
    baseline_detail: String,
    target: Target,
    note: Option<String>,
    failed: bool,
    /// weft's value in each round (one value for a pooled percentile).
    weft_rounds: Vec<f64>,
    /// The baseline's value in each round (none for a fixed value).
    baseline_rounds: Vec<f64>,
    /// weft's latency percentiles, `(percentile, us)`, for latency rows.
    weft_percentiles: Vec<(f64, f64)>,
    /// The baseline's latency percentiles, for latency rows.
    baseline_percentiles: Vec<(f64, f64)>,
}

impl Row {
    /// A row comparing two measured series.
    pub(crate) fn compare(
        case: &str,
        unit: &'static str,
        weft: &Series,
        baseline: &'static str,
        baseline_series: &Series,
        target: Target,
    ) -> Row {
        let note = match (weft.missing_reason(), baseline_series.missing_reason()) {
            (None, None) => None,
            (Some(w), None) => Some(format!("weft {w}")),
            (None, Some(b)) => Some(format!("{baseline} {b}")),
            (Some(w), Some(b)) => Some(format!("weft {w}; {baseline} {b}")),
        };
        Row {
            case: case.to_string(),
            unit,
            weft: weft.median(),
            weft_detail: weft.describe(),
            baseline,
            baseline_value: baseline_series.median(),
            baseline_detail: baseline_series.describe(),
            target,
            note,
            failed: weft.failed() || baseline_series.failed(),
            weft_rounds: weft.values().to_vec(),
            baseline_rounds: baseline_series.values().to_vec(),
            weft_percentiles: weft.percentiles().to_vec(),
            baseline_percentiles: baseline_series.percentiles().to_vec(),
        }
    }

    /// A row comparing a measured series against a fixed limit.
    pub(crate) fn limit(case: &str, unit: &'static str, weft: &Series, limit: f64) -> Row {
        Row {
            case: case.to_string(),
            unit,
            weft: weft.median(),
            weft_detail: weft.describe(),
            baseline: "limit",
            baseline_value: Some(limit),
            baseline_detail: "fixed".into(),
            target: Target::WithinLimit,
            note: weft.missing_reason().map(|w| format!("weft {w}")),
            failed: weft.failed(),
            weft_rounds: weft.values().to_vec(),
            baseline_rounds: Vec::new(),
            weft_percentiles: weft.percentiles().to_vec(),
            baseline_percentiles: Vec::new(),
        }
    }

    /// A row comparing a measured series against a fixed value it must
    /// reach (higher is better); the baseline is named `target`.
    pub(crate) fn floor(case: &str, unit: &'static str, weft: &Series, value: f64) -> Row {
        Row {
            case: case.to_string(),
            unit,
            weft: weft.median(),
            weft_detail: weft.describe(),
            baseline: "target",
            baseline_value: Some(value),
            baseline_detail: "fixed".into(),
            target: Target::AtLeastValue,
            note: weft.missing_reason().map(|w| format!("weft {w}")),
            failed: weft.failed(),
            weft_rounds: weft.values().to_vec(),
            baseline_rounds: Vec::new(),
            weft_percentiles: weft.percentiles().to_vec(),
            baseline_percentiles: Vec::new(),
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.weft, self.baseline_value) {
            (Some(w), Some(b)) if b != 0.0 => Some(w / b),
            _ => None,
        }
    }

    /// The ratio the target names: weft / baseline must be at least or
    /// at most this.
    fn target_ratio(&self) -> f64 {
        match self.target {
            Target::RatioAtLeast(r) | Target::RatioAtMost(r) => r,
            Target::WithinLimit | Target::AtLeastValue => 1.0,
        }
    }

    /// The lowest and highest ratio over the rounds: round by round when
    /// both sides have rounds (they alternate, so round i of each saw the
    /// same machine), else each side's rounds against the other's value.
    fn ratio_range(&self) -> Option<(f64, f64)> {
        self.ratio()?;
        let (w, b) = (&self.weft_rounds, &self.baseline_rounds);
        let ratios: Vec<f64> = if w.len() > 1 && b.len() > 1 {
            w.iter().zip(b).map(|(w, b)| w / b).collect()
        } else if w.len() > 1 {
            let b = self.baseline_value?;
            w.iter().map(|w| w / b).collect()
        } else if b.len() > 1 {
            let w = self.weft?;
            b.iter().map(|b| w / b).collect()
        } else {
            return None;
        };
        let ratios = ratios.into_iter().filter(|r| r.is_finite());
        let (lo, hi) = ratios.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        });
        (lo <= hi).then_some((lo, hi))
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::RatioAtLeast(r) => format!(">= {r}x"),
            Target::RatioAtMost(r) => format!("<= {r}x"),
            Target::WithinLimit => match self.baseline_value {
                Some(v) => format!("<= {} {}", trim(v), self.unit),
                None => "<= limit".into(),
            },
            Target::AtLeastValue => match self.baseline_value {
                Some(v) => format!(">= {} {}", trim(v), self.unit),
                None => ">= target".into(),
            },
        }
    }

    fn met(&self) -> Option<bool> {
        let ratio = self.ratio()?;
        Some(match self.target {
            Target::RatioAtLeast(r) => ratio >= r,
            Target::RatioAtMost(r) => ratio <= r,
            Target::WithinLimit => ratio <= 1.0,
            Target::AtLeastValue => ratio >= 1.0,
        })
    }
}

/// All rows and free-form notes of one run.
#[derive(Debug, Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    case: &'a str,
    unit: &'a str,
    weft: Option<f64>,
    baseline: &'a str,
    baseline_value: Option<f64>,
    ratio: Option<f64>,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

impl Report {
    /// Adds a row.
    pub(crate) fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Adds a note printed under the table (not written to the JSON).
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Whether any measurement failed (as opposed to a baseline that is not
    /// built in).
    pub(crate) fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.failed || r.weft.is_none())
    }

    /// The table, its per-row details and the notes, for people.
    pub(crate) fn render(&self) -> String {
        let header = [
            "case",
            "unit",
            "weft",
            "baseline",
            "baseline value",
            "ratio",
            "target",
            "met",
        ];
        let mut cells: Vec<[String; 8]> = vec![header.map(String::from)];
        for r in &self.rows {
            cells.push([
                r.case.clone(),
                r.unit.to_string(),
                r.weft.map_or("-".into(), |v| value(v, r.unit)),
                r.baseline.to_string(),
                r.baseline_value.map_or("n/a".into(), |v| value(v, r.unit)),
                r.ratio().map_or("n/a".into(), |x| format!("{x:.2}x")),
                r.target_text(),
                match r.met() {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "?".into(),
                },
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let numeric = [false, false, true, false, true, true, false, false];
        for (i, row) in cells.iter().enumerate() {
            let mut line = String::new();
            for (k, c) in row.iter().enumerate() {
                if numeric[k] && i > 0 {
                    let _ = write!(line, "{c:>w$}  ", w = widths[k]);
                } else {
                    let _ = write!(line, "{c:<w$}  ", w = widths[k]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if i == 0 {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * 7));
                out.push('\n');
            }
        }
        out.push_str("\nper row:\n");
        for r in &self.rows {
            let _ = writeln!(out, "  {}:", r.case);
            let _ = writeln!(out, "    weft: {}", r.weft_detail);
            let _ = writeln!(out, "    {}: {}", r.baseline, r.baseline_detail);
            if let Some(n) = &r.note {
                let _ = writeln!(out, "    note: {n}");
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nnotes:\n");
            for n in &self.notes {
                let _ = writeln!(out, "  - {n}");
            }
        }
        out
    }

    /// The report as a self-contained HTML page (see [`html`]).
    pub(crate) fn render_html(&self) -> String {
        html::page(self)
    }

    /// Writes the HTML page to `path`, creating its directory.
    pub(crate) fn write_html(&self, path: &Path) -> Result<(), String> {
        write_file(path, self.render_html())
    }

    /// Writes the JSON list to `path`, creating its directory.
    pub(crate) fn write_json(&self, path: &Path) -> Result<(), String> {
        let rows: Vec<JsonRow<'_>> = self
            .rows
            .iter()
            .map(|r| JsonRow {
                case: &r.case,
                unit: r.unit,
                weft: r.weft.map(|v| round(v, r.unit)),
                baseline: r.baseline,
                baseline_value: r.baseline_value.map(|v| round(v, r.unit)),
                ratio: r.ratio().map(|x| (x * 10_000.0).round() / 10_000.0),
                target: r.target_text(),
                note: r.note.as_deref(),
            })
            .collect();
        let json =
            serde_json::to_string_pretty(&rows).map_err(|e| format!("encoding JSON: {e}"))?;
        write_file(path, json + "\n")
    }
}

/// Writes `text` to `path`, creating its directory.
fn write_file(path: &Path, text: String) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A value as the table shows it, by unit.
pub(crate) fn value(v: f64, unit: &str) -> String {
    match unit {
        "msg/s" | "calls/s" => thousands(v.round() as u64),
        "x payload" => format!("{v:.2}"),
        _ => format!("{v:.1}"),
    }
}

fn round(v: f64, unit: &str) -> f64 {
    match unit {
        "msg/s" | "calls/s" => v.round(),
        _ => (v * 1000.0).round() / 1000.0,
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(v: &[f64]) -> Series {
        let mut s = Series::default();
        for &x in v {
            s.push(Ok(x));
        }
        s
    }

    #[test]
    fn rows_and_targets() {
        let mut report = Report::default();
        report.row(Row::compare(
            "t",
            "msg/s",
            &series(&[300.0]),
            "libzmq",
            &series(&[100.0]),
            Target::RatioAtLeast(1.5),
        ));
        report.row(Row::limit("m", "MiB", &series(&[80.0]), 64.0));
        report.row(Row::floor("p", "msg/s", &series(&[60_000.0]), 50_000.0));
        report.row(Row::compare(
            "z",
            "msg/s",
            &series(&[1.0]),
            "libzmq",
            &Series::unavailable("not built"),
            Target::RatioAtLeast(1.5),
        ));
        assert_eq!(report.rows[0].ratio(), Some(3.0));
        assert_eq!(report.rows[0].met(), Some(true));
        assert_eq!(report.rows[1].target_text(), "<= 64 MiB");
        assert_eq!(report.rows[1].met(), Some(false));
        assert_eq!(report.rows[2].target_text(), ">= 50000 msg/s");
        assert_eq!(report.rows[2].met(), Some(true));
        assert_eq!(report.rows[3].met(), None);
        assert!(!report.failed());
        assert_eq!(thousands(1234567), "1,234,567");
        assert!(report.render().contains("n/a"));
    }
}
