//! Small line plots as PNG files (the loss per pass of a reconstruction, an FRC curve), so a
//! run can be judged at a glance without a Python session. Axes, ticks with numbers and a
//! title in a built-in 5 × 7 pixel font; no dependency beyond the `png` encoder the previews
//! already use.

use std::path::Path;

use crate::{Error, Result};

/// One curve: its points `(x, y)`, an RGB colour and whether to draw it dashed.
#[derive(Debug, Clone)]
pub struct Series {
    /// The points in data units; non-finite points break the line.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub rgb: [u8; 3],
    /// Dashed line (e.g. a threshold).
    pub dashed: bool,
}

/// A plot: title, axis labels, curves, and whether the y axis is logarithmic.
#[derive(Debug, Clone)]
pub struct Plot {
    /// Title over the plot (upper-case letters, digits and `.,:-+/()=%<>` are drawn; other
    /// characters are left blank).
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label beside the y axis (drawn over the plot's top-left corner).
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
    /// Logarithmic y axis (non-positive values are left out).
    pub log_y: bool,
    /// Fixed y range, or `None` for the data's range.
    pub y_range: Option<(f64, f64)>,
}

/// Blue, for the main curve.
pub const BLUE: [u8; 3] = [31, 88, 180];
/// Red, for a second curve or a threshold.
pub const RED: [u8; 3] = [200, 40, 40];
/// Green.
pub const GREEN: [u8; 3] = [30, 140, 60];

const WIDTH: usize = 640;
const HEIGHT: usize = 400;
const LEFT: usize = 78;
const RIGHT: usize = 20;
const TOP: usize = 40;
const BOTTOM: usize = 50;

struct Canvas {
    rgb: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Canvas {
            rgb: vec![255; WIDTH * HEIGHT * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let i = (y as usize * WIDTH + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A line of width 2 (Bresenham), dashed if asked.
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], dashed: bool) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i64;
        for s in 0..=steps {
            if dashed && (s / 6) % 2 == 1 {
                continue;
            }
            let t = s as f64 / steps as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            let (x, y) = (x.round() as i64, y.round() as i64);
            self.set(x, y, c);
            self.set(x, y + 1, c);
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            for (dy, bits) in rows.iter().enumerate() {
                for dx in 0..5 {
                    if bits & (0b10000 >> dx) != 0 {
                        self.set((x + k * 6 + dx) as i64, (y + dy) as i64, c);
                    }
                }
            }
        }
    }
}

/// Width in pixels of `s` in the built-in font.
fn text_width(s: &str) -> usize {
    s.chars().count() * 6
}

/// The 5 × 7 glyph of `c` (rows top to bottom, bit 4 = left column); blank if unknown.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 17, 10, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        '/' => [0, 1, 2, 4, 8, 16, 0],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '<' => [2, 4, 8, 16, 8, 4, 2],
        '>' => [8, 4, 2, 1, 2, 4, 8],
        _ => [0; 7],
    }
}

/// About five "nice" tick values (1, 2 or 5 × 10ⁿ apart) covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi + 1e-9 * span && out.len() < 20 {
        out.push(if v.abs() < 1e-12 * span { 0.0 } else { v });
        v += step;
    }
    out
}

/// A tick label: short, in plain or exponent notation.
fn label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.0e}")
    }
}

impl Plot {
    /// Renders the plot and writes it as an RGB PNG to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let rgb = self.render()?;
        let io = |e: std::io::Error| Error::io(path, e);
        let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let mut enc = png::Encoder::new(file, WIDTH as u32, HEIGHT as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let fail = |e: png::EncodingError| Error::file(path, format!("PNG encoding: {e}"));
        let mut w = enc.write_header().map_err(fail)?;
        w.write_image_data(&rgb).map_err(fail)
    }

