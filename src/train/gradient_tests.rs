//! Checks that gradients flow through the whole training path: every
//! trainable tensor of the text encoder, the UNet and the autoencoder gets
//! a gradient from the training losses, and sampled gradient elements
//! match central finite differences of those losses (f64, tiny shapes).
//!
//! An operation without a backward pass drops its gradient silently, and
//! the model then trains badly rather than failing; these tests catch
//! that for every operation the networks use.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::engine::clip::{TextEncoder, TextEncoderConfig};
use crate::engine::unet::{UNet, UNetConfig};
use crate::engine::vae::{AutoEncoderKl, VaeConfig};

fn unet_config() -> UNetConfig {
    UNetConfig {
        in_channels: 4,
        block_out_channels: vec![8, 8],
        cross_attention: vec![true, true],
        layers_per_block: 1,
        cross_attention_dim: 8,
        attention_heads: 2,
        norm_num_groups: 4,
        coordinate_channels: true,
        layout_channels: 3,
    }
}

fn text_config() -> TextEncoderConfig {
    TextEncoderConfig {
        vocab_size: 12,
        max_position_embeddings: 6,
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        layer_norm_eps: 1e-5,
        causal: false,
    }
}

fn vae_config() -> VaeConfig {
    VaeConfig {
        in_channels: 3,
        latent_channels: 4,
        block_out_channels: vec![8, 8],
        layers_per_block: 1,
        norm_num_groups: 4,
        scaling_factor: 1.0,
    }
}

/// A deterministic, non-constant f64 tensor.
fn ramp(shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|i| (((i * 37 + 11) % 101) as f64 / 50.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Randomises every variable (biases and norms start at constants, which
/// would hide some gradients) with small deterministic values.
fn perturb(map: &VarMap) {
    let data = map.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (index, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let shape: Vec<usize> = var.dims().to_vec();
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n)
            .map(|i| (((i * 53 + index * 17 + 3) % 97) as f64 / 97.0 - 0.5) * 0.6)
            .collect();
        let base = var.as_tensor().clone();
        let noise = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
        var.set(&(base + noise).unwrap()).unwrap();
    }
}

fn named(map: &VarMap) -> HashMap<String, Var> {
    map.data().lock().unwrap().clone()
}

/// Checks every variable's gradient is present and not all zero, and
/// compares a few elements of the variables named in `sampled` with
/// finite differences of `loss`.
fn check(map: &VarMap, loss: impl Fn() -> Tensor, sampled: &[&str]) {
    let grads = loss().backward().unwrap();
    let vars = named(map);
    for (name, var) in &vars {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient reaches {name}"));
        let norm: f64 = grad.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0, "the gradient of {name} is zero");
    }
    for name in sampled {
        let var = vars
            .get(*name)
            .unwrap_or_else(|| panic!("no variable named {name}"));
        let grad = grads.get(var.as_tensor()).unwrap();
        let grad: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let original = var.as_tensor().copy().unwrap();
        let values: Vec<f64> = original.flatten_all().unwrap().to_vec1().unwrap();
        for i in [0, values.len() / 2, values.len() - 1] {
            let at = |delta: f64| {
                let mut shifted = values.clone();
                shifted[i] += delta;
                let t = Tensor::from_vec(shifted, original.shape(), &Device::Cpu).unwrap();
                var.set(&t).unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let h = 1e-5;
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            var.set(&original).unwrap();
            let tolerance = 1e-7 + 1e-4 * numeric.abs().max(grad[i].abs());
            assert!(
                (grad[i] - numeric).abs() < tolerance,
                "{name}[{i}]: autograd {} vs finite difference {numeric}",
                grad[i]
            );
        }
    }
}

#[test]
fn diffusion_loss_reaches_every_text_encoder_and_unet_tensor() {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let text = TextEncoder::new(&text_config(), vb.clone()).unwrap();
    let unet = UNet::new(&unet_config(), vb.pp("unet")).unwrap();
    perturb(&map);

    let ids = Tensor::new(&[[1u32, 5, 7, 2, 0, 0], [1, 9, 2, 0, 0, 0]], &Device::Cpu).unwrap();
    let noisy = ramp(&[2, 4, 8, 8], 1.0);
    let target = ramp(&[2, 4, 8, 8], 0.7).sin().unwrap();
    let t = Tensor::new(&[150f32, 700.0], &Device::Cpu).unwrap();
    let layout = ramp(&[2, 3, 8, 8], 0.3).cos().unwrap();
    let loss = || {
        let context = text.forward(&ids).unwrap();
        let out = unet
            .forward_with_layout(&noisy, &t, &context, None, Some(&layout))
            .unwrap();
        (out - &target).unwrap().sqr().unwrap().mean_all().unwrap()
    };
    check(
        &map,
        loss,
        &[
            "text_model.embeddings.token_embedding.weight",
            "text_model.encoder.layers.0.self_attn.q_proj.weight",
            "text_model.encoder.layers.0.layer_norm1.weight",
            "text_model.encoder.layers.0.mlp.fc1.weight",
            "unet.time_embedding.linear_1.weight",
            "unet.conv_in.weight",
            "unet.down_blocks.0.resnets.0.norm1.weight",
            "unet.down_blocks.0.resnets.0.time_emb_proj.bias",
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.norm3.bias",
            "unet.up_blocks.1.resnets.1.conv2.weight",
            "unet.conv_out.bias",
        ],
    );
}

#[test]
fn autoencoder_loss_reaches_every_tensor() {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let vae = AutoEncoderKl::new(&vae_config(), vb.pp("vae")).unwrap();
    perturb(&map);

    let images = ramp(&[2, 3, 16, 16], 0.9);
    let eps = ramp(&[2, 4, 8, 8], 1.0).cos().unwrap();
    let loss = || {
        let posterior = vae.encode(&images).unwrap();
        let std = (&posterior.log_var * 0.5).unwrap().exp().unwrap();
        let z = (&posterior.mean + (std * &eps).unwrap()).unwrap();
        let reconstruction = vae.decode(&z).unwrap();
        let recon = (reconstruction - &images)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let kl = ((posterior.mean.sqr().unwrap() + posterior.log_var.exp().unwrap()).unwrap()
            - 1.0)
            .unwrap();
        let kl = ((kl - &posterior.log_var).unwrap() * 0.5)
            .unwrap()
            .mean_all()
            .unwrap();
        (recon + (kl * 0.01).unwrap()).unwrap()
    };
    check(
        &map,
        loss,
        &[
            "vae.encoder.conv_in.weight",
            "vae.encoder.mid_block.attentions.0.to_q.weight",
            "vae.encoder.down_blocks.0.downsamplers.0.conv.weight",
            "vae.quant_conv.weight",
            "vae.decoder.up_blocks.0.upsamplers.0.conv.weight",
            "vae.decoder.conv_norm_out.weight",
        ],
    );
}
