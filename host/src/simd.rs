//! The instruction sets the host's kernels are compiled for, and the one place that runs a
//! kernel at the widest of them.
//!
//! The core is portable Rust. The host compiles the same kernels again for a wider vector unit
//! and picks a level at run time, once ([`SimdLevel::detect`]); [`SimdLevel::run`] runs a
//! kernel compiled for a level. Every level gives the same bits: the kernels fix their order
//! of additions and no level fuses multiply and add.
//!
//! Kernels written with intrinsics of one level (the AVX2 transpose of
//! [`fft`](crate::recon::fft)) stay beside their portable twin and ask [`SimdLevel::detect`]
//! themselves.

/// The instruction set the per-frame kernels run with. The core is portable Rust; the host
/// compiles the same code again for a wider vector unit and picks one at run time, once.
///
/// There is no AVX-512 level on purpose: compiled for AVX-512 F/BW/VL/DQ, the same code ran
/// W1 no faster than AVX2 and the dense masks (W3) ten times slower on the reference EPYC
/// (measured with `ptyflow bench --threads 1`, 4.1 k vs 39.7 k frames/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64).
    Portable,
    /// AVX2 + FMA (+ BMI1/2, POPCNT).
    Avx2,
}

impl SimdLevel {
    /// The widest level this CPU supports, or [`SimdLevel::Portable`] when the environment
    /// variable `PTYFLOW_SIMD` is `portable` (to compare levels). Cached.
    pub fn detect() -> SimdLevel {
        static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| match std::env::var("PTYFLOW_SIMD").as_deref() {
            Ok("portable") => SimdLevel::Portable,
            _ => Self::supported(),
        })
    }

    /// The widest level the CPU supports.
    fn supported() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 =
                has!("avx2") && has!("fma") && has!("bmi1") && has!("bmi2") && has!("popcnt");
            if avx2 {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Portable
    }

    /// Runs `kernel` compiled for this level, or for the portable baseline when this level is
    /// wider than [`SimdLevel::detect`] allows (a level can be lowered to compare, as the
    /// tests do, never raised).
    ///
    /// The kernel is compiled for the level only as far as it is inlined into the level's
    /// copy: pass a closure marked `#[inline(always)]` that calls `#[inline(always)]` code,
    /// `level.run(#[inline(always)] || body(…))`. Code it calls without inlining runs at the
    /// baseline, with the same bits.
    #[inline(always)]
    pub fn run<R>(self, kernel: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        if self == SimdLevel::Avx2 && SimdLevel::detect() == SimdLevel::Avx2 {
            // SAFETY: detect() returns Avx2 only when the CPU reports every feature `avx2`
            // enables (AVX2, FMA, BMI1/2, POPCNT; see `supported`).
            return unsafe { avx2(kernel) };
        }
        kernel()
    }
}

/// `kernel`, and what is inlined into it, compiled for [`SimdLevel::Avx2`].
///
/// # Safety
///
/// The CPU must support AVX2, FMA, BMI1, BMI2 and POPCNT. (An `unsafe fn` rather than a safe
/// `#[target_feature]` fn, which needs Rust 1.86; the workspace supports 1.85.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt")]
unsafe fn avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level runs the kernel to the same bits, on any CPU: a level wider than the CPU's
    /// falls back to the baseline.
    #[test]
    fn every_level_runs_the_kernel_to_the_same_bits() {
        let run = |level: SimdLevel| {
            let mut v: Vec<f32> = (0..37).map(|i| i as f32 * 0.37).collect();
            let total = level.run(
                #[inline(always)]
                || {
                    v.iter_mut().for_each(|x| *x = *x * 3.1 + 0.5);
                    v.iter().sum::<f32>()
                },
            );
            (v, total)
        };
        let base = run(SimdLevel::Portable);
        assert_eq!(run(SimdLevel::Avx2), base);
        assert_eq!(run(SimdLevel::detect()), base);
    }
}
