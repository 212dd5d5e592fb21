//! The pattern store: where each scan position's window sits on the object ([`Placement`]),
//! the prepared patterns kept for the sweeps ([`Store`]), and one pattern as an update reads
//! it, from the store or straight from the caller ([`PatternRef`]).

/// Where one scan position's window sits: top-left pixel and the sub-pixel remainder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    pub(super) row0: usize,
    pub(super) col0: usize,
    /// Sub-pixel shift `[fy, fx]` of the probe, pixels, in `[−½, ½]`.
    pub(super) frac: [f32; 2],
    pub(super) shifted: bool,
    /// The sweep stripe this window lies in: `(phase, stripe)`, see
    /// [`Stripes`](super::sweep::Stripes).
    pub(super) stripe: (usize, usize),
}

/// The prepared patterns seen so far, preallocated.
#[derive(Debug)]
pub(super) struct Store {
    pub(super) amp: Vec<f32>,
    pub(super) total: Vec<f64>,
    pub(super) max: Vec<f32>,
    pub(super) seen: Vec<bool>,
    pub(super) arrival: Vec<usize>,
}

/// One pattern as an update reads it.
#[derive(Clone, Copy)]
pub(super) struct PatternRef<'a> {
    pub(super) amp_t: &'a [f32],
    pub(super) total: f64,
    pub(super) max_count: f32,
}

impl Store {
    pub(super) fn pattern(&self, index: usize, n: usize) -> PatternRef<'_> {
        PatternRef {
            amp_t: &self.amp[index * n..(index + 1) * n],
            total: self.total[index],
            max_count: self.max[index],
        }
    }
}
