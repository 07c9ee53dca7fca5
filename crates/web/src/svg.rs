//! Small SVG charts drawn here (no chart library, no script): a sparkline of a result over
//! time, and a line of a share over runs. Each has a text alternative.

use maud::{Markup, html};

/// A sparkline of `values` (oldest first), `width` × `height` pixels; `label` is read by
/// screen readers.
pub fn sparkline(values: &[f64], width: u32, height: u32, label: &str) -> Markup {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() < 2 {
        return html! {};
    }
    let (low, high) =
        finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    let span = if high > low { high - low } else { 1.0 };
    let step = f64::from(width - 4) / (finite.len() - 1) as f64;
    let points: Vec<String> = finite
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = 2.0 + step * i as f64;
            let y = 2.0 + f64::from(height - 4) * (1.0 - (v - low) / span);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let last = points.last().cloned().unwrap_or_default();
    let (last_x, last_y) = last.split_once(',').unwrap_or(("0", "0"));
    html! {
        svg.spark width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(label) {
            title { (label) }
            polyline points=(points.join(" ")) fill="none" stroke="#0b4f8a" stroke-width="1.5" {}
            circle cx=(last_x) cy=(last_y) r="2.5" fill="#0b4f8a" {}
        }
    }
}

/// A line of shares (0–1) over runs, with the threshold drawn across.
pub fn trend(shares: &[f64], threshold: Option<f64>, label: &str) -> Markup {
    let (width, height) = (160u32, 40u32);
    if shares.len() < 2 {
        return html! { span.muted { "one run so far" } };
    }
    let step = f64::from(width - 4) / (shares.len() - 1) as f64;
    let y = |share: f64| 2.0 + f64::from(height - 4) * (1.0 - share.clamp(0.0, 1.0));
    let points: Vec<String> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{:.1},{:.1}", 2.0 + step * i as f64, y(*s)))
        .collect();
    html! {
        svg.spark width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(label) {
            title { (label) }
            @if let Some(threshold) = threshold {
                line x1="0" x2=(width) y1=(format!("{:.1}", y(threshold))) y2=(format!("{:.1}", y(threshold))) stroke="#b00020" stroke-dasharray="3 3" {}
            }
            polyline points=(points.join(" ")) fill="none" stroke="#0b4f8a" stroke-width="1.5" {}
        }
    }
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
/// Room for the axes' labels: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (44.0, 12.0, 10.0, 34.0);

/// A tidy axis maximum at or above `value`: a round multiple (1 to 10) of a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= value)
        .unwrap_or(10.0 * power)
}

