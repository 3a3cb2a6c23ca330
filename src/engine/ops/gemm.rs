//! A safe front to the `gemm` crate (the matrix kernel candle itself uses)
//! for row-major matrices.

use gemm::Parallelism;

/// Element types the fused kernels run on.
pub trait Element: num_traits::Float + Send + Sync + 'static + std::iter::Sum {
    /// Converts from f64 (for constants such as epsilons).
    fn of(value: f64) -> Self;

    /// Hyperbolic tangent, fast where the type allows: f32 uses
    /// `super::fast::tanh` (absolute error below 2e-7), f64 the exact one.
    fn tanh_fast(self) -> Self;
}

impl Element for f32 {
    fn of(value: f64) -> Self {
        value as f32
    }

    fn tanh_fast(self) -> Self {
        super::fast::tanh(self)
    }
}

impl Element for f64 {
    fn of(value: f64) -> Self {
        value
    }

    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

/// A row-major matrix view: `rows x cols`, optionally read transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    /// The elements, row-major, exactly `rows * cols` of them.
    pub data: &'a [T],
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Use the transpose of the stored matrix.
    pub transposed: bool,
}

impl<'a, T> Mat<'a, T> {
    /// A stored `rows x cols` matrix, used as is.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    /// The same matrix, used transposed.
    pub fn t(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    /// (rows, cols, row stride, column stride) as used.
    fn used(&self) -> (usize, usize, isize, isize) {
        if self.transposed {
            (self.cols, self.rows, 1, self.cols as isize)
        } else {
            (self.rows, self.cols, self.cols as isize, 1)
        }
    }
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` when `accumulate`), with `dst`
/// row-major `m x n`. Panics if the shapes do not agree, which would be a
/// bug in the caller, not bad input.
pub fn matmul<T: Element>(
    dst: &mut [T],
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, lhs_rs, lhs_cs) = lhs.used();
    let (k2, n, rhs_rs, rhs_cs) = rhs.used();
    assert_eq!(k, k2, "matmul inner dimensions differ");
    assert_eq!(lhs.data.len(), lhs.rows * lhs.cols, "lhs length");
    assert_eq!(rhs.data.len(), rhs.rows * rhs.cols, "rhs length");
    assert_eq!(dst.len(), m * n, "dst length");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|v| *v = T::zero());
        }
        return;
    }
    let parallelism = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above guarantee that every index the kernel
    // touches, (m-1)*rs + (k-1)*cs and so on, lies inside each slice, and
    // `dst` is borrowed mutably so it cannot alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.data.as_ptr(),
            rhs_cs,
            rhs_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_naive() {
        let a: Vec<f64> = (0..6).map(|i| i as f64).collect(); // 2x3
        let b: Vec<f64> = (0..12).map(|i| (i as f64) * 0.5).collect(); // 3x4
        let mut c = vec![0.0; 8];
        matmul(&mut c, Mat::new(&a, 2, 3), Mat::new(&b, 3, 4), false, false);
        for i in 0..2 {
            for j in 0..4 {
                let expected: f64 = (0..3).map(|k| a[i * 3 + k] * b[k * 4 + j]).sum();
                assert_eq!(c[i * 4 + j], expected);
            }
        }
        // (b^T)^T a^T... check transposed operands: c2 = b^T (4x3) * a^T (3x2) = (a b)^T.
        let mut c2 = vec![0.0; 8];
        matmul(
            &mut c2,
            Mat::new(&b, 3, 4).t(),
            Mat::new(&a, 2, 3).t(),
            false,
            true,
        );
        for i in 0..2 {
            for j in 0..4 {
                assert_eq!(c2[j * 2 + i], c[i * 4 + j]);
            }
        }
        matmul(&mut c, Mat::new(&a, 2, 3), Mat::new(&b, 3, 4), true, false);
        assert_eq!(
            c[7],
            2.0 * (0..3).map(|k| a[3 + k] * b[k * 4 + 3]).sum::<f64>()
        );
    }
}
