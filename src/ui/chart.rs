//! Bar charts drawn on the server as SVG: no script, no third-party library, and the
//! colours come from the stylesheet's custom properties (`currentColor` for text), so a
//! chart follows the theme. Every chart carries a title and a description for screen
//! readers, and the page shows the same numbers as a table beside it.
//!
//! This module only places things: [`BarChart::new`] turns values into rectangles,
//! grid lines and labels in a fixed view box; `templates/ui/chart.html` writes them
//! out, escaped like every other template.

/// The view box; the SVG scales to its container's width.
pub const WIDTH: i64 = 720;
pub const HEIGHT: i64 = 200;
const LEFT: i64 = 64;
const RIGHT: i64 = 8;
const TOP: i64 = 12;
const BOTTOM: i64 = 34;
/// At most this many labels under the bars, so they never overlap.
const X_LABELS: usize = 6;

/// One value to draw: `label` in full (the table's), `short` under the bar, `href`
/// where the bar and its table row lead.
pub struct Bar {
    pub label: String,
    pub short: String,
    pub value: i64,
    pub href: String,
}

/// A bar with its place in the view box.
pub struct Placed {
    pub bar: Bar,
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// Where its label is anchored: the centre, or for the newest bar its right edge
    /// (`anchor` "end"), so the label stays inside the view box.
    pub label_x: i64,
    pub anchor: &'static str,
    /// Whether its short label is drawn.
    pub labelled: bool,
    /// Whether that label is one of those left out on narrow screens (every other).
    pub minor: bool,
}

/// A horizontal grid line with its value at the left.
pub struct Tick {
    pub y: i64,
    pub value: i64,
}

pub struct BarChart {
    /// Unique on the page: the SVG's title and description are found by it.
    pub id: &'static str,
    pub title: String,
    /// What the bars count and their total, as a sentence.
    pub summary: String,
    /// `bar-danger` for failures; the colour is the stylesheet's.
    pub tone: &'static str,
    pub bars: Vec<Placed>,
    pub ticks: Vec<Tick>,
    pub width: i64,
    pub height: i64,
    pub left: i64,
    pub right_edge: i64,
    pub baseline: i64,
    pub label_y: i64,
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `max` (at least 1), so the
/// top grid line is a round number.
pub fn nice_ceiling(max: i64) -> i64 {
    if max <= 1 {
        return 1;
    }
    let mut magnitude: i64 = 1;
    while magnitude.saturating_mul(10) < max {
        magnitude = magnitude.saturating_mul(10);
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| magnitude.saturating_mul(m))
        .find(|&top| top >= max)
        .unwrap_or(i64::MAX)
}

impl BarChart {
    pub fn new(
        id: &'static str,
        title: impl Into<String>,
        what: &str,
        tone: &'static str,
        bars: Vec<Bar>,
    ) -> Self {
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let baseline = HEIGHT - BOTTOM;
        let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(0);
        let top = nice_ceiling(max);
        let total: i64 = bars.iter().map(|b| b.value.max(0)).sum();
        let count = i64::try_from(bars.len()).unwrap_or(i64::MAX).max(1);
        let slot = plot_width / count;
        let width = (slot * 7 / 10).max(1);
        let every = bars.len().div_ceil(X_LABELS).max(1);
        let last = bars.len().saturating_sub(1);
        let placed = bars
            .into_iter()
            .enumerate()
            .map(|(i, bar)| {
                let value = bar.value.max(0);
                // Rounded to the nearest unit; anything above zero stays visible.
                let mut height = (value * plot_height + top / 2) / top;
                if value > 0 {
                    height = height.max(1);
                }
                let x = LEFT + i64::try_from(i).unwrap_or(0) * slot + (slot - width) / 2;
                Placed {
                    x,
                    y: baseline - height,
                    width,
                    height,
                    label_x: if i == last { x + width } else { x + width / 2 },
                    anchor: if i == last { "end" } else { "middle" },
                    // Counted from the newest, so the last bar is always labelled.
                    labelled: (last - i).is_multiple_of(every),
                    minor: (last - i) / every % 2 == 1,
                    bar,
                }
            })
            .collect();
        let mut ticks = vec![Tick {
            y: baseline,
            value: 0,
        }];
        if top % 2 == 0 {
            ticks.push(Tick {
                y: baseline - plot_height / 2,
                value: top / 2,
            });
        }
        ticks.push(Tick { y: TOP, value: top });
        BarChart {
            id,
            title: title.into(),
            summary: format!("{what}: {total}."),
            tone,
            bars: placed,
            ticks,
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            right_edge: WIDTH - RIGHT,
            baseline,
            label_y: HEIGHT - 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::*;

    #[derive(Template)]
    #[template(path = "ui/chart.html")]
    struct Svg<'a> {
        chart: &'a BarChart,
    }

    fn bars(values: &[i64]) -> Vec<Bar> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| Bar {
                label: format!("day {i}"),
                short: format!("d{i}"),
                value,
                href: format!("/ui/logs?day={i}"),
            })
            .collect()
    }

