//! Lab trend charts as SVG, made on the server: deterministic (same points, same bytes),
//! readable without colour (a marker shape per institution, the value written at each
//! point, abnormal points outlined and marked "!").

use chrono::{DateTime, FixedOffset};
use maud::{html, Markup};

/// One value of the trend.
#[derive(Clone, Debug)]
pub struct Point {
    /// When (specimen collection or report time).
    pub time: DateTime<FixedOffset>,
    /// Numeric value.
    pub value: f64,
    /// The value as sent (shown at the point).
    pub label: String,
    /// Index into the chart's institution list (its marker shape).
    pub institution: usize,
    /// Flagged abnormal by the lab.
    pub abnormal: bool,
}

/// The lower and upper bound of a reference range like `3.5-5.3` (also `3.5~5.3`,
/// `3.5–5.3`); `None` for one-sided or textual ranges.
pub fn parse_range(s: &str) -> Option<(f64, f64)> {
    let s = s.trim();
    for sep in ["--", "-", "~", "–", "—"] {
        // Skip a leading minus sign when looking for the separator.
        if let Some(i) = s.get(1..).and_then(|t| t.find(sep)).map(|i| i + 1) {
            let (a, b) = (&s[..i], &s[i + sep.len()..]);
            if let (Ok(a), Ok(b)) = (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                if a.is_finite() && b.is_finite() && a <= b {
                    return Some((a, b));
                }
            }
        }
    }
    None
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 58.0;

fn num(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn marker(shape: usize, x: f64, y: f64, abnormal: bool) -> Markup {
    let r = if abnormal { 6.0 } else { 4.5 };
    let class = if abnormal { "pt ab" } else { "pt" };
    match shape % 4 {
        0 => html! { circle class=(class) cx=(num(x)) cy=(num(y)) r=(num(r)) {} },
        1 => {
            html! { rect class=(class) x=(num(x - r)) y=(num(y - r)) width=(num(2.0 * r)) height=(num(2.0 * r)) {} }
        }
        2 => {
            html! { polygon class=(class) points=(format!("{},{} {},{} {},{}", num(x), num(y - r - 1.0), num(x - r), num(y + r), num(x + r), num(y + r))) {} }
        }
        _ => {
            html! { polygon class=(class) points=(format!("{},{} {},{} {},{} {},{}", num(x), num(y - r - 1.0), num(x + r + 1.0), num(y), num(x), num(y + r + 1.0), num(x - r - 1.0), num(y))) {} }
        }
    }
}

/// The chart: points in time order, the reference band when the range is numeric, a legend
/// of institutions. `aria_label` describes it for screen readers.
pub fn trend_svg(
    aria_label: &str,
    range: Option<(f64, f64)>,
    range_label: &str,
    institutions: &[String],
    points: &[Point],
) -> Markup {
    let mut pts: Vec<&Point> = points.iter().filter(|p| p.value.is_finite()).collect();
    pts.sort_by_key(|p| p.time);
    let (mut lo, mut hi) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.value), hi.max(p.value))
    });
    if let Some((a, b)) = range {
        lo = lo.min(a);
        hi = hi.max(b);
    }
    if pts.is_empty() {
        (lo, hi) = range.unwrap_or((0.0, 1.0));
    }
    let pad = ((hi - lo) * 0.12).max(hi.abs() * 0.05).max(0.1);
    let (lo, hi) = (lo - pad, hi + pad);
    let (t0, t1) = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => (a.time.timestamp(), b.time.timestamp()),
        _ => (0, 1),
    };
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: i64| {
        if t1 == t0 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * (t - t0) as f64 / (t1 - t0) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - (v - lo) / (hi - lo));
    let line: Vec<String> = pts
        .iter()
        .map(|p| format!("{},{}", num(x(p.time.timestamp())), num(y(p.value))))
        .collect();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="trend" viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(aria_label) {
            title { (aria_label) }
            @if let Some((a, b)) = range {
                rect class="band" x=(num(LEFT)) y=(num(y(b))) width=(num(plot_w)) height=(num((y(a) - y(b)).max(1.0))) {}
                text class="band-l" x=(num(W - RIGHT - 4.0)) y=(num(y(b) - 3.0)) text-anchor="end" { (range_label) " " (num(a)) "–" (num(b)) }
            }
            line class="axis" x1=(num(LEFT)) y1=(num(TOP + plot_h)) x2=(num(W - RIGHT)) y2=(num(TOP + plot_h)) {}
            line class="axis" x1=(num(LEFT)) y1=(num(TOP)) x2=(num(LEFT)) y2=(num(TOP + plot_h)) {}
            text class="tick" x=(num(LEFT - 6.0)) y=(num(TOP + 4.0)) text-anchor="end" { (num(hi)) }
            text class="tick" x=(num(LEFT - 6.0)) y=(num(TOP + plot_h)) text-anchor="end" { (num(lo)) }
            @if let (Some(a), Some(b)) = (pts.first(), pts.last()) {
                text class="tick" x=(num(LEFT)) y=(num(TOP + plot_h + 16.0)) text-anchor="start" { (a.time.format("%Y-%m-%d")) }
                @if t1 != t0 {
                    text class="tick" x=(num(W - RIGHT)) y=(num(TOP + plot_h + 16.0)) text-anchor="end" { (b.time.format("%Y-%m-%d")) }
                }
            }
            @if line.len() > 1 {
                polyline class="line" points=(line.join(" ")) {}
            }
            @for p in &pts {
                (marker(p.institution, x(p.time.timestamp()), y(p.value), p.abnormal))
                text class=(if p.abnormal { "val ab" } else { "val" }) x=(num(x(p.time.timestamp()))) y=(num(y(p.value) - 9.0)) text-anchor="middle" {
                    (p.label) @if p.abnormal { "!" }
                }
            }
            @for (i, name) in institutions.iter().enumerate() {
                @let lx = LEFT + (i as f64) * 150.0;
                @let ly = H - 14.0;
                (marker(i, lx + 5.0, ly - 4.0, false))
                text class="legend" x=(num(lx + 14.0)) y=(num(ly)) { (name) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("3.5-5.3"), Some((3.5, 5.3)));
        assert_eq!(parse_range(" 125 ~ 350 "), Some((125.0, 350.0)));
        assert_eq!(parse_range("-2-3"), Some((-2.0, 3.0)));
        assert_eq!(parse_range("<5.2"), None);
        assert_eq!(parse_range("阴性"), None);
        assert_eq!(parse_range("5-3"), None);
    }

    #[test]
    fn chart_is_deterministic_and_escapes_text() {
        let pts = vec![
            Point {
                time: t("2026-11-20T08:00:00+08:00"),
                value: 4.1,
                label: "4.1".into(),
                institution: 0,
                abnormal: false,
            },
            Point {
                time: t("2026-10-01T08:00:00+08:00"),
                value: 2.6,
                label: "2.6".into(),
                institution: 1,
                abnormal: true,
            },
        ];
        let insts = vec!["中心医院".to_string(), "<b>社区</b>".to_string()];
        let a = trend_svg("钾 trend", Some((3.5, 5.3)), "参考范围", &insts, &pts).into_string();
        let b = trend_svg("钾 trend", Some((3.5, 5.3)), "参考范围", &insts, &pts).into_string();
        assert_eq!(a, b);
        assert!(a.starts_with("<svg"));
        assert!(a.contains("&lt;b&gt;社区&lt;/b&gt;"), "{a}");
        assert!(a.contains("2.6!"));
        assert!(a.contains("2026-10-01") && a.contains("2026-11-20"));
        assert!(a.contains("class=\"band\""));
        // Oldest point on the left.
        let i_old = a.find(">2.6!<").unwrap();
        let i_new = a.find(">4.1<").unwrap();
        assert!(i_old < i_new);
    }

    #[test]
    fn empty_and_single_point_charts_render() {
        let s = trend_svg("x", None, "r", &[], &[]).into_string();
        assert!(s.starts_with("<svg"));
        let one = [Point {
            time: t("2026-11-20T08:00:00+08:00"),
            value: 5.0,
            label: "5.0".into(),
            institution: 0,
            abnormal: false,
        }];
        let s = trend_svg("x", None, "r", &["A".into()], &one).into_string();
        assert!(s.contains(">5.0<"));
        assert!(!s.contains("polyline"));
    }
}
