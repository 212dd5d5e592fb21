//! Test helpers: seeded random frames of every pixel type, dirty buffers, `allclose`.

extern crate std;
use crate::pixel::Pixel;
use bytemuck::Pod;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::vec::Vec;

/// A pixel type the tests can draw at random.
pub trait TestPixel: Pixel {
    /// `true` for `f32`, whose results are compared with `allclose`, not `==`.
    const IS_FLOAT: bool;
    /// A random value: full range for `u8`/`u16`, below 2²⁴ for `u32` (so f64 references of
    /// block sums stay exact and bins do not wrap), [0, 1000) for `f32`.
    fn random(rng: &mut Pcg64) -> Self;
}

impl TestPixel for u8 {
    const IS_FLOAT: bool = false;
    fn random(rng: &mut Pcg64) -> Self {
        rng.r#gen()
    }
}
impl TestPixel for u16 {
    const IS_FLOAT: bool = false;
    fn random(rng: &mut Pcg64) -> Self {
        rng.r#gen()
    }
}
impl TestPixel for u32 {
    const IS_FLOAT: bool = false;
    fn random(rng: &mut Pcg64) -> Self {
        rng.gen_range(0..1 << 24)
    }
}
impl TestPixel for f32 {
    const IS_FLOAT: bool = true;
    fn random(rng: &mut Pcg64) -> Self {
        rng.gen_range(0.0..1000.0)
    }
}

/// `len` random pixels from `seed`.
pub fn random_frame<P: TestPixel>(len: usize, seed: u64) -> Vec<P> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..len).map(|_| P::random(&mut rng)).collect()
}

/// Fill a buffer with garbage bytes (0xA5: a large integer, a negative float), to prove that
/// outputs are overwritten.
pub fn dirty<T: Pod>(buf: &mut [T]) {
    bytemuck::cast_slice_mut::<T, u8>(buf).fill(0xA5);
}

/// Assert `|got − want| ≤ atol + rtol·|want|` element-wise.
#[track_caller]
pub fn allclose(got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}
