//! The online reconstruction as a pipeline stage: every frame, in scan order, is cut to the
//! reconstruction window, binned, prepared (√I, FFT order) and fed to one
//! [`Reconstructor::update`]. Runs on its own thread beside the reduction workers.

use ptyflow_core::{Binner, FrameGeometry, Scan, Window};

use super::run::OrderedConsumer;
use crate::recon::{PreparedPattern, Reconstructor};
use crate::source::Frame;
use crate::{Error, Result};

/// Object pixels beyond every window at the edge of the scan ([`ScanGeometry::raster`]'s
/// margin; [`crate::job::size::recon`] sizes the object with it).
///
/// [`ScanGeometry::raster`]: crate::recon::ScanGeometry::raster
pub const OBJECT_MARGIN_PX: usize = 2;

/// Where the reconstruction window sits on the (unbinned) detector frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReconWindow {
    /// Left column of the window.
    pub x0: usize,
    /// Top row of the window.
    pub y0: usize,
    /// Side of the window in unbinned pixels.
    pub size: usize,
    /// Bin factor: the reconstruction sees `size / bin` pixels per side (`M`).
    pub bin: usize,
    /// Transpose each pattern (swap detector x and y) before it is used.
    pub transpose: bool,
    /// Zero pixels added on each side of the binned window: the reconstruction sees
    /// `size/bin + 2·pad` pixels per side (a finer real-space pixel); the angles beyond the
    /// detector window count as measured zeros, an approximation that suits data whose signal
    /// is inside the window (e.g. a bright-field-only crop).
    pub pad: usize,
}

impl ReconWindow {
    /// A window of `size` unbinned pixels binned by `bin`, placed so that the bright-field
    /// disc centre `(cx, cy)` falls on pixel `(M/2, M/2)` of the binned window (where the
    /// reconstruction expects zero scattering angle), to the nearest pixel.
    pub fn centred(
        frame: FrameGeometry,
        size: usize,
        bin: usize,
        (cx, cy): (f64, f64),
    ) -> Result<Self> {
        if bin == 0 || size == 0 || size % bin != 0 {
            return Err(Error::param(
                "recon.window",
                format!("{size} pixels is not a positive multiple of `recon.bin` {bin}"),
            ));
        }
        let m = size / bin;
        // Binned pixel j covers unbinned x0 + b·j … ; its centre is x0 + b·j + (b − 1)/2.
        // A window that would leave the frame is moved back inside it (the disc centre is then
        // off the window centre by that many pixels: a linear phase ramp on the object).
        let place = |c: f64, limit: usize, axis: &str| -> Result<usize> {
            if size > limit {
                return Err(Error::param(
                    "recon.window",
                    format!("{size} pixels is larger than the frame's {limit} pixels along {axis}"),
                ));
            }
            let start = (c - (bin * (m / 2)) as f64 - (bin as f64 - 1.0) / 2.0).round();
            Ok((start.max(0.0) as usize).min(limit - size))
        };
        Ok(ReconWindow {
            x0: place(cx, frame.width(), "x")?,
            y0: place(cy, frame.height(), "y")?,
            size,
            bin,
            transpose: false,
            pad: 0,
        })
    }

    /// Pixels per side of the binned detector window.
    pub fn binned(&self) -> usize {
        self.size / self.bin
    }

    /// The side `M` the reconstruction sees: the binned window plus its padding.
    pub fn m(&self) -> usize {
        self.binned() + 2 * self.pad
    }
}

/// The reconstruction stage: window, binning, pattern preparation and the engine, all made
/// once; [`OrderedConsumer::consume`] allocates nothing.
#[derive(Debug)]
pub struct ReconConsumer {
    recon: Reconstructor,
    binner: Binner,
    window: ReconWindow,
    bin_u32: Vec<u32>,
    bin_f32: Vec<f32>,
    /// The `M × M` pattern when it is padded or transposed (its border stays zero).
    staged: Vec<f32>,
    pattern: PreparedPattern,
    /// The scan order: frame `index` (acquisition order) is the pattern of raster position
    /// `row · cols + col` (a serpentine scan runs odd rows right to left).
    order: Scan,
    /// Patterns left out because they held a NaN or an infinity.
    nonfinite: u64,
}

impl ReconConsumer {
    /// Builds the stage for frames of `frame` geometry.
    pub fn new(
        recon: Reconstructor,
        frame: FrameGeometry,
        window: ReconWindow,
        order: Scan,
    ) -> Result<Self> {
        let m = window.m();
        if recon.window() != m {
            return Err(Error::param(
                "recon.window",
                format!(
                    "window of {m} binned pixels, but the engine was built for {}",
                    recon.window()
                ),
            ));
        }
        let w = Window {
            x0: window.x0,
            y0: window.y0,
            width: window.size,
            height: window.size,
        };
        let binner = Binner::with_window(frame, window.bin, w)
            .map_err(|e| Error::core("recon.window/recon.bin", e))?;
        Ok(ReconConsumer {
            pattern: recon.new_pattern(),
            recon,
            binner,
            window,
            bin_u32: vec![0; window.binned().pow(2)],
            bin_f32: vec![0.0; window.binned().pow(2)],
            staged: vec![0.0; m * m],
            order,
            nonfinite: 0,
        })
    }

