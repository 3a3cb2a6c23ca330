//! SiLU, GELU, GEGLU and last-axis softmax with fused backward passes.
//!
//! candle applies these gradients as chains of elementwise tensors, each
//! allocated and walked on one thread (GELU's alone takes about a dozen,
//! two of them `powf`); these kernels compute each gradient in one
//! parallel pass.

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

/// sqrt(2 / pi), the scale of GELU's tanh approximation.
const GELU_SCALE: f64 = 0.797_884_560_802_865_4;
/// Cubic coefficient of GELU's tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;

/// GELU in the tanh approximation, the same formula as candle's `gelu`.
fn gelu<T: Element>(x: T) -> T {
    gelu_and_derivative(x).0
}

/// GELU and its derivative at `x`, sharing one tanh.
fn gelu_and_derivative<T: Element>(x: T) -> (T, T) {
    let x2 = x * x;
    let tanh = (T::of(GELU_SCALE) * x * (T::one() + T::of(GELU_CUBIC) * x2)).tanh_fast();
    let value = T::of(0.5) * x * (T::one() + tanh);
    let inner_derivative = T::of(GELU_SCALE) * (T::one() + T::of(3.0 * GELU_CUBIC) * x2);
    let derivative = T::of(0.5) * (T::one() + tanh)
        + T::of(0.5) * x * (T::one() - tanh * tanh) * inner_derivative;
    (value, derivative)
}

fn gelu_forward<T: Element>(x: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = gelu(x);
            }
        });
    out
}

fn gelu_backward<T: Element>(x: &[T], grad: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(dx, (x, g))| {
            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                *dx = g * gelu_and_derivative(x).1;
            }
        });
    out
}

/// GELU, tanh approximation.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "mmgen-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            dispatch1(s, l, gelu_forward, gelu_forward)?,
            l.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

/// Gradient of GELU on `(x, grad)`.
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "mmgen-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((
            dispatch2(s1, l1, s2, l2, gelu_backward, gelu_backward)?,
            l1.shape().clone(),
        ))
    }
}

/// GELU (tanh approximation) on the CPU kernels above.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

/// Rows of a GEGLU input: each row is `[value | gate]`, `2 * width` long.
fn geglu_forward<T: Element>(x: &[T], width: usize) -> Vec<T> {
    let rows = x.len() / (2 * width);
    let mut out = vec![T::zero(); rows * width];
    let rows_per_chunk = (CHUNK / width.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * width)
        .zip(x.par_chunks(rows_per_chunk * 2 * width))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_mut(width).zip(x.chunks(2 * width)) {
                let (value, gate) = x.split_at(width);
                for ((y, &v), &g) in y.iter_mut().zip(value).zip(gate) {
                    *y = v * gelu(g);
                }
            }
        });
    out
}

/// Gradient of GEGLU with respect to its `[value | gate]` input.
fn geglu_backward<T: Element>(x: &[T], grad: &[T], width: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let rows_per_chunk = (CHUNK / width.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * 2 * width)
        .zip(
            x.par_chunks(rows_per_chunk * 2 * width)
                .zip(grad.par_chunks(rows_per_chunk * width)),
        )
        .for_each(|(dx, (x, g))| {
            for ((dx, x), g) in dx
                .chunks_mut(2 * width)
                .zip(x.chunks(2 * width))
                .zip(g.chunks(width))
            {
                let (value, gate) = x.split_at(width);
                let (d_value, d_gate) = dx.split_at_mut(width);
                for i in 0..width {
                    let (activation, derivative) = gelu_and_derivative(gate[i]);
                    d_value[i] = g[i] * activation;
                    d_gate[i] = g[i] * value[i] * derivative;
                }
            }
        });
    out
}

/// GEGLU: the last axis `[value | gate]` becomes `value * gelu(gate)`.
struct Geglu;

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "mmgen-geglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut dims = l.dims().to_vec();
        let Some(last) = dims.last_mut() else {
            candle_core::bail!("geglu needs at least one axis")
        };
        if *last % 2 != 0 {
            candle_core::bail!("geglu needs an even last axis, got shape {:?}", l.dims())
        }
        *last /= 2;
        let width = *last;
        let storage = dispatch1(
            s,
            l,
            |x| geglu_forward(x, width),
            |x| geglu_forward(x, width),
        )?;
        Ok((storage, Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GegluGrad)?))
    }
}

/// Gradient of GEGLU on `(input, grad of the output)`.
struct GegluGrad;

impl CustomOp2 for GegluGrad {
    fn name(&self) -> &'static str {
        "mmgen-geglu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = *l2.dims().last().unwrap_or(&1);
        let storage = dispatch2(
            s1,
            l1,
            s2,
            l2,
            |x, g| geglu_backward(x, g, width),
            |x, g| geglu_backward(x, g, width),
        )?;
        Ok((storage, l1.shape().clone()))
    }
}

/// GEGLU on the CPU kernels above: splits the last axis into value and
/// gate halves and returns `value * gelu(gate)`.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Geglu)
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

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
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
        assert!(max_abs_diff(&silu(&x).unwrap(), &x.silu().unwrap()) < 1e-6);
    }

    #[test]
    fn softmax_matches_candle() {
        let x = (ramp(&[3, 7, 9], DType::F32) * 5.0).unwrap();
        let reference = candle_nn::ops::softmax(&x, candle_core::D::Minus1).unwrap();
        assert!(max_abs_diff(&softmax_last(&x).unwrap(), &reference) < 1e-6);
    }

    #[test]
    fn gelu_matches_candle() {
        let x = (ramp(&[4, 1000], DType::F32) * 6.0).unwrap();
        assert!(max_abs_diff(&gelu_tanh(&x).unwrap(), &x.gelu().unwrap()) < 2e-6);
    }

    #[test]
    fn geglu_matches_candle() {
        let x = (ramp(&[2, 5, 12], DType::F32) * 4.0).unwrap();
        let value = x.narrow(2, 0, 6).unwrap();
        let gate = x.narrow(2, 6, 6).unwrap();
        let reference = (value * gate.gelu().unwrap()).unwrap();
        let fused = geglu(&x).unwrap();
        assert_eq!(fused.dims(), &[2, 5, 6]);
        assert!(max_abs_diff(&fused, &reference) < 1e-5);
    }

    #[test]
    fn gelu_gradient_matches_finite_differences() {
        check_gradients(&[(ramp(&[3, 8], DType::F64) * 3.0).unwrap()], |t| {
            gelu_tanh(&t[0]).unwrap()
        });
    }

    #[test]
    fn geglu_gradient_matches_finite_differences() {
        check_gradients(&[(ramp(&[2, 3, 8], DType::F64) * 3.0).unwrap()], |t| {
            geglu(&t[0]).unwrap()
        });
    }

    #[test]
    fn geglu_rejects_odd_last_axis() {
        let x = ramp(&[2, 5], DType::F32);
        assert!(geglu(&x).is_err());
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
