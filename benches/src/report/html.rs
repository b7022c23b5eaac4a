//! The report as one self-contained HTML page, for people who would rather
//! look than read a table: inline SVG and an inline style sheet, no
//! scripts, no external files, well-formed as XML (every element closed).
//!
//! - Ratios: a bar per row with the row's ratio (weft / baseline), a line
//!   at its target, green when the target is met and red when it is not
//!   (grey without a value), and whiskers from the lowest to the highest
//!   ratio over the rounds. Each row has its own scale, so a 50x row and a
//!   0.9x row are both readable; the numbers are written beside the bar.
//! - Latency: for rows with pooled latency samples (ping-pong, rpc
//!   sequential), weft's and the baseline's p50, p90, p99 and p99.9.
//! - The table's details per row and the run's notes, as text.

use std::fmt::Write as _;

use super::{Report, Row, value};

/// Fill of a bar whose row meets its target.
pub(super) const GREEN: &str = "#2e7d32";
/// Fill of a bar whose row misses its target.
pub(super) const RED: &str = "#c62828";
/// Fill of a bar whose row has no verdict.
const GREY: &str = "#9e9e9e";
/// weft's line in the latency plots.
const WEFT_COLOUR: &str = "#1565c0";
/// The baseline's line in the latency plots.
const BASELINE_COLOUR: &str = "#ef6c00";