/// An epidemic curve: a bar per period's count, the threshold over the judged periods as a
/// step line, and a mark over each alarmed period.
pub fn epidemic_curve(counts: &[f64], judged: &[crate::analytics::Period], label: &str) -> Markup {
    if counts.is_empty() {
        return html! {};
    }
    let (left, right, top, bottom) = MARGIN;
    let plot_w = WIDTH - left - right;
    let plot_h = HEIGHT - top - bottom;
    let highest = counts
        .iter()
        .copied()
        .chain(judged.iter().filter_map(|p| p.upperbound))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_max = nice_ceiling(highest * 1.1);
    let bar = plot_w / counts.len() as f64;
    let x = |t: usize| left + bar * (t as f64 - 1.0);
    let y = |v: f64| top + plot_h * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut threshold = String::new();
    for period in judged {
        if let Some(bound) = period.upperbound {
            let command = if threshold.is_empty() { 'M' } else { 'L' };
            threshold.push_str(&format!(
                "{command}{:.1},{:.1}H{:.1}",
                x(period.t),
                y(bound),
                x(period.t) + bar
            ));
        }
    }
    let labelled: Vec<&crate::analytics::Period> = {
        let step = (judged.len() / 6).max(1);
        judged.iter().step_by(step).collect()
    };
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            title { (label) }
            line x1=(left) x2=(left) y1=(top) y2=(top + plot_h) stroke="#555" {}
            line x1=(left) x2=(left + plot_w) y1=(top + plot_h) y2=(top + plot_h) stroke="#555" {}
            @for i in 0..=4 {
                @let v = y_max * f64::from(i) / 4.0;
                text x=(left - 6.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" font-size="11" { (format!("{v:.0}")) }
            }
            @for (i, count) in counts.iter().enumerate() {
                @if *count > 0.0 {
                    rect x=(format!("{:.2}", x(i + 1))) y=(format!("{:.1}", y(*count))) width=(format!("{:.2}", (bar * 0.9).max(0.5)))
                         height=(format!("{:.1}", top + plot_h - y(*count))) fill="#6b8fb3" {}
                }
            }
            @if !threshold.is_empty() { path d=(threshold) fill="none" stroke="#1b1b1b" stroke-width="1.2" stroke-dasharray="4 2" {} }
            @for period in judged.iter().filter(|p| p.alarm) {
                @let cx = x(period.t) + bar / 2.0;
                @let cy = y(period.observed) - 4.0;
                path d=(format!("M{:.1},{:.1}l-4,-7h8z", cx, cy)) fill="#b00020" {}
            }
            @for period in labelled {
                text x=(format!("{:.1}", x(period.t))) y=(format!("{:.1}", top + plot_h + 16.0)) font-size="11" { (period.label) }
            }
            text x=(left) y=(HEIGHT - 2.0) font-size="11" { "Bars: cases. Dashed: threshold. Red marks: alarms." }
        }
    }
}

/// The last time any arm's curve reaches, for a shared axis.
pub fn horizon(curves: &[&crate::analytics::Curve]) -> f64 {
    let last = curves.iter().filter_map(|c| c.steps.last().map(|s| s.0)).fold(0.0, f64::max);
    nice_ceiling(last)
}

/// The confidence band: along the upper curve (already drawn as `upper`), then back along
/// the lower one, closed.
fn band(upper: &str, lower: &[(f64, f64)], x: &dyn Fn(f64) -> f64, y: &dyn Fn(f64) -> f64) -> String {
    let mut band = upper.to_string();
    for window in lower.windows(2).rev() {
        band.push_str(&format!("H{:.1}V{:.1}", x(window[1].0), y(window[0].1)));
    }
    if let Some(first) = lower.first() {
        band.push_str(&format!("H{:.1}V{:.1}Z", x(first.0), y(first.1)));
    }
    band
}

const ARM_COLOURS: [&str; 4] = ["#0b4f8a", "#b3541e", "#1e7b34", "#6a3d9a"];

