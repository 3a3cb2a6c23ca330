//! Layers shared by the text encoder, the UNet and the VAE.
//!
//! Every layer here has a backward pass: on the CPU through the kernels in
//! `ops`, elsewhere through basic candle operations. candle-nn's fused
//! `layer_norm`, `rms_norm` and `softmax_last_dim` have none in candle
//! 0.11, so gradients through them would be silently dropped in training.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::ops;

/// Group normalisation over `(batch, channels, ...)`, as `torch.nn.GroupNorm`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias` of shape `(channels,)`.
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if !channels.is_multiple_of(groups) {
            candle_core::bail!("group norm: {channels} channels do not split into {groups} groups")
        }
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self {
            weight,
            bias,
            groups,
            eps,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if ops::enabled(xs.device()) {
            return ops::norm::group_norm(xs, &self.weight, &self.bias, self.groups, self.eps);
        }
        let shape = xs.dims().to_vec();
        let (batch, channels) = (shape[0], shape[1]);
        let grouped = xs.reshape((batch, self.groups, ()))?;
        let mean = grouped.mean_keepdim(D::Minus1)?;
        let centred = grouped.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut param_shape = vec![1, channels];
        param_shape.resize(shape.len(), 1);
        let weight = self.weight.reshape(param_shape.as_slice())?;
        let bias = self.bias.reshape(param_shape.as_slice())?;
        normed
            .reshape(shape.as_slice())?
            .broadcast_mul(&weight)?
            .broadcast_add(&bias)
    }
}

/// Layer normalisation over the last dimension, as `torch.nn.LayerNorm`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of shape `(dim,)`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if ops::enabled(xs.device()) {
            // Over the last axis this is a group norm with one group of
            // `dim` channels and one position per row.
            let dims = xs.dims().to_vec();
            let dim = *dims.last().unwrap_or(&0);
            let rows = xs.elem_count() / dim.max(1);
            let grouped = xs.reshape((rows, dim, 1))?;
            return ops::norm::group_norm(&grouped, &self.weight, &self.bias, 1, self.eps)?
                .reshape(dims);
        }
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// A fully connected layer, as `torch.nn.Linear` (tensor names `weight`
/// `(out, in)` and `bias` `(out,)`). On the CPU its bias runs on
/// `ops::bias`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let Some((&in_dim, leading)) = dims.split_last() else {
            candle_core::bail!("linear: input must have at least one axis")
        };
        let rows: usize = leading.iter().product();
        let out = xs
            .contiguous()?
            .reshape((rows, in_dim))?
            .matmul(&self.weight.t()?)?;
        let out = match &self.bias {
            Some(bias) if ops::enabled(out.device()) => ops::bias::add_channel_bias(&out, bias)?,
            Some(bias) => out.broadcast_add(bias)?,
            None => out,
        };
        let mut out_dims = leading.to_vec();
        out_dims.push(out.dim(1)?);
        out.reshape(out_dims)
    }
}

/// A linear layer with the given bias setting, initialised as candle-nn
/// and PyTorch do (Kaiming weights, uniform bias in +-1/sqrt(in_dim)).
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bias = if bias {
        let bound = 1.0 / (in_dim as f64).sqrt();
        Some(vb.get_with_hints(
            out_dim,
            "bias",
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

/// A 2-D convolution with a square kernel, as `torch.nn.Conv2d` (tensor
/// names `weight` and `bias`). On the CPU it runs on `ops::conv`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let out = if ops::enabled(xs.device()) {
            ops::conv::conv2d(xs, &self.weight, self.stride, self.padding)?
        } else {
            xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
        };
        match &self.bias {
            Some(bias) if ops::enabled(out.device()) => ops::bias::add_channel_bias(&out, bias),
            Some(bias) => out.broadcast_add(&bias.reshape((1, (), 1, 1))?),
            None => Ok(out),
        }
    }
}

/// A 2-D convolution with bias, initialised as candle-nn and PyTorch do
/// (Kaiming weights, uniform bias in +-1/sqrt(fan_in)).
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let weight = vb.get_with_hints(
        (out_channels, in_channels, kernel, kernel),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bound = 1.0 / ((in_channels * kernel * kernel) as f64).sqrt();
    let bias = vb.get_with_hints(
        out_channels,
        "bias",
        candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    Ok(Conv2d {
        weight,
        bias: Some(bias),
        stride,
        padding,
    })
}

/// SiLU as a module, for `Tensor::apply`; on `ops::pointwise` on the CPU.
#[derive(Debug, Clone, Copy)]
pub struct Silu;

impl Module for Silu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if ops::enabled(xs.device()) {
            ops::pointwise::silu(xs)
        } else {
            xs.silu()
        }
    }
}

/// GELU (tanh approximation); on `ops::pointwise` on the CPU.
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    if ops::enabled(xs.device()) {
        ops::pointwise::gelu_tanh(xs)
    } else {
        xs.gelu()
    }
}