/// Width and height of a row's bar chart.
const BAR_W: f64 = 420.0;
const BAR_H: f64 = 26.0;
/// Size of a latency plot and its margins (left for the axis labels).
const PLOT_W: f64 = 460.0;
const PLOT_H: f64 = 220.0;
const PLOT_LEFT: f64 = 76.0;
const PLOT_PAD: f64 = 24.0;
/// Text in the drawings, set on each drawing so that it reads the same
/// outside this page.
const FONT: &str = "font-family=\"sans-serif\" font-size=\"11\"";
/// Room at the right of a bar chart for the target's label.
const LABEL_W: f64 = 64.0;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#212121}\
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #e0e0e0;\
text-align:left;vertical-align:middle}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.missed{color:#c62828;font-weight:bold}.met{color:#2e7d32}\
figure{display:inline-block;margin:0 2em 2em 0}";

/// The whole page.
pub(super) fn page(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    out.push_str("<title>weft bench</title>\n");
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    out.push_str("<h1>weft side by side with its baselines</h1>\n");
    let met = report.rows.iter().filter(|r| r.met() == Some(true)).count();
    let missed = report
        .rows
        .iter()
        .filter(|r| r.met() == Some(false))
        .count();
    let _ = writeln!(
        out,
        "<p>{} rows; target met: {met}, missed: {missed}, no verdict: {}.</p>",
        report.rows.len(),
        report.rows.len() - met - missed
    );
    ratios(&mut out, &report.rows);
    latencies(&mut out, &report.rows);
    details(&mut out, report);
    out.push_str("</body>\n</html>\n");
    out
}

/// The table of rows, each with its bar.
fn ratios(out: &mut String, rows: &[Row]) {
    out.push_str("<h2>Ratio against target</h2>\n");
    out.push_str(
        "<p>Bar: the median ratio weft / baseline; black line: the target; whiskers: the \
         lowest and highest ratio over the rounds.</p>\n",
    );
    out.push_str(
        "<table>\n<tr><th>case</th><th></th><th>ratio</th><th>target</th><th>weft</th>\
         <th>baseline</th><th>met</th></tr>\n",
    );
    for r in rows {
        let ratio = r.ratio().map_or("n/a".into(), |x| format!("{x:.2}x"));
        let (verdict, class) = match r.met() {
            Some(true) => ("yes", "met"),
            Some(false) => ("NO", "missed"),
            None => ("?", "unknown"),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{} {}</td><td class=\"{class}\">{verdict}</td></tr>",
            escape(&r.case),
            bar(r),
            ratio,
            escape(&r.target_text()),
            r.weft
                .map_or("-".into(), |v| format!("{} {}", value(v, r.unit), r.unit)),
            escape(r.baseline),
            r.baseline_value
                .map_or("n/a".into(), |v| format!("{} {}", value(v, r.unit), r.unit)),
        );
    }
    out.push_str("</table>\n");
}

/// One row's chart: the bar, the target line and the whiskers.
fn bar(r: &Row) -> String {
    let target = r.target_ratio();
    let range = r.ratio_range();
    let top = [Some(target), r.ratio(), range.map(|(_, hi)| hi)]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
    let scale = (BAR_W - LABEL_W) / top.max(f64::MIN_POSITIVE);
    let x = |v: f64| (v * scale).clamp(0.0, BAR_W);
    let mid = BAR_H / 2.0;
    let mut svg = format!(
        "<svg class=\"ratio\" width=\"{BAR_W}\" height=\"{BAR_H}\" \
         viewBox=\"0 0 {BAR_W} {BAR_H}\" role=\"img\" {FONT}>"
    );
    let _ = write!(
        svg,
        "<title>{}: ratio {}, target {}</title>",
        escape(&r.case),
        r.ratio().map_or("none".into(), |x| format!("{x:.2}x")),
        escape(&r.target_text())
    );
    match r.ratio() {
        Some(ratio) => {
            let (fill, class) = match r.met() {
                Some(true) => (GREEN, "bar met"),
                Some(false) => (RED, "bar missed"),
                None => (GREY, "bar"),
            };
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"0\" y=\"5\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{fill}\"/>",
                x(ratio),
                BAR_H - 10.0
            );
        }
        None => {
            let _ = write!(svg, "<text x=\"4\" y=\"{:.1}\">no value</text>", mid + 4.0);
        }
    }
    if let Some((lo, hi)) = range {
        let (a, b) = (x(lo), x(hi));
        let _ = write!(
            svg,
            "<g class=\"whisker\" stroke=\"#212121\" stroke-width=\"1\">\
             <line x1=\"{a:.1}\" y1=\"{mid}\" x2=\"{b:.1}\" y2=\"{mid}\"/>\
             <line x1=\"{a:.1}\" y1=\"{:.1}\" x2=\"{a:.1}\" y2=\"{:.1}\"/>\
             <line x1=\"{b:.1}\" y1=\"{:.1}\" x2=\"{b:.1}\" y2=\"{:.1}\"/></g>",
            mid - 4.0,
            mid + 4.0,
            mid - 4.0,
            mid + 4.0
        );
    }
    let t = x(target);
    let _ = write!(
        svg,
        "<line class=\"target\" x1=\"{t:.1}\" y1=\"1\" x2=\"{t:.1}\" y2=\"{:.1}\" \
         stroke=\"#000000\" stroke-width=\"2\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#616161\">{}</text>",
        BAR_H - 1.0,
        BAR_W - 2.0,
        mid + 4.0,
        escape(&format!("target {}x", super::trim(target)))
    );
    svg.push_str("</svg>");
    svg
}

/// A plot per row with latency percentiles.
fn latencies(out: &mut String, rows: &[Row]) {
    let plotted: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.weft_percentiles.is_empty() || !r.baseline_percentiles.is_empty())
        .collect();
    if plotted.is_empty() {
        return;
    }
    out.push_str("<h2>Latency percentiles</h2>\n");
    for r in plotted {
        let _ = writeln!(
            out,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            latency_plot(r),
            escape(&r.case)
        );
    }
}

