//! Writers for what a run leaves behind: `.npy` arrays (numpy reads them), `.png` previews and
//! JSON reports. Every error names the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use npyz::WriterBuilder;

use crate::{Error, Result};

/// Creates `dir` (and its parents) or explains why it cannot be used as an output directory.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Probe that files can be created there (a read-only mount passes create_dir_all).
    let probe = dir.join(".ptyflow-write-test");
    File::create(&probe).map_err(|e| Error::io(dir, e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes `data` (C order) with `shape` as a `.npy` file. The element type sets the dtype:
/// `f32` → `<f4`, `f64` → `<f8`, `u64` → `<u8`, `Complex32` → `<c8`, …
pub fn write_npy<T>(path: &Path, shape: &[usize], data: &[T]) -> Result<()>
where
    T: npyz::AutoSerialize + Copy,
{
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(Error::file(
            path,
            format!(
                "internal: {} elements for shape {shape:?} ({expected})",
                data.len()
            ),
        ));
    }
    let io = |e| Error::io(path, e);
    let file = BufWriter::new(File::create(path).map_err(io)?);
    let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&shape)
        .writer(file)
        .begin_nd()
        .map_err(io)?;
    writer.extend(data.iter().copied()).map_err(io)?;
    writer.finish().map_err(io)
}

/// Reads a `.npy` file of element type `T`, returning its shape and data (C order).
pub fn read_npy<T: npyz::Deserialize>(path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| Error::format(path, 0, format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err(Error::format(
            path,
            0,
            "Fortran-ordered array; expected C order",
        ));
    }
    let dtype = npy.dtype();
    let data = npy.into_vec::<T>().map_err(|e| {
        Error::format(
            path,
            0,
            format!(
                "dtype {} does not match the expected element type: {e}",
                dtype.descr()
            ),
        )
    })?;
    Ok((shape, data))
}

/// Smallest side of a preview: smaller images are enlarged by an integer factor (nearest
/// neighbour), so a 10 × 10 scan's virtual image is still visible.
const PREVIEW_MIN_SIDE: usize = 256;

/// Enlarging stops before the longer side passes this (a 1 × 10⁴ line scan would otherwise
/// make a 2.56 M × 256 pixel image).
const PREVIEW_MAX_SIDE: usize = 4096;

/// Writes a grey-scale 8-bit PNG preview of a row-major `height × width` image.
///
/// Values are mapped linearly from the 0.5th to the 99.5th percentile of the finite values to
/// 0…255 (robust against a few hot pixels); NaN is drawn black. A constant image is mid-grey.
/// Images whose smaller side is below 256 pixels are enlarged by the integer factor that
/// brings it to at least 256 (each value becomes a block of pixels), as long as the longer
/// side stays within 4096 pixels.
pub fn write_png(path: &Path, width: usize, height: usize, data: &[f32]) -> Result<()> {
    if width.checked_mul(height) != Some(data.len()) || width == 0 {
        return Err(Error::file(
            path,
            format!(
                "internal: {} values for a {width}×{height} image",
                data.len()
            ),
        ));
    }
    let (lo, hi) = percentile_range(data, 0.005);
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let pixels: Vec<u8> = data
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                0
            } else if scale == 0.0 {
                128
            } else {
                ((v - lo) * scale).round().clamp(0.0, 255.0) as u8
            }
        })
        .collect();
    let scale = PREVIEW_MIN_SIDE
        .div_ceil(width.min(height))
        .min(PREVIEW_MAX_SIDE / width.max(height))
        .max(1);
    let pixels: Vec<u8> = if scale == 1 {
        pixels
    } else {
        pixels
            .chunks_exact(width)
            .flat_map(|row| {
                let wide: Vec<u8> = row
                    .iter()
                    .flat_map(|&p| std::iter::repeat_n(p, scale))
                    .collect();
                std::iter::repeat_n(wide, scale).flatten()
            })
            .collect()
    };
    let (width, height) = (width * scale, height * scale);
    let (Ok(png_width), Ok(png_height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(Error::file(
            path,
            format!("a {width} × {height} image is beyond what PNG can hold"),
        ));
    };
    let io = |e| Error::io(path, e);
    let file = BufWriter::new(File::create(path).map_err(io)?);
    let mut encoder = png::Encoder::new(file, png_width, png_height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| Error::file(path, format!("PNG encoding failed: {e}"));
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

/// The `q` and `1 − q` quantiles of the finite values (`(0, 0)` when there are none).
fn percentile_range(data: &[f32], q: f64) -> (f32, f32) {
    let mut finite: Vec<f32> = data.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return (0.0, 0.0);
    }
    finite.sort_unstable_by(f32::total_cmp);
    let last = finite.len() - 1;
    let at = |p: f64| finite[((p * last as f64).round() as usize).min(last)];
    (at(q), at(1.0 - q))
}

/// Writes `value` as pretty-printed JSON.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut file = BufWriter::new(File::create(path).map_err(io)?);
    serde_json::to_writer_pretty(&mut file, value)
        .map_err(|e| Error::file(path, format!("JSON encoding failed: {e}")))?;
    file.write_all(b"\n").map_err(io)?;
    file.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex32;

    #[test]
    fn npy_round_trips_f32_and_complex() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let p = dir.path().join("a.npy");
        write_npy(&p, &[3, 4], &a).unwrap();
        let (shape, back) = read_npy::<f32>(&p).unwrap();
        assert_eq!((shape, back), (vec![3, 4], a));

        let z: Vec<Complex32> = (0..6)
            .map(|i| Complex32::new(i as f32, -(i as f32)))
            .collect();
        let p = dir.path().join("z.npy");
        write_npy(&p, &[2, 3], &z).unwrap();
        let (shape, back) = read_npy::<Complex32>(&p).unwrap();
        assert_eq!((shape, back), (vec![2, 3], z));
        // numpy's header says complex64, little-endian.
        let head = std::fs::read(&p).unwrap();
        assert!(String::from_utf8_lossy(&head[..128]).contains("'<c8'"));
    }

    #[test]
    fn npy_rejects_wrong_dtype_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        assert!(write_npy(&p, &[2, 2], &[1.0f32; 3]).is_err());
        write_npy(&p, &[2], &[1u64, 2]).unwrap();
        let e = read_npy::<f32>(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("dtype"), "{e}");
    }

    #[test]
    fn png_preview_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.png");
        let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
        write_png(&p, 8, 8, &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(write_png(&p, 7, 8, &data).is_err());
        assert!(write_png(&p, usize::MAX, 2, &data).is_err());
    }

    /// Issue 20: a line scan is enlarged only as far as 4096 pixels along its length.
    #[test]
    fn png_previews_of_long_thin_images_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("line.png");
        let side =
            |bytes: &[u8], at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        write_png(&p, 1000, 2, &vec![1.0; 2000]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // IHDR: width at byte 16, height at byte 20; enlarged 4× (not 128×).
        assert_eq!((side(&bytes, 16), side(&bytes, 20)), (4000, 8));
        write_png(&p, 20_000, 1, &vec![1.0; 20_000]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((side(&bytes, 16), side(&bytes, 20)), (20_000, 1));
    }

    #[test]
    fn unwritable_directory_is_named() {
        let e = ensure_dir(Path::new("/proc/ptyflow-cannot-exist"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/proc/ptyflow-cannot-exist"), "{e}");
    }
}
