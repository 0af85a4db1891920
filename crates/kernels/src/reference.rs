//! The naive triple loop: slow, obviously right, the yardstick every fast kernel is tested against.

use crate::matrix::{MatI32, MatI8};
use crate::KernelError;

/// C = A·B by definition, accumulating in i64 and refusing any sum outside int32.
pub fn matmul_naive(a: &MatI8, b: &MatI8) -> Result<MatI32, KernelError> {
    if a.cols() != b.rows() {
        return Err(KernelError::Shape(format!("inner dimensions {} and {} differ", a.cols(), b.rows())));
    }
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let mut c = MatI32::zeros(m, n)?;
    let mut row = vec![0i64; n];
    for i in 0..m {
        row.iter_mut().for_each(|v| *v = 0);
        for t in 0..k {
            let av = a.get(i, t) as i64;
            for (acc, &bv) in row.iter_mut().zip(b.row(t)) {
                *acc += av * bv as i64;
            }
        }
        for (j, &v) in row.iter().enumerate() {
            let v = i32::try_from(v).map_err(|_| KernelError::Overflow { k })?;
            c.set(i, j, v);
        }
    }
    Ok(c)
}