/// weft's and the baseline's percentiles of one row, as two lines.
fn latency_plot(r: &Row) -> String {
    let lines = [
        ("weft", WEFT_COLOUR, &r.weft_percentiles),
        (r.baseline, BASELINE_COLOUR, &r.baseline_percentiles),
    ];
    let top = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|&(_, v)| v))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.15;
    let percentiles: Vec<f64> = lines
        .iter()
        .map(|(_, _, p)| p)
        .max_by_key(|p| p.len())
        .map(|p| p.iter().map(|&(q, _)| q).collect())
        .unwrap_or_default();
    let (left, right) = (PLOT_LEFT, PLOT_W - PLOT_PAD);
    let (top_y, bottom) = (PLOT_PAD, PLOT_H - PLOT_PAD - 14.0);
    let step = (right - left) / percentiles.len().max(1) as f64;
    let x = |i: usize| left + step * (i as f64 + 0.5);
    let y = |v: f64| bottom - v / top * (bottom - top_y);
    let mut svg = format!(
        "<svg class=\"latency\" width=\"{PLOT_W}\" height=\"{PLOT_H}\" \
         viewBox=\"0 0 {PLOT_W} {PLOT_H}\" role=\"img\" {FONT}><title>{}</title>",
        escape(&r.case)
    );
    // Four grid lines with their values in microseconds.
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{right}\" y2=\"{yy:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1} us</text>",
            left - 6.0,
            y(v) + 4.0,
            v,
            yy = y(v)
        );
    }
    for (i, q) in percentiles.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">p{q}</text>",
            x(i),
            bottom + 16.0
        );
    }
    for (k, (name, colour, points)) in lines.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, &(_, v))| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"line\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"2\"/>",
            path.join(" ")
        );
        for (i, &(q, v)) in points.iter().enumerate() {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\">\
                 <title>{} p{q}: {v:.1} us</title></circle>",
                x(i),
                y(v),
                escape(name)
            );
        }
        // The legend, one entry per line, along the top.
        let lx = left + 8.0 + 110.0 * k as f64;
        let _ = write!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"13\">{}</text>",
            lx + 14.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Each row's details and the run's notes, as the text table has them.
