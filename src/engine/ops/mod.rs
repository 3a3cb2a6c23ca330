//! CPU kernels with backward passes for the operations that dominate the
//! engine's training and sampling time: convolution, group normalisation,
//! SiLU and softmax. Each is a candle custom op; `engine::nn` uses them on
//! the CPU and candle's own operations on other devices.
//!
//! Figures that motivated them (candle 0.11, 2 cores, batch 32, 32
//! channels at 64x64, debug build with optimised dependencies):
//! convolution backward 2.8 s, group norm backward 0.37 s, SiLU forward
//! and backward 0.16 s.

pub mod bias;
pub mod conv;
pub mod fast;
pub mod gemm;
pub mod norm;
pub mod pointwise;

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Device, Layout, Result};

/// Environment variable that, set to 1, makes the engine use candle's own
/// operations on the CPU too, so that benchmarks can compare the two.
pub const CANDLE_OPS_VARIABLE: &str = "MMGEN_CANDLE_OPS";

/// Returns whether the engine's own kernels run on `device`: on the CPU,
/// unless `MMGEN_CANDLE_OPS=1` requests candle's operations.
pub fn enabled(device: &Device) -> bool {
    static CANDLE_OPS: OnceLock<bool> = OnceLock::new();
    let candle_ops =
        *CANDLE_OPS.get_or_init(|| std::env::var(CANDLE_OPS_VARIABLE).is_ok_and(|v| v == "1"));
    device.is_cpu() && !candle_ops
}

/// The contiguous elements a layout describes.
pub(crate) fn contiguous_slice<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!(
            "mmgen kernels need contiguous tensors, got strides {:?}",
            layout.stride()
        ),
    }
}

/// Runs a one-input kernel on f32 or f64 storage.
pub(crate) fn dispatch1(
    s: &CpuStorage,
    l: &Layout,
    f32_kernel: impl Fn(&[f32]) -> Vec<f32>,
    f64_kernel: impl Fn(&[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    match s {
        CpuStorage::F32(a) => Ok(CpuStorage::F32(f32_kernel(contiguous_slice(a, l)?))),
        CpuStorage::F64(a) => Ok(CpuStorage::F64(f64_kernel(contiguous_slice(a, l)?))),
        other => candle_core::bail!("mmgen kernels support f32 and f64, got {:?}", other.dtype()),
    }
}

/// Runs a two-input kernel on f32 or f64 storage of the same type.
pub(crate) fn dispatch2(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    f32_kernel: impl Fn(&[f32], &[f32]) -> Vec<f32>,
    f64_kernel: impl Fn(&[f64], &[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => Ok(CpuStorage::F32(f32_kernel(
            contiguous_slice(a, l1)?,
            contiguous_slice(b, l2)?,
        ))),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => Ok(CpuStorage::F64(f64_kernel(
            contiguous_slice(a, l1)?,
            contiguous_slice(b, l2)?,
        ))),
        (a, b) => candle_core::bail!(
            "mmgen kernels need two f32 or two f64 inputs, got {:?} and {:?}",
            a.dtype(),
            b.dtype()
        ),
    }
}

/// Runs a three-input kernel on f32 or f64 storage of the same type.
pub(crate) fn dispatch3(
    inputs: [(&CpuStorage, &Layout); 3],
    f32_kernel: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
    f64_kernel: impl Fn(&[f64], &[f64], &[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    let [(s1, l1), (s2, l2), (s3, l3)] = inputs;
    match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
            Ok(CpuStorage::F32(f32_kernel(
                contiguous_slice(a, l1)?,
                contiguous_slice(b, l2)?,
                contiguous_slice(c, l3)?,
            )))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
            Ok(CpuStorage::F64(f64_kernel(
                contiguous_slice(a, l1)?,
                contiguous_slice(b, l2)?,
                contiguous_slice(c, l3)?,
            )))
        }
        _ => candle_core::bail!("mmgen kernels need three f32 or three f64 inputs"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    /// Returns the largest absolute element-wise difference of two f32
    /// tensors of one shape.
    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// A deterministic, non-constant tensor.
    pub fn ramp(shape: &[usize], dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// Checks autograd gradients of `sum(f(inputs) * weights)` against
    /// central finite differences for every input (f64 tensors), at every
    /// second element.
    pub fn check_gradients(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&tensors);
        let weights = ramp(out.dims(), DType::F64).sin().unwrap();
        let loss = |out: &Tensor| (out * &weights).unwrap().sum_all().unwrap();
        let grads = loss(&out).backward().unwrap();
        let h = 1e-5;
        for (which, var) in vars.iter().enumerate() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for input {which}"));
            let grad = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let values = inputs[which]
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for i in (0..values.len()).step_by(2) {
                let eval = |delta: f64| {
                    let mut v = values.clone();
                    v[i] += delta;
                    let mut shifted = inputs.to_vec();
                    shifted[which] =
                        Tensor::from_vec(v, inputs[which].shape(), &Device::Cpu).unwrap();
                    loss(&f(&shifted)).to_scalar::<f64>().unwrap()
                };
                let numeric = (eval(h) - eval(-h)) / (2.0 * h);
                let tolerance = 1e-6 + 1e-5 * numeric.abs();
                assert!(
                    (grad[i] - numeric).abs() < tolerance,
                    "input {which} element {i}: autograd {} vs finite difference {numeric}",
                    grad[i]
                );
            }
        }
    }
}
