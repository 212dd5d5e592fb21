//! The striped sweep: with the probe held, the object is cut into horizontal stripes that
//! threads update at once ([`Stripes`]), and a sweep runs them phase by phase
//! ([`State::sweep_striped`]), to the same bits for any number of threads.

use super::state::State;
use super::store::{Placement, Store};
use super::update::{Rows, Scratch, Step, Tally, update};

/// The horizontal stripes a sweep with a fixed probe is cut into, so that threads can update
/// disjoint parts of the object at once.
///
/// Stripes are `H = 2(M + 2)` object rows high. Phase 0 covers the object with stripes starting
/// at rows `0, H, 2H, …`; phase 1 with stripes starting at `H/2, 3H/2, …`. A window plus the
/// one-row margin the Tikhonov Laplacian reads is at most `M + 2 = H/2` rows high, so it lies
/// wholly inside a phase-0 stripe or, if it crosses a phase-0 boundary, inside the phase-1
/// stripe centred on that boundary. A sweep runs every phase-0 stripe (in parallel), then every
/// phase-1 stripe; inside a stripe the patterns go in arrival order. The order depends only on
/// the geometry, never on the number of threads, so results are the same bits for any
/// `threads`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stripes {
    pub(super) height: usize,
}

impl Stripes {
    pub(super) fn new(m: usize) -> Self {
        Stripes {
            height: 2 * (m + 2),
        }
    }

    /// First object row of stripe `k` of `phase`.
    pub(super) fn first_row(&self, phase: usize, k: usize) -> usize {
        phase * self.height / 2 + k * self.height
    }

    /// `(phase, stripe)` of a window whose rows, with margin, are `[lo, hi)`.
    pub(super) fn assign(&self, lo: usize, hi: usize) -> (usize, usize) {
        let h = self.height;
        let k = lo / h;
        if hi <= (k + 1) * h {
            return (0, k);
        }
        // The window crosses row (k + 1)·H and is at most H/2 high, so lo ≥ H/2 and it fits
        // the phase-1 stripe [(k + ½)·H, (k + 3/2)·H).
        let k = (lo - h / 2) / h;
        debug_assert!(hi <= self.first_row(1, k) + h);
        (1, k)
    }
}

impl State {
    /// A sweep with the probe held, stripe by stripe (see [`Stripes`]), on every scratch's
    /// thread.
    pub(super) fn sweep_striped(
        &mut self,
        store: &Store,
        placements: &[Placement],
        stripes: Stripes,
    ) {
        let (m, rows, cols) = (self.m, self.rows, self.cols);
        let n = m * m;
        let object_step = self.object_step();
        let constraint = self.constraint;
        self.sync_probe();
        // Scan indices per (phase, stripe), each list in arrival order.
        let count = rows.div_ceil(stripes.height) + 1;
        let mut lists = vec![vec![Vec::new(); count]; 2];
        for &index in &store.arrival {
            let (phase, k) = placements[index].stripe;
            lists[phase][k].push(index);
        }
        let stripe_rows = stripes.height;
        for (phase, lists) in lists.iter().enumerate() {
            // Cut the object into this phase's stripes (disjoint &mut row ranges).
            let skip = stripes.first_row(phase, 0).min(rows);
            let (_, rest) = self.object.split_at_mut(skip * cols);
            let jobs: Vec<(usize, Rows<'_>, &[usize])> = rest
                .chunks_mut(stripe_rows * cols)
                .enumerate()
                .filter(|(k, _)| !lists[*k].is_empty())
                .map(|(k, data)| {
                    let rows_view = Rows {
                        data,
                        first_row: stripes.first_row(phase, k),
                        cols,
                        object_rows: rows,
                    };
                    (k, rows_view, lists[k].as_slice())
                })
                .collect();
            let (method, probe, loss_every, simd) =
                (&self.method, &self.probe, self.loss_every, self.simd);
            let run = |s: &mut Scratch, (k, mut obj, indices): (usize, Rows<'_>, &[usize])| {
                let mut tally = Tally::default();
                tally.report.step = object_step;
                for &index in indices {
                    let step = Step {
                        m,
                        method,
                        probe,
                        place: &placements[index],
                        evaluate: index % loss_every == 0,
                        probe_beta: 0.0,
                        object_step,
                        constraint,
                        simd,
                    };
                    update(s, &step, store.pattern(index, n), &mut obj, &mut tally);
                }
                (k, tally)
            };
            let mut tallies: Vec<(usize, Tally)> = if self.scratch.len() == 1 || jobs.len() == 1 {
                let s = &mut self.scratch[0];
                jobs.into_iter().map(|job| run(s, job)).collect()
            } else {
                let (tx, rx) = crossbeam_channel::unbounded();
                for job in jobs {
                    tx.send(job).expect("the receiver is alive");
                }
                drop(tx);
                std::thread::scope(|scope| {
                    let (first, rest) = self.scratch.split_first_mut().expect("one scratch");
                    let handles: Vec<_> = rest
                        .iter_mut()
                        .map(|s| {
                            let (rx, run) = (rx.clone(), &run);
                            scope.spawn(move || rx.iter().map(|job| run(s, job)).collect())
                        })
                        .collect();
                    let mut all: Vec<(usize, Tally)> =
                        rx.iter().map(|job| run(first, job)).collect();
                    for h in handles {
                        let part: Vec<(usize, Tally)> = h.join().expect("a sweep thread panicked");
                        all.extend(part);
                    }
                    all
                })
            };
            // Sum the stripes' losses in stripe order, whichever thread ran them, so the
            // report's bits do not depend on timing either.
            tallies.sort_by_key(|(k, _)| *k);
            for (_, t) in &tallies {
                self.absorb(t);
            }
        }
    }
}