    /// The engine (object, probe, losses).
    pub fn reconstructor(&self) -> &Reconstructor {
        &self.recon
    }

    /// The engine, mutably (for sweeps after the scan).
    pub fn reconstructor_mut(&mut self) -> &mut Reconstructor {
        &mut self.recon
    }

    /// The window in use.
    pub fn window(&self) -> ReconWindow {
        self.window
    }

    /// Hands the engine back.
    pub fn into_reconstructor(self) -> Reconstructor {
        self.recon
    }

    /// Patterns left out because they held a NaN or an infinity (they would poison the
    /// object; the reduction leaves such frames out too).
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    fn feed<T: Copy + Into<f64>>(&mut self, index: usize, binned: &[T]) -> Result<()> {
        let (row, col) = self.order.position(index).ok_or_else(|| {
            Error::param(
                "frame index",
                format!(
                    "{index} is beyond the {} positions of the scan",
                    self.order.positions()
                ),
            )
        })?;
        let position = row * self.order.cols() + col;
        if !binned.iter().all(|&v| Into::<f64>::into(v).is_finite()) {
            self.nonfinite += 1;
            return Ok(());
        }
        let w = &self.window;
        if w.transpose || w.pad > 0 {
            let (b, m, pad) = (w.binned(), w.m(), w.pad);
            for (r, row) in binned.chunks_exact(b).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    let (y, x) = if w.transpose { (c, r) } else { (r, c) };
                    self.staged[(y + pad) * m + x + pad] = Into::<f64>::into(v) as f32;
                }
            }
            self.pattern.prepare(&self.staged)?;
        } else {
            self.pattern.prepare(binned)?;
        }
        self.recon.update(position, &self.pattern)
    }
}

impl OrderedConsumer for ReconConsumer {
    fn consume(&mut self, index: usize, frame: Frame<'_>) -> Result<()> {
        let err = |e| Error::core(format!("reconstruction window of frame {index}"), e);
        match frame {
            Frame::F32(f) => {
                let mut buf = std::mem::take(&mut self.bin_f32);
                let r = self
                    .binner
                    .bin(f, &mut buf)
                    .map_err(err)
                    .and_then(|()| self.feed(index, &buf));
                self.bin_f32 = buf;
                r
            }
            other => {
                let mut buf = std::mem::take(&mut self.bin_u32);
                let r = match other {
                    Frame::U8(f) => self.binner.bin(f, &mut buf),
                    Frame::U16(f) => self.binner.bin(f, &mut buf),
                    Frame::U32(f) => self.binner.bin(f, &mut buf),
                    Frame::F32(_) => unreachable!("handled above"),
                }
                .map_err(err)
                .and_then(|()| self.feed(index, &buf));
                self.bin_u32 = buf;
                r
            }
        }
    }
}

/// Where the probe comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeSource {
    /// Computed from the optics.
    Optics(crate::optics::ProbeParams),
    /// Read from a complex64 `.npy` of shape `M × M` (centred, any normalisation).
    File(std::path::PathBuf),
}

/// A reconstruction request: the physics and the algorithm, before the dump is known.
#[derive(Debug, Clone)]
pub struct ReconRequest {
    /// The algorithm and its parameters.
    pub method: crate::recon::Method,
    /// The probe.
    pub probe: ProbeSource,
    /// Accelerating voltage in kV (sets λ, hence the pixel size).
    pub kv: f64,
    /// Scattering angle per unbinned detector pixel, mrad.
    pub mrad_per_px: f64,
    /// Scan step in Å (rows and columns).
    pub step_angstrom: f64,
    /// Scan rotation in degrees.
    pub scan_rotation_deg: f64,
    /// Window side in unbinned pixels (`None`: the whole frame, which must be square).
    pub window: Option<usize>,
    /// Bin factor of the window.
    pub bin: usize,
    /// Transpose each pattern (swap detector x and y).
    pub transpose: bool,
    /// Zero pixels added on each side of the binned window (see [`ReconWindow::pad`]).
    pub pad: usize,
    /// Extra passes over the buffered patterns after the scan (`None`:
    /// [`default_sweeps`](crate::recon::schedule::default_sweeps) for the scan and window).
    pub sweeps: Option<usize>,
    /// How the object step is chosen.
    pub schedule: crate::recon::Schedule,
    /// The constraint on the object's modulus.
    pub object_constraint: crate::recon::ObjectConstraint,
}

