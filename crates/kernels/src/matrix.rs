//! Dense row-major matrices: the one in-memory layout every kernel agrees on.

use crate::KernelError;

/// A dense row-major matrix. `data[i * cols + j]` is entry (i, j).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Matrix<T> {
    rows: usize,
    cols: usize,
    data: Vec<T>,
}

impl<T: Copy + Default> Matrix<T> {
    /// A rows × cols matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Result<Self, KernelError> {
        let len = checked_len(rows, cols)?;
        Ok(Self { rows, cols, data: vec![T::default(); len] })
    }

    /// Wraps row-major `data`, which must hold exactly rows × cols entries.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<T>) -> Result<Self, KernelError> {
        let len = checked_len(rows, cols)?;
        if data.len() != len {
            return Err(KernelError::Shape(format!("{rows}x{cols} matrix needs {len} entries, got {}", data.len())));
        }
        Ok(Self { rows, cols, data })
    }

    /// Builds a matrix entry by entry; handy for tests and generated inputs.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> T) -> Result<Self, KernelError> {
        let len = checked_len(rows, cols)?;
        let mut data = Vec::with_capacity(len);
        for i in 0..rows {
            for j in 0..cols {
                data.push(f(i, j));
            }
        }
        Ok(Self { rows, cols, data })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// Entry (i, j). Panics when out of range, like slice indexing.
    pub fn get(&self, i: usize, j: usize) -> T {
        assert!(i < self.rows && j < self.cols, "({i}, {j}) outside {}x{}", self.rows, self.cols);
        self.data[i * self.cols + j]
    }

    pub fn set(&mut self, i: usize, j: usize, v: T) {
        assert!(i < self.rows && j < self.cols, "({i}, {j}) outside {}x{}", self.rows, self.cols);
        self.data[i * self.cols + j] = v;
    }

    /// Row i as a slice.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The transpose, as a new matrix.
    pub fn transpose(&self) -> Self {
        let mut data = Vec::with_capacity(self.data.len());
        for j in 0..self.cols {
            for i in 0..self.rows {
                data.push(self.data[i * self.cols + j]);
            }
        }
        Self { rows: self.cols, cols: self.rows, data }
    }
}

/// rows × cols, refusing shapes whose entry count overflows or that have a zero side.
pub(crate) fn checked_len(rows: usize, cols: usize) -> Result<usize, KernelError> {
    if rows == 0 || cols == 0 {
        return Err(KernelError::Shape(format!("empty matrix {rows}x{cols}")));
    }
    rows.checked_mul(cols)
        .filter(|&len| len <= isize::MAX as usize / 8)
        .ok_or_else(|| KernelError::Shape(format!("matrix {rows}x{cols} is too large")))
}

pub type MatI8 = Matrix<i8>;
pub type MatI32 = Matrix<i32>;
pub type MatF32 = Matrix<f32>;
