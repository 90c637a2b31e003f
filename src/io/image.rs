//! Writing samples as a PNG grid.

use std::path::Path;

use crate::error::{Error, Result};

/// Pixels between neighbouring images of a grid, and their value.
const GUTTER: usize = 1;
const GUTTER_GREY: u8 = 128;

/// Writes `samples` (`[batch, channels, height, width]`, values in [-1, 1]) as one PNG grid,
/// `ceil(sqrt(batch))` images wide, each value mapped by `x / 2 + 0.5` and clamped to [0, 1].
/// Images are separated by a one-pixel grey gutter. One channel is written as grey, three as
/// RGB.
pub fn write_png_grid(path: &Path, samples: &[f32], shape: [usize; 4]) -> Result<()> {
    let encoded = png_grid(samples, shape)?;
    // Through a temporary name: a failed write leaves no half image behind.
    super::files::write_atomically(path, &encoded)
}

/// The PNG file [`write_png_grid`] writes, in memory (a web page shows it as it is).
pub fn png_grid(samples: &[f32], shape: [usize; 4]) -> Result<Vec<u8>> {
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
    let (width, height) = (
        columns * (w + GUTTER) - GUTTER,
        rows * (h + GUTTER) - GUTTER,
    );
    let mut pixels = vec![GUTTER_GREY; width * height * channels];
    for b in 0..batch {
        let (gx, gy) = ((b % columns) * (w + GUTTER), (b / columns) * (h + GUTTER));
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
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, width as u32, height as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    // Encoding into memory fails only on parameters checked above.
    let fail = |e: png::EncodingError| Error::Invalid(format!("cannot encode the PNG: {e}"));
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_each_image_between_gutters() {
        // three 1-channel 2x2 images -> a 2x2 grid of cells, 5x5 pixels
        let samples: Vec<f32> = (0..12).map(|i| if i < 4 { -1.0 } else { 1.0 }).collect();
        let path = std::env::temp_dir().join(format!("tessera-grid-{}.png", std::process::id()));
        write_png_grid(&path, &samples, [3, 1, 2, 2]).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!((info.width, info.height), (5, 5));
        let at = |x: usize, y: usize| pixels[y * 5 + x];
        assert_eq!(at(0, 0), 0); // image 0 is black
        assert_eq!(at(2, 0), GUTTER_GREY);
        assert_eq!(at(3, 1), 255); // image 1 is white
        assert_eq!(at(1, 3), 255); // image 2, second row
        assert_eq!(at(4, 4), GUTTER_GREY); // the empty fourth cell
    }

    #[test]
    fn grid_rejects_a_wrong_length_or_channel_count() {
        let path = std::env::temp_dir().join("tessera-never-written.png");
        assert!(write_png_grid(&path, &[0.0; 7], [2, 1, 2, 2]).is_err());
        assert!(write_png_grid(&path, &[0.0; 16], [2, 2, 2, 2]).is_err());
    }
}