fn details(out: &mut String, report: &Report) {
    out.push_str("<h2>Per row</h2>\n<ul>\n");
    for r in &report.rows {
        let _ = write!(
            out,
            "<li><b>{}</b>: weft {}; {} {}",
            escape(&r.case),
            escape(&r.weft_detail),
            escape(r.baseline),
            escape(&r.baseline_detail)
        );
        if let Some(n) = &r.note {
            let _ = write!(out, "; note: {}", escape(n));
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2>\n<ul>\n");
        for n in &report.notes {
            let _ = writeln!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul>\n");
    }
}

/// `text` with the characters HTML and XML give meaning escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;
    use crate::series::{Series, percentile_series};

    fn series(v: &[f64]) -> Series {
        let mut s = Series::default();
        for &x in v {
            s.push(Ok(x));
        }
        s
    }

    /// Made-up rows: one within target, one over its limit, a latency row
    /// with percentiles, one without a baseline value.
    fn report() -> Report {
        let mut report = Report::default();
        report.row(Row::compare(
            "throughput <64 B> & more",
            "msg/s",
            &series(&[300.0, 280.0, 330.0]),
            "libzmq",
            &series(&[100.0, 110.0, 90.0]),
            Target::RatioAtLeast(1.5),
        ));
        report.row(Row::limit(
            "memory",
            "MiB",
            &series(&[80.0, 70.0, 90.0]),
            64.0,
        ));
        let weft: Vec<f64> = (1..=1000).map(f64::from).collect();
        let raw: Vec<f64> = (1..=1000).map(|v| f64::from(v) * 0.8).collect();
        report.row(Row::compare(
            "ping-pong 64 B p50 round trip",
            "us",
            &percentile_series(&weft, None, 50.0, "round trips"),
            "raw-tcp",
            &percentile_series(&raw, None, 50.0, "round trips"),
            Target::RatioAtMost(1.1),
        ));
        report.row(Row::compare(
            "zmq",
            "msg/s",
            &series(&[1.0]),
            "libzmq",
            &Series::unavailable("not built"),
            Target::RatioAtLeast(1.5),
        ));
        report.note("quick run \"for\" <tests>");
        report
    }

    /// Every element of `xml` closed in order; the names of the elements
    /// met, in order.
    fn balanced(xml: &str) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = xml;
        while let Some(start) = rest.find('<') {
            let end = start + rest[start..].find('>').expect("an unclosed tag");
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            assert!(!tag.contains('<'), "a `<` inside tag {tag:?}");
            if tag.starts_with("!DOCTYPE") {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = open
                    .pop()
                    .unwrap_or_else(|| panic!("</{name}> closes nothing"));
                assert_eq!(top, name, "</{name}> closes <{top}>");
                continue;
            }
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(!name.is_empty(), "tag {tag:?}");
            seen.push(name.clone());
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "never closed: {open:?}");
        for text in xml.split(['<', '>']).step_by(2) {
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&entity),
                    "a bare `&` in {text:?}"
                );
            }
        }
        seen
    }

    /// The `class="bar..."` rects with their fill, in row order.
    fn bars(html: &str) -> Vec<(String, String)> {
        html.match_indices("<rect class=\"bar")
            .map(|(i, _)| {
                let tag = &html[i..i + html[i..].find("/>").unwrap()];
                let attr = |name: &str| {
                    let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    tag[at..at + tag[at..].find('"').unwrap()].to_string()
                };
                (attr("class"), attr("fill"))
            })
            .collect()
    }

    #[test]
    fn the_page_is_well_formed_and_self_contained() {
        let html = report().render_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        let elements = balanced(&html);
        assert_eq!(elements.iter().filter(|e| *e == "html").count(), 1);
        assert_eq!(elements.iter().filter(|e| *e == "table").count(), 1);
        for external in ["<script", "src=", "href=", "url(", "@import", "http"] {
            assert!(!html.contains(external), "{external} in the page");
        }
        assert!(html.contains("throughput &lt;64 B&gt; &amp; more"));
        assert!(html.contains("quick run &quot;for&quot; &lt;tests&gt;"));
    }

    #[test]
    fn a_bar_per_row_red_over_target_and_green_within() {
        let html = report().render_html();
        assert_eq!(
            html.matches("<svg class=\"ratio\"").count(),
            4,
            "a chart per row"
        );
        assert_eq!(
            html.matches("<line class=\"target\"").count(),
            4,
            "a target per row"
        );
        let bars = bars(&html);
        // The row without a baseline value has no ratio, so no bar.
        assert_eq!(bars.len(), 3, "{bars:?}");
        assert_eq!(bars[0], ("bar met".into(), GREEN.into()));
        assert_eq!(
            bars[1],
            ("bar missed".into(), RED.into()),
            "memory is over its limit"
        );
        assert!(html.contains("no value"));
    }

    #[test]
    fn whiskers_span_the_rounds() {
        let rows = report().rows;
        // 300/100, 280/110, 330/90 round by round.
        let (lo, hi) = rows[0].ratio_range().unwrap();
        assert!((lo - 280.0 / 110.0).abs() < 1e-9 && (hi - 330.0 / 90.0).abs() < 1e-9);
        // A fixed limit: each round against it.
        assert_eq!(rows[1].ratio_range(), Some((70.0 / 64.0, 90.0 / 64.0)));
        // Pooled latencies have one value, so no spread over rounds.
        assert_eq!(rows[2].ratio_range(), None);
        let html = report().render_html();
        assert_eq!(html.matches("<g class=\"whisker\"").count(), 2);
    }

    #[test]
    fn latency_rows_plot_their_percentiles() {
        let html = report().render_html();
        assert_eq!(html.matches("<svg class=\"latency\"").count(), 1);
        assert_eq!(
            html.matches("<polyline class=\"line\"").count(),
            2,
            "weft and raw-tcp"
        );
        for p in ["p50", "p90", "p99", "p99.9"] {
            assert!(html.contains(&format!(">{p}</text>")), "{p} on the axis");
        }
        assert!(
            html.contains("<title>weft p99.9: 999.0 us</title>"),
            "{html}"
        );
        assert!(html.contains("<title>raw-tcp p50: 400.8 us</title>"));
    }

    #[test]
    fn no_latency_section_without_latency_rows() {
        let mut report = Report::default();
        report.row(Row::floor("p", "msg/s", &series(&[60_000.0]), 50_000.0));
        let html = report.render_html();
        balanced(&html);
        assert!(!html.contains("Latency percentiles"));
        assert_eq!(
            bars(&html),
            vec![("bar met".to_string(), GREEN.to_string())]
        );
    }
}
