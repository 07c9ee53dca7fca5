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
            polyline points=(points.join(" ")) fill="none" stroke="#0b4f8a" stroke-width="1.5";
            circle cx=(last_x) cy=(last_y) r="2.5" fill="#0b4f8a";
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
                line x1="0" x2=(width) y1=(format!("{:.1}", y(threshold))) y2=(format!("{:.1}", y(threshold))) stroke="#b00020" stroke-dasharray="3 3";
            }
            polyline points=(points.join(" ")) fill="none" stroke="#0b4f8a" stroke-width="1.5";
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_into_their_box_and_say_what_they_show() {
        let svg = sparkline(&[1.0, 3.0, 2.0], 100, 20, "weight <kg>").into_string();
        assert!(svg.contains("points=\"2.0,18.0 50.0,2.0 98.0,10.0\""), "{svg}");
        assert!(svg.contains("aria-label=\"weight &lt;kg&gt;\""), "{svg}");
        assert!(sparkline(&[1.0], 100, 20, "x").into_string().is_empty());
    }
}
