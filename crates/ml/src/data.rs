//! Data sets: rows of small integer features and a class label.

use std::io::Read;

use crate::MlError;

/// The UCI handwritten digits (8×8 pixels in 0..16, labels 0..9), gzip-compressed CSV, as shipped
/// in `crates/ml/data/` (see its README for source and licence).
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Largest data set read (uncompressed bytes), so a hostile file cannot exhaust memory.
const MAX_CSV_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub features: usize,
    /// Row-major, `features` values per example, each in 0..=255.
    pub x: Vec<u8>,
    pub y: Vec<u8>,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    pub fn row(&self, i: usize) -> &[u8] {
        &self.x[i * self.features..(i + 1) * self.features]
    }

    /// The shipped digits.
    pub fn digits() -> Result<Self, MlError> {
        Self::from_csv_gz(DIGITS_CSV_GZ)
    }

    /// Gzip-compressed CSV: each line is the features then the label, all integers 0..=255.
    pub fn from_csv_gz(bytes: &[u8]) -> Result<Self, MlError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_CSV_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| MlError::Data(format!("not gzip-compressed text: {e}")))?;
        Self::from_csv(&text)
    }

    pub fn from_csv(text: &str) -> Result<Self, MlError> {
        let (mut x, mut y, mut features) = (Vec::new(), Vec::new(), None);
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let values: Vec<u8> = line
                .split(',')
                .map(|v| v.trim().parse::<u8>())
                .collect::<Result<_, _>>()
                .map_err(|e| MlError::Data(format!("line {}: {e}", n + 1)))?;
            if values.len() < 2 {
                return Err(MlError::Data(format!("line {}: needs features and a label", n + 1)));
            }
            let f = *features.get_or_insert(values.len() - 1);
            if values.len() - 1 != f {
                return Err(MlError::Data(format!("line {}: {} features, expected {f}", n + 1, values.len() - 1)));
            }
            x.extend_from_slice(&values[..f]);
            y.push(values[f]);
        }
        let features = features.ok_or_else(|| MlError::Data("no examples".into()))?;
        let classes = *y.iter().max().expect("at least one example") as usize + 1;
        Ok(Self { features, x, y, classes })
    }

    /// Deterministic held-out split: every `k`-th example (from the first) is held out.
    pub fn split(&self, k: usize) -> (Dataset, Dataset) {
        let (mut train, mut test) = (self.empty_like(), self.empty_like());
        for i in 0..self.len() {
            let part = if i % k.max(2) == 0 { &mut test } else { &mut train };
            part.x.extend_from_slice(self.row(i));
            part.y.push(self.y[i]);
        }
        (train, test)
    }

    fn empty_like(&self) -> Dataset {
        Dataset { features: self.features, x: vec![], y: vec![], classes: self.classes }
    }
}