impl ReconRequest {
    /// Builds the stage for frames of `frame` geometry arriving in the order of `scan`, with
    /// the window centred on `centre` (the bright-field disc; `None`: the frame centre).
    pub fn build(
        &self,
        frame: FrameGeometry,
        scan: &Scan,
        centre: Option<(f64, f64)>,
    ) -> Result<ReconConsumer> {
        use crate::optics::window_pixel_angstrom;
        use crate::recon::{RasterScan, ReconSetup, ScanGeometry};

        let size = match self.window {
            Some(s) => s,
            None if frame.width() == frame.height() => frame.width(),
            None => {
                return Err(Error::param(
                    "recon.window",
                    format!(
                        "the {}×{} frame is not square: give `recon.window`",
                        frame.width(),
                        frame.height()
                    ),
                ));
            }
        };
        let centre = centre.unwrap_or(((frame.width() / 2) as f64, (frame.height() / 2) as f64));
        let mut window = ReconWindow::centred(frame, size, self.bin, centre)?;
        window.transpose = self.transpose;
        window.pad = self.pad;
        // The side and area of the window follow from --recon-pad: check them before sampling.
        let m = self
            .pad
            .checked_mul(2)
            .and_then(|p| p.checked_add(window.binned()))
            .ok_or_else(|| {
                Error::memory(
                    "recon.pad",
                    format!("{} pixels on each side overflow the window size", self.pad),
                    None,
                    None,
                )
            })?;
        crate::budget::checked_len(&[m, m], "recon.pad", "the reconstruction window")?;
        let dx = window_pixel_angstrom(self.kv, m, self.mrad_per_px * self.bin as f64);
        let probe = match &self.probe {
            ProbeSource::Optics(p) => p.sample(m, dx)?,
            ProbeSource::File(path) => {
                let (shape, probe) = crate::output::read_npy::<num_complex::Complex32>(path)?;
                if shape != [m, m] {
                    return Err(Error::file(
                        path,
                        format!("probe of shape {shape:?}, expected [{m}, {m}] (the window)"),
                    ));
                }
                probe
            }
        };
        let raster = RasterScan {
            step_angstrom: [self.step_angstrom; 2],
            shape: [scan.rows(), scan.cols()],
            rotation_deg: self.scan_rotation_deg,
        };
        let geometry = ScanGeometry::raster(&raster, dx, m, OBJECT_MARGIN_PX)?;
        let positions = geometry.positions.len();
        let mut setup = ReconSetup::new(self.method, probe, m, geometry);
        setup.schedule = self.schedule;
        setup.object_constraint = self.object_constraint;
        setup.planned_sweeps = self
            .sweeps
            .unwrap_or_else(|| crate::recon::schedule::default_sweeps(positions, m));
        let recon = Reconstructor::new(setup)?;
        ReconConsumer::new(recon, frame, window, *scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optics::ProbeParams;
    use crate::recon::{EpieParams, Method};

    /// A padded, transposed window: the prepared pattern is the binned crop, transposed, in
    /// the middle of an M × M frame of zeros.
    #[test]
    fn padding_and_transpose_stage_the_window() {
        let frame = FrameGeometry::new(16, 16).unwrap();
        let request = ReconRequest {
            method: Method::Epie(EpieParams::default()),
            probe: ProbeSource::Optics(ProbeParams::new(80.0, 10.0, 100.0)),
            kv: 80.0,
            mrad_per_px: 1.0,
            step_angstrom: 2.0,
            scan_rotation_deg: 0.0,
            window: Some(8),
            bin: 2,
            transpose: true,
            pad: 3,
            sweeps: Some(0),
            schedule: crate::recon::Schedule::Fixed,
            object_constraint: crate::recon::ObjectConstraint::Free,
        };
        let scan = Scan::new(1, 1, ptyflow_core::ScanKind::Raster).unwrap();
        let mut c = request.build(frame, &scan, Some((7.5, 7.5))).unwrap();
        assert_eq!((c.window().binned(), c.window().m()), (4, 10));
        // Binned pixel 2 = M/2 − pad has its centre at 3 + 2·2 + ½ = 7.5, the disc centre.
        assert_eq!((c.window().x0, c.window().y0), (3, 3));
        let pixels: Vec<u16> = (0..256).map(|i| (i % 16 + 16 * (i / 16)) as u16).collect();
        c.consume(0, Frame::U16(&pixels)).unwrap();
        let got = c.pattern.intensity_detector_layout();
        for y in 0..10 {
            for x in 0..10 {
                let inside = (3..7).contains(&y) && (3..7).contains(&x);
                let want = if inside {
                    // Binned pixel (row, col) = (x − 3, y − 3) after the transpose.
                    let (r, col) = (x - 3, y - 3);
                    let mut s = 0.0;
                    for dy in 0..2 {
                        for dx in 0..2 {
                            s += pixels[(3 + 2 * r + dy) * 16 + 3 + 2 * col + dx] as f32;
                        }
                    }
                    s
                } else {
                    0.0
                };
                assert!(
                    (got[y * 10 + x] - want).abs() < 1e-3 * want.max(1.0),
                    "({y},{x})"
                );
            }
        }
    }
}