/// GEGLU: splits the last dimension into `[value | gate]` halves and
/// returns `value * gelu(gate)`; on `ops::pointwise` on the CPU.
pub fn geglu(xs: &Tensor) -> Result<Tensor> {
    if ops::enabled(xs.device()) {
        ops::pointwise::geglu(xs)
    } else {
        let half = xs.dim(D::Minus1)? / 2;
        let value = xs.narrow(D::Minus1, 0, half)?;
        let gate = xs.narrow(D::Minus1, half, half)?;
        value * gate.gelu()?
    }
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last(xs: &Tensor) -> Result<Tensor> {
    if ops::enabled(xs.device()) {
        ops::pointwise::softmax_last(xs)
    } else {
        candle_nn::ops::softmax(xs, D::Minus1)
    }
}

/// Multi-head scaled dot-product attention.
///
/// `q`: `(batch, q_len, heads * head_dim)`, `k` and `v`:
/// `(batch, kv_len, heads * head_dim)`; `bias`, when given, is added to
/// the scores and broadcasts to `(batch * heads, q_len, kv_len)`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (batch, q_len, inner) = q.dims3()?;
    let kv_len = k.dim(1)?;
    let head_dim = inner / heads;
    let split = |t: &Tensor, len: usize| -> Result<Tensor> {
        t.reshape((batch, len, heads, head_dim))?
            .transpose(1, 2)?
            .reshape((batch * heads, len, head_dim))?
            .contiguous()
    };
    let q = (split(q, q_len)? * (head_dim as f64).powf(-0.5))?;
    let k = split(k, kv_len)?;
    let v = split(v, kv_len)?;
    let mut scores = q.matmul(&k.t()?)?;
    if let Some(bias) = bias {
        scores = scores.broadcast_add(bias)?;
    }
    let probs = softmax_last(&scores)?;
    probs
        .matmul(&v)?
        .reshape((batch, heads, q_len, head_dim))?
        .transpose(1, 2)?
        .reshape((batch, q_len, inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn group_norm_normalises_each_group() {
        let vb = VarBuilder::from_varmap(&candle_nn::VarMap::new(), DType::F32, &Device::Cpu);
        let norm = GroupNorm::new(2, 4, 1e-5, vb).unwrap();
        let out = norm.forward(&ramp(&[2, 4, 3, 3])).unwrap();
        let grouped = out.reshape((2, 2, 18)).unwrap();
        let mean = grouped
            .mean_keepdim(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let var = grouped
            .sqr()
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for m in mean {
            assert!(m.abs() < 1e-5, "mean {m}");
        }
        for v in var {
            assert!((v - 1.0).abs() < 1e-3, "variance {v}");
        }
    }

    /// Compares autograd gradients of `f` at `x` with central finite
    /// differences, in f64 so the differences are not swamped by rounding.
    fn check_gradient(f: impl Fn(&Tensor) -> Tensor, x: &Tensor) {
        let x = x.to_dtype(DType::F64).unwrap();
        let var = Var::from_tensor(&x).unwrap();
        let grads = f(var.as_tensor()).backward().unwrap();
        let grad = grads
            .get(var.as_tensor())
            .expect("gradient reaches the input");
        let grad = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let values = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-5;
        for i in (0..values.len()).step_by(3) {
            let mut plus = values.clone();
            let mut minus = values.clone();
            plus[i] += h;
            minus[i] -= h;
            let eval = |v: Vec<f64>| -> f64 {
                let t = Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap();
                f(&t).to_scalar::<f64>().unwrap()
            };
            let numeric = (eval(plus) - eval(minus)) / (2.0 * h);
            let tolerance = 1e-6 + 1e-4 * numeric.abs();
            assert!(
                (grad[i] - numeric).abs() < tolerance,
                "element {i}: autograd {} vs numeric {numeric}",
                grad[i]
            );
        }
    }

    fn f64_builder() -> VarBuilder<'static> {
        VarBuilder::from_varmap(&candle_nn::VarMap::new(), DType::F64, &Device::Cpu)
    }

    #[test]
    fn group_norm_gradient_matches_finite_differences() {
        let norm = GroupNorm::new(2, 4, 1e-5, f64_builder()).unwrap();
        let weights = ramp(&[2, 4, 3, 3])
            .to_dtype(DType::F64)
            .unwrap()
            .sin()
            .unwrap();
        let x = ramp(&[2, 4, 3, 3]);
        check_gradient(
            |x| {
                (norm.forward(x).unwrap() * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            },
            &x,
        );
    }

    #[test]
    fn layer_norm_gradient_matches_finite_differences() {
        let norm = LayerNorm::new(5, 1e-5, f64_builder()).unwrap();
        let weights = ramp(&[3, 5]).to_dtype(DType::F64).unwrap().cos().unwrap();
        check_gradient(
            |x| {
                (norm.forward(x).unwrap() * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            },
            &ramp(&[3, 5]),
        );
    }

    #[test]
    fn attention_gradient_matches_finite_differences() {
        let k = ramp(&[1, 5, 4]).to_dtype(DType::F64).unwrap();
        let v = k.cos().unwrap();
        let weights = ramp(&[1, 3, 4])
            .to_dtype(DType::F64)
            .unwrap()
            .sin()
            .unwrap();
        let loss = |q: &Tensor| {
            (attention(q, &k, &v, 2, None).unwrap() * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        check_gradient(loss, &ramp(&[1, 3, 4]));
    }

    #[test]
    fn attention_weights_sum_to_one() {
        let q = ramp(&[1, 4, 8]);
        let v = Tensor::ones((1, 6, 8), DType::F32, &Device::Cpu).unwrap();
        let k = ramp(&[1, 6, 8]);
        let out = attention(&q, &k, &v, 2, None).unwrap();
        let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for value in values {
            assert!((value - 1.0).abs() < 1e-5, "attention of ones gave {value}");
        }
    }
}
