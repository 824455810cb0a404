//! PNG charts with plotters' bitmap backend. Text is drawn with DejaVu Sans
//! read at run time (Debian's fonts-dejavu-core, installed by `cargo xtask
//! setup`), so no system font library is linked.

use std::{path::Path, sync::OnceLock};

use anyhow::{Context as _, Result, anyhow, ensure};
use plotters::{
    prelude::*,
    style::{
        FontStyle, register_font,
        text_anchor::{HPos, Pos, VPos},
    },
};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (1200, 675);

/// One line, or one colour of bars.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(120, 120, 120),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// Registers the font once per process; plotters keeps it for `'static`.
fn font() -> Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| {
                format!(
                    "cannot read {FONT} ({e}): run `cargo xtask setup` to install fonts-dejavu-core"
                )
            })?;
            register_font(
                "sans-serif",
                FontStyle::Normal,
                Box::leak(bytes.into_boxed_slice()),
            )
            .map_err(|_| format!("{FONT} is not a usable font: reinstall fonts-dejavu-core"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// plotters' errors borrow nothing but are not all `Sync`; keep the text.
fn plot<T, E: std::fmt::Debug>(r: Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow!("drawing the chart: {e:?}"))
}

/// The smallest and largest value, widened when they are equal.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return None;
    }
    Some(if lo == hi {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    })
}

/// 1000 → "1k", 1e6 → "1M": the labels of a log axis.
fn si(v: f64) -> String {
    let (v, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{suffix}", crate::report::fmt_num(v))
}

/// Lines through each series' points, y from zero. With `log_x` the x axis
/// is logarithmic with a label at each power of ten.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    series: &[Series],
) -> Result<()> {
    font()?;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = if log_x {
        ensure!(
            series.iter().flat_map(|s| &s.points).all(|p| p.0 > 0.0),
            "chart {title}: a log axis needs x > 0"
        );
        let (lo, hi) = span(xs.map(f64::log10)).context("chart has no points")?;
        (lo.floor(), hi.ceil())
    } else {
        span(xs).context("chart has no points")?
    };
    let (_, y1) = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)))
        .context("chart has no points")?;
    let to_x = |x: f64| if log_x { x.log10() } else { x };
    let x_fmt = |v: &f64| if log_x { si(10f64.powf(*v)) } else { si(*v) };
    let y_fmt = |v: &f64| crate::report::fmt_num(*v);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    plot(root.fill(&WHITE))?;
    let mut chart = plot(
        ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 28))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, 0.0..y1.max(0.0) * 1.1),
    )?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt);
    if log_x {
        mesh.x_labels((x1 - x0) as usize + 1);
    }
    plot(mesh.draw())?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (to_x(x), y)).collect();
        plot(chart.draw_series(LineSeries::new(points.clone(), c.stroke_width(3))))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        plot(chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled()))))?;
    }
    plot(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw(),
    )?;
    plot(root.present()).with_context(|| format!("writing {}", path.display()))
}

/// Grouped bars: one group per name in `groups`, one bar per series in each
/// group where the series has a point whose x is that group's index. Each
/// bar is labelled with its value.
pub fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[Series],
) -> Result<()> {
    font()?;
    ensure!(!groups.is_empty(), "chart {title} has no groups");
    let (_, y1) = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)))
        .context("chart has no points")?;
    let n = groups.len() as f64;
    let width = 0.8 / series.len().max(1) as f64;

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    plot(root.fill(&WHITE))?;
    let mut chart = plot(
        ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 28))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            // Headroom above the bars for the legend.
            .build_cartesian_2d(0.0..n, 0.0..y1.max(0.0) * 1.4),
    )?;
    plot(
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|v| crate::report::fmt_num(*v))
            .y_desc(y_label)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw(),
    )?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        let left = |g: f64| g + 0.1 + width * i as f64;
        plot(
            chart.draw_series(
                s.points.iter().map(|&(g, y)| {
                    Rectangle::new([(left(g), 0.0), (left(g) + width, y)], c.filled())
                }),
            ),
        )?
        .label(s.name.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
        plot(chart.draw_series(s.points.iter().map(|&(g, y)| {
            Text::new(
                crate::report::fmt_num(y),
                (left(g) + width / 2.0, y),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        })))?;
    }
    // Group names go under the axis, centred on their group, in pixels: the
    // plotting area would clip them.
    for (g, name) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        plot(
            root.draw(&Text::new(
                name.as_str(),
                (x, y + 8),
                ("sans-serif", 15)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            )),
        )?;
    }
    plot(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw(),
    )?;
    plot(root.present()).with_context(|| format!("writing {}", path.display()))
}
