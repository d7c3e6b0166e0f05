//! Charts drawn on the server as SVG: one stacked bar per minute of the last hour (delivered,
//! deferred, bounced), so the Overview works without a script and the live refresh only swaps
//! markup.

use maud::{Markup, PreEscaped, html};

use crate::events::history::Counts;

const WIDTH: u64 = 600;
const HEIGHT: u64 = 120;

/// Stacked bars for `minutes` (oldest first), scaled to the busiest minute.
pub fn minutes_chart(label: &str, minutes: &[Counts]) -> Markup {
    let peak = minutes
        .iter()
        .map(|c| c.delivered + c.deferred + c.bounced)
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = WIDTH / (minutes.len().max(1) as u64);
    let bar = slot.saturating_sub(1).max(1);
    let scale = |n: u64| n * HEIGHT / peak;
    let mut rects = String::new();
    for (index, counts) in minutes.iter().enumerate() {
        let x = index as u64 * slot;
        let mut bottom = HEIGHT;
        for (value, class) in [
            (counts.delivered, "delivered"),
            (counts.deferred, "deferred"),
            (counts.bounced, "bounced"),
        ] {
            let height = scale(value);
            if height == 0 {
                continue;
            }
            bottom -= height;
            // Only numbers and fixed class names go into this markup.
            rects.push_str(&format!(
                r#"<rect class="{class}" x="{x}" y="{bottom}" width="{bar}" height="{height}"><title>{value} {class}</title></rect>"#
            ));
        }
    }
    let total = minutes.iter().fold(Counts::default(), |mut sum, c| {
        sum.delivered += c.delivered;
        sum.deferred += c.deferred;
        sum.bounced += c.bounced;
        sum
    });
    html! {
        figure.chart {
            figcaption {
                strong { (label) } " — last hour: "
                span.delivered { (total.delivered) " delivered" } ", "
                span.deferred { (total.deferred) " deferred" } ", "
                span.bounced { (total.bounced) " bounced" }
                " (peak " (peak) "/min)"
            }
            svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT)
                viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label={(label) " per minute"} {
                (PreEscaped(rects))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_minute_and_labels_are_escaped() {
        let mut minutes = vec![Counts::default(); 60];
        minutes[59] = Counts {
            delivered: 10,
            deferred: 5,
            bounced: 5,
        };
        minutes[0] = Counts {
            delivered: 5,
            deferred: 0,
            bounced: 0,
        };
        let svg = minutes_chart("<pool>", &minutes).into_string();
        assert!(svg.contains("&lt;pool&gt;"), "{svg}");
        assert!(
            svg.contains(r#"class="delivered" x="590" y="60" width="9" height="60""#),
            "{svg}"
        );
        assert!(svg.contains(r#"class="bounced" x="590" y="0""#), "{svg}");
        assert!(
            svg.contains(r#"class="delivered" x="0" y="90" width="9" height="30""#),
            "{svg}"
        );
        assert!(svg.contains("15 delivered"), "{svg}");
        assert!(svg.contains("(peak 20/min)"), "{svg}");
    }
}