/// Kaplan–Meier curves: each arm's step function, its confidence band shaded, a tick at each
/// censoring, and a legend.
pub fn kaplan_meier(curves: &[&crate::analytics::Curve], label: &str) -> Markup {
    let (left, right, top, bottom) = MARGIN;
    let plot_w = WIDTH - left - right;
    let plot_h = HEIGHT - top - bottom;
    let horizon = horizon(curves);
    let x = |t: f64| left + plot_w * (t / horizon).clamp(0.0, 1.0);
    let y = |s: f64| top + plot_h * (1.0 - s.clamp(0.0, 1.0));
    let step_path = |values: &mut dyn Iterator<Item = (f64, f64)>| {
        let mut d = String::new();
        let mut previous: Option<f64> = None;
        for (t, s) in values {
            if !s.is_finite() {
                continue;
            }
            match previous {
                None => d.push_str(&format!("M{:.1},{:.1}", x(t), y(s))),
                Some(_) => d.push_str(&format!("H{:.1}V{:.1}", x(t), y(s))),
            }
            previous = Some(s);
        }
        d
    };
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            title { (label) }
            line x1=(left) x2=(left) y1=(top) y2=(top + plot_h) stroke="#555" {}
            line x1=(left) x2=(left + plot_w) y1=(top + plot_h) y2=(top + plot_h) stroke="#555" {}
            @for i in 0..=4 {
                @let s = f64::from(i) / 4.0;
                text x=(left - 6.0) y=(format!("{:.1}", y(s) + 4.0)) text-anchor="end" font-size="11" { (format!("{s:.2}")) }
            }
            @for i in 0..=5 {
                @let t = horizon * f64::from(i) / 5.0;
                text x=(format!("{:.1}", x(t))) y=(format!("{:.1}", top + plot_h + 16.0)) text-anchor="middle" font-size="11" { (format!("{t:.0}")) }
            }
            @for (number, curve) in curves.iter().enumerate() {
                @let colour = ARM_COLOURS[number % ARM_COLOURS.len()];
                @let lower: Vec<(f64, f64)> = curve.steps.iter().map(|s| (s.0, s.2)).filter(|(_, v)| v.is_finite()).collect();
                @let band = band(&step_path(&mut curve.steps.iter().map(|s| (s.0, s.3))), &lower, &x, &y);
                @if !lower.is_empty() { path d=(band) fill=(colour) fill-opacity="0.15" stroke="none" {} }
                path d=(step_path(&mut curve.steps.iter().map(|s| (s.0, s.1)))) fill="none" stroke=(colour) stroke-width="2" {}
                @for step in curve.steps.iter().filter(|s| s.5 > 0) {
                    line x1=(format!("{:.1}", x(step.0))) x2=(format!("{:.1}", x(step.0)))
                         y1=(format!("{:.1}", y(step.1) - 4.0)) y2=(format!("{:.1}", y(step.1) + 4.0)) stroke=(colour) {}
                }
                rect x=(left + plot_w - 190.0) y=(top + 8.0 + 16.0 * number as f64) width="12" height="12" fill=(colour) {}
                text x=(left + plot_w - 172.0) y=(top + 18.0 + 16.0 * number as f64) font-size="12" { (curve.name) }
            }
            text x=(left) y=(HEIGHT - 2.0) font-size="11" { "Days from the index date; survival on the left. Shaded: 95% confidence bands. Ticks: censored." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside HTML, SVG is foreign content: a tag left open nests everything after it, which
    /// then is not drawn.
    #[test]
    fn charts_close_every_element() {
        let judged = vec![crate::analytics::Period {
            t: 2,
            label: "W2".into(),
            observed: 5.0,
            upperbound: Some(3.0),
            alarm: true,
        }];
        let curve = crate::analytics::Curve {
            name: "A".into(),
            steps: vec![(0.0, 1.0, 1.0, 1.0, 3, 0), (5.0, 0.5, 0.2, 0.8, 3, 1)],
        };
        let charts = [
            epidemic_curve(&[1.0, 5.0], &judged, "x").into_string(),
            kaplan_meier(&[&curve], "y").into_string(),
            sparkline(&[1.0, 2.0], 10, 10, "z").into_string(),
        ];
        for svg in charts {
            for tag in ["line", "rect", "path", "polyline", "circle"] {
                let opened = svg.matches(&format!("<{tag} ")).count();
                assert_eq!(opened, svg.matches(&format!("</{tag}>")).count(), "{tag}: {svg}");
            }
            assert!(svg.contains("<path") || svg.contains("<polyline"), "{svg}");
        }
    }

    #[test]
    fn sparklines_scale_into_their_box_and_say_what_they_show() {
        let svg = sparkline(&[1.0, 3.0, 2.0], 100, 20, "weight <kg>").into_string();
        assert!(svg.contains("points=\"2.0,18.0 50.0,2.0 98.0,10.0\""), "{svg}");
        assert!(svg.contains("aria-label=\"weight &lt;kg&gt;\""), "{svg}");
        assert!(sparkline(&[1.0], 100, 20, "x").into_string().is_empty());
    }
}
