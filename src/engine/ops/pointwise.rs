//! SiLU and last-axis softmax with fused backward passes.
//!
//! candle applies SiLU's and softmax's gradients as chains of elementwise
//! tensors, each allocated and walked on one thread; these kernels compute
//! each gradient in one parallel pass.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::Element;
use super::{dispatch1, dispatch2};

const CHUNK: usize = 16 * 1024;

fn sigmoid<T: Element>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

fn silu_forward<T: Element>(x: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x * sigmoid(x);
            }
        });
    out
}

fn silu_backward<T: Element>(x: &[T], grad: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(dx, (x, g))| {
            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                let s = sigmoid(x);
                *dx = g * s * (T::one() + x * (T::one() - s));
            }
        });
    out
}

/// SiLU, x * sigmoid(x).
struct Silu;

impl CustomOp1 for Silu {
    fn name(&self) -> &'static str {
        "mmgen-silu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            dispatch1(s, l, silu_forward, silu_forward)?,
            l.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &SiluGrad)?))
    }
}

/// Gradient of SiLU on `(x, grad)`.
struct SiluGrad;

impl CustomOp2 for SiluGrad {
    fn name(&self) -> &'static str {
        "mmgen-silu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((
            dispatch2(s1, l1, s2, l2, silu_backward, silu_backward)?,
            l1.shape().clone(),
        ))
    }
}

/// SiLU on the CPU kernels above.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Silu)
}

fn softmax_rows<T: Element>(x: &[T], width: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let rows_per_chunk = (CHUNK / width.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * width)
        .zip(x.par_chunks(rows_per_chunk * width))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_mut(width).zip(x.chunks(width)) {
                let max = x.iter().copied().fold(T::neg_infinity(), T::max);
                let mut total = T::zero();
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - max).exp();
                    total = total + *y;
                }
                y.iter_mut().for_each(|v| *v = *v / total);
            }
        });
    out
}

fn softmax_backward<T: Element>(y: &[T], grad: &[T], width: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    let rows_per_chunk = (CHUNK / width.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * width)
        .zip(
            y.par_chunks(rows_per_chunk * width)
                .zip(grad.par_chunks(rows_per_chunk * width)),
        )
        .for_each(|(dx, (y, g))| {
            for ((dx, y), g) in dx
                .chunks_mut(width)
                .zip(y.chunks(width))
                .zip(g.chunks(width))
            {
                let dot: T = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
                for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                    *dx = y * (g - dot);
                }
            }
        });
    out
}

/// Softmax over the last axis.
struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "mmgen-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = *l.dims().last().unwrap_or(&1);
        let storage = dispatch1(s, l, |x| softmax_rows(x, width), |x| softmax_rows(x, width))?;
        Ok((storage, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// Gradient of the softmax on `(softmax output, grad)`.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "mmgen-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = *l1.dims().last().unwrap_or(&1);
        let storage = dispatch2(
            s1,
            l1,
            s2,
            l2,
            |y, g| softmax_backward(y, g, width),
            |y, g| softmax_backward(y, g, width),
        )?;
        Ok((storage, l1.shape().clone()))
    }
}

/// Softmax over the last axis on the CPU kernels above.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxLast)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::{check_gradients, ramp};
    use candle_core::DType;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn silu_matches_candle() {
        let x = (ramp(&[4, 1000], DType::F32) * 6.0).unwrap();
        assert!(max_diff(&silu(&x).unwrap(), &x.silu().unwrap()) < 1e-6);
    }

    #[test]
    fn softmax_matches_candle() {
        let x = (ramp(&[3, 7, 9], DType::F32) * 5.0).unwrap();
        let reference = candle_nn::ops::softmax(&x, candle_core::D::Minus1).unwrap();
        assert!(max_diff(&softmax_last(&x).unwrap(), &reference) < 1e-6);
    }

    #[test]
    fn silu_gradient_matches_finite_differences() {
        check_gradients(&[(ramp(&[3, 8], DType::F64) * 3.0).unwrap()], |t| {
            silu(&t[0]).unwrap()
        });
    }

    #[test]
    fn softmax_gradient_matches_finite_differences() {
        check_gradients(&[(ramp(&[2, 3, 5], DType::F64) * 2.0).unwrap()], |t| {
            softmax_last(&t[0]).unwrap()
        });
    }
}
