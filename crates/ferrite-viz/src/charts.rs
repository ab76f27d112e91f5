//! Charts drawn with `plotters`: training curves and confusion-matrix heatmaps.

use std::sync::Once;

use image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// plotters finds fonts by family name; register the embedded DejaVu Sans once.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Only fails if the bytes are not a font; they are the bundled DejaVu Sans.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One line of a chart: a name and (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn draw_error<E: std::fmt::Debug>(e: E) -> crate::VizError {
    crate::VizError::Draw(format!("{e:?}"))
}

/// Side-by-side panels (e.g. loss and accuracy), each with its series, sharing the x label.
pub fn line_panels(
    title: &str,
    x_label: &str,
    panels: &[(&str, Vec<Series>)],
) -> Result<RgbImage, crate::VizError> {
    register_font();
    let (width, height) = (560 * panels.len().max(1) as u32, 420);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(draw_error)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for ((y_label, series), area) in panels.iter().zip(&areas) {
            let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
            let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
            let (x_min, x_max) = bounds(xs);
            let (y_min, y_max) = bounds(ys);
            let pad = ((y_max - y_min) * 0.05).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x_min..x_max.max(x_min + 1.0), (y_min - pad)..(y_max + pad))
                .map_err(draw_error)?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(*y_label)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw_error)?;
            for (i, s) in series.iter().enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(
                        // Markers too: a one-epoch phase is a single point.
                        LineSeries::new(s.points.clone(), colour.stroke_width(2)).point_size(3),
                    )
                    .map_err(draw_error)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| crate::VizError::Draw("buffer size".into()))
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

/// A confusion-matrix heatmap: rows are true classes, columns predictions; each cell shows
/// the count and is shaded by its share of the row (recall for the diagonal).
pub fn confusion_heatmap(
    title: &str,
    classes: &[String],
    counts: &[u64],
) -> Result<RgbImage, crate::VizError> {
    register_font();
    let k = classes.len();
    let cell = 72u32;
    let (left, top) = (110u32, 70u32);
    let (width, height) = (left + cell * k as u32 + 20, top + cell * k as u32 + 60);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let text = |size| ("sans-serif", size).into_font().color(&BLACK);
        root.draw(&Text::new(title.to_string(), (10, 10), text(18)))
            .map_err(draw_error)?;
        root.draw(&Text::new("predicted →", (left as i32, 36), text(14)))
            .map_err(draw_error)?;
        for (t, true_name) in classes.iter().enumerate() {
            let row_total: u64 = counts[t * k..(t + 1) * k].iter().sum::<u64>().max(1);
            let y = (top + cell * t as u32) as i32;
            root.draw(&Text::new(
                true_name.clone(),
                (8, y + cell as i32 / 2 - 8),
                text(14),
            ))
            .map_err(draw_error)?;
            for (p, _) in classes.iter().enumerate() {
                let n = counts[t * k + p];
                let share = n as f64 / row_total as f64;
                let x = (left + cell * p as u32) as i32;
                let shade = (255.0 * (1.0 - share)) as u8;
                let fill = if t == p {
                    RGBColor(shade, 255 - (255 - shade) / 3, shade)
                } else {
                    RGBColor(255, shade, shade)
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32 - 2, y + cell as i32 - 2)],
                    fill.filled(),
                ))
                .map_err(draw_error)?;
                let ink = if share > 0.6 { WHITE } else { BLACK };
                let label = ("sans-serif", 15).into_font().color(&ink);
                root.draw(&Text::new(
                    n.to_string(),
                    (x + 8, y + cell as i32 / 2 - 8),
                    label,
                ))
                .map_err(draw_error)?;
            }
        }
        let bottom = (top + cell * k as u32 + 8) as i32;
        for (p, name) in classes.iter().enumerate() {
            let x = (left + cell * p as u32) as i32;
            root.draw(&Text::new(
                name.chars().take(8).collect::<String>(),
                (x + 4, bottom),
                text(13),
            ))
            .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| crate::VizError::Draw("buffer size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_and_heatmap_render() {
        let series = |name: &str, f: fn(f64) -> f64| Series {
            name: name.to_string(),
            points: (1..=5).map(|e| (e as f64, f(e as f64))).collect(),
        };
        let image = line_panels(
            "training",
            "epoch",
            &[
                (
                    "loss",
                    vec![
                        series("train", |e| 2.0 / e),
                        series("validation", |e| 2.2 / e),
                    ],
                ),
                ("accuracy", vec![series("train", |e| e / 10.0)]),
            ],
        )
        .unwrap();
        assert_eq!(image.width(), 1120);
        assert!(image.pixels().any(|p| p.0 != [255, 255, 255]));
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let heat = confusion_heatmap("confusion", &classes, &[5, 1, 0, 2, 7, 1, 0, 0, 9]).unwrap();
        assert!(heat.width() > 300);
    }
}
