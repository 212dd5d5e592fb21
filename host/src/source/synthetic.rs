//! A generated source: a stream of `u16` frames that needs no file, for soaks
//! (`ptyflow replay --synthetic 10000000x256x256 --fps 100000`) and tests.
//!
//! Frame `i` is slot `i % distinct` of a ring of `distinct` frames generated once, at open,
//! into an anonymous memory map (a bright-field disc of radius `min(w, h) / 6` at the centre
//! whose level changes from slot to slot, on a noisy background; [`frame`] makes slot `s`).
//! The frames are then read exactly like a native-order raw dump's, zero copy from the map, so
//! the stream costs nothing to generate per frame and the reduction runs its file path. The
//! resident memory of the source is the ring (`distinct × width × height × 2` bytes), whatever
//! the number of frames.

/// splitmix64, the generator of the noise.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Slot `slot` of the ring of a `width × height` synthetic source, row-major, into `out`
/// (`width × height` pixels). Deterministic: the same slot gives the same pixels.
pub fn frame(slot: usize, width: usize, height: usize, out: &mut [u16]) {
    let mut state = 0x5EED_0000_u64 ^ (slot as u64).wrapping_mul(0x1000_0001);
    let (cx, cy) = ((width as f64 - 1.0) / 2.0, (height as f64 - 1.0) / 2.0);
    let r2 = (width.min(height) as f64 / 6.0).powi(2);
    for (i, px) in out.iter_mut().enumerate().take(width * height) {
        let (x, y) = ((i % width) as f64 - cx, (i / width) as f64 - cy);
        let base = if x * x + y * y <= r2 {
            150 + 9 * (slot % 5) as u64
        } else {
            2
        };
        *px = (base + splitmix(&mut state) % (base / 4 + 3)) as u16;
    }
}