    /// The RGB pixels (`640 × 400 × 3`, row-major).
    pub fn render(&self) -> Result<Vec<u8>> {
        let fy = |y: f64| if self.log_y { y.log10() } else { y };
        let usable =
            |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0);
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(usable)
            .collect();
        if pts.is_empty() {
            return Err(Error::param("plot", "no finite points to draw"));
        }
        let (mut x0, mut x1) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = match self.y_range {
            Some((a, b)) => (fy(a), fy(b)),
            None => pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
                (a.min(fy(p.1)), b.max(fy(p.1)))
            }),
        };
        if x1 <= x0 {
            (x0, x1) = (x0 - 0.5, x0 + 0.5);
        }
        if y1 <= y0 {
            (y0, y1) = (y0 - 0.5, y0 + 0.5);
        }
        if self.y_range.is_none() && !self.log_y {
            let pad = 0.05 * (y1 - y0);
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        let (pw, ph) = (
            (WIDTH - LEFT - RIGHT) as f64,
            (HEIGHT - TOP - BOTTOM) as f64,
        );
        let px = |x: f64| LEFT as f64 + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP as f64 + (1.0 - (fy(y) - y0) / (y1 - y0)) * ph;
        let mut c = Canvas::new();
        let black = [0, 0, 0];
        let grey = [200, 200, 200];
        // Ticks and grid.
        for t in ticks(x0, x1) {
            let x = px(t);
            c.line((x, TOP as f64), (x, (HEIGHT - BOTTOM) as f64), grey, false);
            let s = label(t);
            c.text(
                (x as usize).saturating_sub(text_width(&s) / 2),
                HEIGHT - BOTTOM + 8,
                &s,
                black,
            );
        }
        let y_ticks: Vec<f64> = if self.log_y {
            // 1, 2 and 5 × 10ⁿ inside the range; powers of ten alone when it spans decades.
            let (e0, e1) = (y0.floor() as i32, y1.ceil() as i32);
            let mults: &[f64] = if y1 - y0 > 2.0 {
                &[1.0]
            } else {
                &[1.0, 2.0, 5.0]
            };
            (e0..=e1)
                .flat_map(|e| mults.iter().map(move |k| k * 10f64.powi(e)))
                .filter(|v| (y0..=y1).contains(&v.log10()))
                .collect()
        } else {
            ticks(y0, y1)
        };
        for t in y_ticks {
            let y = py(t);
            c.line((LEFT as f64, y), ((WIDTH - RIGHT) as f64, y), grey, false);
            let s = label(t);
            c.text(
                LEFT.saturating_sub(text_width(&s) + 6),
                (y as usize).saturating_sub(3),
                &s,
                black,
            );
        }
        // Frame.
        let (l, r, t, b) = (
            LEFT as f64,
            (WIDTH - RIGHT) as f64,
            TOP as f64,
            (HEIGHT - BOTTOM) as f64,
        );
        for (p, q) in [
            ((l, t), (r, t)),
            ((r, t), (r, b)),
            ((r, b), (l, b)),
            ((l, b), (l, t)),
        ] {
            c.line(p, q, black, false);
        }
        // Curves, clipped to the frame.
        for s in &self.series {
            let mut last: Option<(f64, f64)> = None;
            for p in &s.points {
                if !usable(p) {
                    last = None;
                    continue;
                }
                let q = (px(p.0), py(p.1).clamp(t, b));
                if let Some(prev) = last {
                    c.line(prev, q, s.rgb, s.dashed);
                }
                last = Some(q);
            }
            if s.points.len() == 1 {
                if let Some(p) = s.points.first().filter(|p| usable(p)) {
                    let (x, y) = (px(p.0), py(p.1));
                    c.line((x - 3.0, y), (x + 3.0, y), s.rgb, false);
                }
            }
        }
        c.text(
            (WIDTH - text_width(&self.title)) / 2,
            14,
            &self.title,
            black,
        );
        c.text(
            (WIDTH - text_width(&self.x_label)) / 2,
            HEIGHT - 18,
            &self.x_label,
            black,
        );
        c.text(8, 26, &self.y_label, black);
        Ok(c.rgb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(3.0, 47.0);
        assert_eq!(t, vec![10.0, 20.0, 30.0, 40.0]);
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(2e-5), "2e-5");
    }

    /// A rising line is drawn from bottom left to top right in its colour, the frame in black.
    #[test]
    fn a_line_lands_where_its_points_are() {
        let plot = Plot {
            title: "TEST".into(),
            x_label: "X".into(),
            y_label: "Y".into(),
            series: vec![Series {
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                rgb: RED,
                dashed: false,
            }],
            log_y: false,
            y_range: Some((0.0, 1.0)),
        };
        let rgb = plot.render().unwrap();
        let at = |x: usize, y: usize| {
            let i = (y * WIDTH + x) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        // The middle of the diagonal.
        let (mx, my) = ((LEFT + WIDTH - RIGHT) / 2, (TOP + HEIGHT - BOTTOM) / 2);
        let near_red = (0..3).any(|d| at(mx, my - 1 + d) == RED);
        assert!(near_red);
        assert_eq!(at(LEFT, TOP + 10), [0, 0, 0]);
        // Off the curve: white.
        assert_eq!(at(LEFT + 20, TOP + 20), [255, 255, 255]);
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let plot = Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                points: vec![(0.0, -1.0)],
                rgb: BLUE,
                dashed: false,
            }],
            log_y: true,
            y_range: None,
        };
        assert!(plot.render().is_err());
    }
}
