//! Writing samples as a PNG grid.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `samples` (`[batch, channels, height, width]`, values in [-1, 1]) as one PNG grid,
/// `ceil(sqrt(batch))` images wide, each value mapped by `x / 2 + 0.5` and clamped to [0, 1].
/// One channel is written as grey, three as RGB.
pub fn write_png_grid(path: &Path, samples: &[f32], shape: [usize; 4]) -> Result<()> {
    let [batch, channels, h, w] = shape;
    if samples.len() != batch * channels * h * w || batch == 0 {
        return Err(Error::Invalid(format!(
            "{} values do not make {shape:?} images",
            samples.len()
        )));
    }
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        other => {
            return Err(Error::Invalid(format!(
                "{other}-channel samples cannot be written as PNG (1 or 3 channels)"
            )));
        }
    };
    let columns = (batch as f64).sqrt().ceil() as usize;
    let rows = batch.div_ceil(columns);
    let (width, height) = (columns * w, rows * h);
    let mut pixels = vec![0u8; width * height * channels];
    for b in 0..batch {
        let (gx, gy) = ((b % columns) * w, (b / columns) * h);
        for c in 0..channels {
            for y in 0..h {
                for x in 0..w {
                    let v = samples[((b * channels + c) * h + y) * w + x];
                    let unit = (v / 2.0 + 0.5).clamp(0.0, 1.0);
                    pixels[((gy + y) * width + gx + x) * channels + c] =
                        (unit * 255.0).round() as u8;
                }
            }
        }
    }
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let fail = |e: png::EncodingError| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)
}
