//! Plots as standalone SVG text: line charts (CDFs, throughput against concurrency) and
//! histograms. A hundred lines of SVG instead of a plotting crate and its font stack.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
const COLORS: [&str; 6] = ["#d1495b", "#00798c", "#edae49", "#30638e", "#66a182", "#8d96a3"];

/// One named series of points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A "nice" step for about `n` ticks over `span`.
fn step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

struct Frame {
    out: String,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(title: &str, xlabel: &str, ylabel: &str, x: (f64, f64), y: (f64, f64)) -> Frame {
        let x = if x.1 > x.0 { x } else { (x.0, x.0 + 1.0) };
        let y = if y.1 > y.0 { y } else { (y.0, y.0 + 1.0) };
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = write!(out, r#"<text x="{}" y="22" font-size="14" font-weight="bold">{}</text>"#, LEFT, esc(title));
        let mut f = Frame { out, x, y };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        for (i, axis) in [x, y].iter().enumerate() {
            let s = step(axis.1 - axis.0, 6.0);
            let mut v = (axis.0 / s).ceil() * s;
            while v <= axis.1 + 1e-9 {
                let (x1, y1, x2, y2, tx, ty, anchor) = if i == 0 {
                    let px = f.px(v);
                    (px, TOP, px, TOP + ph, px, TOP + ph + 16.0, "middle")
                } else {
                    let py = f.py(v);
                    (LEFT, py, LEFT + pw, py, LEFT - 6.0, py + 4.0, "end")
                };
                let _ =
                    write!(f.out, r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#e5e5e5"/>"##);
                let _ = write!(f.out, r#"<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}">{}</text>"#, fmt_tick(v));
                v += s;
            }
        }
        let _ = write!(f.out, r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
        let _ = write!(
            f.out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 10.0,
            esc(xlabel)
        );
        let _ = write!(
            f.out,
            r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(ylabel)
        );
        f
    }

    fn px(&self, v: f64) -> f64 {
        LEFT + (v - self.x.0) / (self.x.1 - self.x.0) * (W - LEFT - RIGHT)
    }

    fn py(&self, v: f64) -> f64 {
        H - BOTTOM - (v - self.y.0) / (self.y.1 - self.y.0) * (H - TOP - BOTTOM)
    }

    fn legend(&mut self, i: usize, name: &str) {
        let (x, y) = (W - RIGHT + 14.0, TOP + 12.0 + i as f64 * 20.0);
        let c = COLORS[i % COLORS.len()];
        let _ = write!(self.out, r#"<rect x="{x}" y="{:.1}" width="14" height="4" fill="{c}"/>"#, y - 4.0);
        let _ = write!(self.out, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, x + 20.0, esc(name));
    }

    fn done(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Lines through each series' points (with dots when `dots`); y starts at 0, and x too
/// when `x_zero`.
pub fn lines(title: &str, xlabel: &str, ylabel: &str, series: &[Series], dots: bool, x_zero: bool) -> String {
    let (x0, x1) = bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let x0 = if x_zero { x0.min(0.0) } else { x0 };
    let (_, y1) = bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let (x0, x1, y1) = if x0.is_finite() { (x0, x1, y1 * 1.05) } else { (0.0, 1.0, 1.0) };
    let mut f = Frame::new(title, xlabel, ylabel, (x0, x1), (0.0, y1));
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y))).collect();
        let _ = write!(f.out, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        if dots {
            for &(x, y) in &s.points {
                let _ = write!(f.out, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#, f.px(x), f.py(y));
            }
        }
        f.legend(i, &s.name);
    }
    f.done()
}

/// The empirical CDF of each sample (x: value, y: fraction at or below it).
pub fn cdf(title: &str, xlabel: &str, samples: &[(&str, &[f64])]) -> String {
    let series: Vec<Series> = samples
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(name, s)| {
            let mut v: Vec<f64> = s.to_vec();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            Series {
                name: name.to_string(),
                points: v.iter().enumerate().map(|(i, &x)| (x, (i + 1) as f64 / n)).collect(),
            }
        })
        .collect();
    lines(title, xlabel, "fraction of runs", &series, false, true)
}

/// Histograms of each sample over the same bins, drawn as steps.
pub fn histogram(title: &str, xlabel: &str, samples: &[(&str, &[f64])], bins: usize) -> String {
    let (lo, hi) = bounds(samples.iter().flat_map(|(_, s)| s.iter().copied()));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
    let width = (hi - lo) / bins as f64;
    let series: Vec<Series> = samples
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(name, s)| {
            let mut counts = vec![0u32; bins];
            for &x in s.iter() {
                counts[(((x - lo) / width) as usize).min(bins - 1)] += 1;
            }
            let mut points = vec![(lo, 0.0)];
            for (i, &c) in counts.iter().enumerate() {
                let x = lo + i as f64 * width;
                points.push((x, c as f64));
                points.push((x + width, c as f64));
            }
            points.push((hi, 0.0));
            Series { name: name.to_string(), points }
        })
        .collect();
    lines(title, xlabel, "runs", &series, false, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_every_series_named() {
        let a = [1.0, 2.0, 2.5, 9.0];
        let b = [3.0, 4.0];
        for svg in
            [cdf("t & t", "ms", &[("a<b", &a), ("b", &b)]), histogram("t & t", "ms", &[("a<b", &a), ("b", &b)], 10)]
        {
            assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("a&lt;b") && svg.contains("t &amp; t"));
            assert_eq!(svg.matches("<polyline").count(), 2);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        let empty = lines("e", "x", "y", &[], true, false);
        assert!(!empty.contains("NaN"));
        assert_eq!(step(97.0, 6.0), 20.0);
    }
}