    #[test]
    fn the_top_of_the_scale_is_a_round_number_at_least_the_largest_value() {
        let cases = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 5),
            (7, 10),
            (10, 10),
            (11, 20),
            (99, 100),
            (101, 200),
            (4_999, 5_000),
            (5_001, 10_000),
        ];
        for (max, top) in cases {
            assert_eq!(nice_ceiling(max), top, "{max}");
        }
        assert!(nice_ceiling(i64::MAX) >= i64::MAX / 2);
    }

    #[test]
    fn bars_are_scaled_to_the_plot_and_stand_on_the_baseline() {
        let chart = BarChart::new("c", "Sign-ins", "Sign-ins", "", bars(&[0, 5, 10, 1]));
        let plot = HEIGHT - TOP - BOTTOM;
        assert_eq!(chart.summary, "Sign-ins: 16.");
        let heights: Vec<i64> = chart.bars.iter().map(|b| b.height).collect();
        assert_eq!(heights, vec![0, plot / 2, plot, (plot + 5) / 10]);
        for b in &chart.bars {
            assert_eq!(b.y + b.height, chart.baseline);
            assert!(b.x >= LEFT && b.x + b.width <= WIDTH - RIGHT);
        }
        // The newest label ends at its bar's right edge, inside the view box.
        let newest = &chart.bars[3];
        assert_eq!(
            (newest.anchor, newest.label_x),
            ("end", newest.x + newest.width)
        );
        assert_eq!(chart.bars[0].anchor, "middle");
        // Left to right in order, none overlapping.
        for pair in chart.bars.windows(2) {
            assert!(pair[0].x + pair[0].width < pair[1].x);
        }
        let ticks: Vec<i64> = chart.ticks.iter().map(|t| t.value).collect();
        assert_eq!(ticks, vec![0, 5, 10]);
        assert_eq!(chart.ticks[2].y, TOP);
    }

    #[test]
    fn a_small_value_beside_a_large_one_stays_visible() {
        let chart = BarChart::new("c", "t", "x", "", bars(&[1, 100_000]));
        assert_eq!(chart.bars[0].height, 1);
    }

    #[test]
    fn thirty_days_label_only_a_few_ending_with_the_newest() {
        let values = [1; 30];
        let chart = BarChart::new("c", "t", "x", "", bars(&values));
        let labelled: Vec<usize> = chart
            .bars
            .iter()
            .enumerate()
            .filter(|(_, b)| b.labelled)
            .map(|(i, _)| i)
            .collect();
        assert!(labelled.len() <= X_LABELS, "{labelled:?}");
        assert_eq!(labelled.last(), Some(&29));
        // On a phone every other label goes; the newest stays.
        let major: Vec<usize> = labelled
            .iter()
            .copied()
            .filter(|&i| !chart.bars[i].minor)
            .collect();
        assert!(major.len() * 2 >= labelled.len() - 1, "{major:?}");
        assert_eq!(major.last(), Some(&29));
    }

    #[test]
    fn no_data_draws_an_empty_chart_with_a_scale() {
        let chart = BarChart::new("c", "Nothing", "Events", "", Vec::new());
        assert!(chart.bars.is_empty());
        let svg = Svg { chart: &chart }.render().unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("Events: 0."), "{svg}");
        assert!(!svg.contains("<rect"), "{svg}");
        // All zeros: bars of no height, nothing to click.
        let chart = BarChart::new("c", "Zeros", "events", "", bars(&[0, 0]));
        assert!(chart.bars.iter().all(|b| b.height == 0));
        let svg = Svg { chart: &chart }.render().unwrap();
        assert!(!svg.contains("<a "), "{svg}");
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let mut data = bars(&[3]);
        data[0].label = "<script>alert(1)</script>".to_owned();
        data[0].short = "a&b".to_owned();
        data[0].href = "/ui/logs?a=1&b=\"x\"".to_owned();
        let chart = BarChart::new("c", "<b>Title</b>", "x", "", data);
        let svg = Svg { chart: &chart }.render().unwrap();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("&#60;script&#62;") || svg.contains("&lt;script&gt;"),
            "{svg}"
        );
        assert!(svg.contains("a&#38;b") || svg.contains("a&amp;b"), "{svg}");
        assert!(!svg.contains("\"x\""), "{svg}");
        assert!(svg.contains("role=\"img\""), "{svg}");
        assert!(svg.contains("aria-labelledby=\"c-title c-desc\""), "{svg}");
    }
}
