//! The probe cache: the probe in real space and as its transposed spectrum, each recomputed
//! only when read after the other changed ([`Probe`]).

use num_complex::Complex32;

use super::fft::Fft2;

/// The probe in real space and as its transposed spectrum `F[P]` (what sub-pixel shifts start
/// from). ePIE's probe update changes one of the two and marks the other stale; each is
/// recomputed (one FFT) only when something reads it, so a run of probe updates at sub-pixel
/// positions stays in Fourier space.
pub(super) struct Probe {
    pub(super) real: Vec<Complex32>,
    pub(super) spec_t: Vec<Complex32>,
    pub(super) real_stale: bool,
    pub(super) spec_stale: bool,
}

impl Probe {
    /// Makes `spec_t` current (`tmp`: window scratch).
    pub(super) fn sync_spectrum(&mut self, fft: &mut Fft2, tmp: &mut [Complex32]) {
        if self.spec_stale {
            tmp.copy_from_slice(&self.real);
            fft.forward_transposed(tmp, &mut self.spec_t);
            self.spec_stale = false;
        }
    }

    /// Makes `real` current (`tmp`: window scratch).
    pub(super) fn sync_real(&mut self, fft: &mut Fft2, tmp: &mut [Complex32]) {
        if self.real_stale {
            let norm = 1.0 / tmp.len() as f32;
            for (t, s) in tmp.iter_mut().zip(&self.spec_t) {
                *t = s * norm;
            }
            fft.inverse_from_transposed(tmp, &mut self.real);
            self.real_stale = false;
        }
    }

    /// Makes both current.
    pub(super) fn sync(&mut self, fft: &mut Fft2, tmp: &mut [Complex32]) {
        self.sync_real(fft, tmp);
        self.sync_spectrum(fft, tmp);
    }
}
