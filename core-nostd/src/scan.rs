//! Scan order: frame index ↔ probe position (row, col) on the scan grid.

use crate::Error;

/// The order in which the probe visits the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanKind {
    /// Every row left to right: index = row · cols + col.
    Raster,
    /// Even rows left to right, odd rows right to left (row 0 is even).
    Serpentine,
}

/// A `rows` × `cols` scan of `rows · cols` frames, visited in `kind` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scan {
    rows: usize,
    cols: usize,
    kind: ScanKind,
}

impl Scan {
    /// A scan; [`Error::OutOfScan`] if `rows` or `cols` is zero or `rows · cols` overflows.
    pub const fn new(rows: usize, cols: usize, kind: ScanKind) -> Result<Self, Error> {
        if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none() {
            return Err(Error::OutOfScan);
        }
        Ok(Self { rows, cols, kind })
    }

    /// Scan rows.
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// Scan columns (positions per row).
    pub const fn cols(&self) -> usize {
        self.cols
    }

    /// The visiting order.
    pub const fn kind(&self) -> ScanKind {
        self.kind
    }

    /// Number of positions, `rows · cols`.
    pub const fn positions(&self) -> usize {
        self.rows * self.cols
    }

    /// The (row, col) of frame `index`, or `None` past the end.
    pub const fn position(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.positions() {
            return None;
        }
        let (row, step) = (index / self.cols, index % self.cols);
        Some((row, self.col_at(row, step)))
    }

    /// The frame index of position (`row`, `col`), or `None` outside the grid.
    pub const fn index(&self, row: usize, col: usize) -> Option<usize> {
        if row >= self.rows || col >= self.cols {
            return None;
        }
        // col_at is its own inverse within a row.
        Some(row * self.cols + self.col_at(row, col))
    }

    /// The column visited at `step` of `row` (and, being an involution, the step of a column).
    const fn col_at(&self, row: usize, step: usize) -> usize {
        match self.kind {
            ScanKind::Serpentine if row % 2 == 1 => self.cols - 1 - step,
            _ => step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn position_and_index_are_inverse(rows in 1usize..30, cols in 1usize..30, serp in any::<bool>()) {
            let kind = if serp { ScanKind::Serpentine } else { ScanKind::Raster };
            let scan = Scan::new(rows, cols, kind).unwrap();
            // Naive reference: walk the scan and count.
            let mut index = 0;
            for row in 0..rows {
                for step in 0..cols {
                    let col = if serp && row % 2 == 1 { cols - 1 - step } else { step };
                    prop_assert_eq!(scan.position(index), Some((row, col)));
                    prop_assert_eq!(scan.index(row, col), Some(index));
                    index += 1;
                }
            }
            prop_assert_eq!(scan.position(index), None);
            prop_assert_eq!(scan.index(rows, 0), None);
            prop_assert_eq!(scan.index(0, cols), None);
        }
    }

    #[test]
    fn serpentine_reverses_odd_rows() {
        let scan = Scan::new(3, 4, ScanKind::Serpentine).unwrap();
        assert_eq!(scan.position(3), Some((0, 3)));
        assert_eq!(scan.position(4), Some((1, 3)));
        assert_eq!(scan.position(7), Some((1, 0)));
        assert_eq!(scan.position(8), Some((2, 0)));
        assert_eq!(scan.positions(), 12);
    }

    #[test]
    fn errors() {
        assert_eq!(Scan::new(0, 4, ScanKind::Raster), Err(Error::OutOfScan));
        assert_eq!(Scan::new(4, 0, ScanKind::Raster), Err(Error::OutOfScan));
        assert_eq!(
            Scan::new(usize::MAX, 2, ScanKind::Raster),
            Err(Error::OutOfScan)
        );
    }
}
