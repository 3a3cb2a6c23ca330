//! Text-to-latent sampling with classifier-free guidance, and the DDIM
//! inversion that watermark detection runs on suspect images.

use candle_core::{D, DType, Tensor};
use image::RgbImage;

use super::EngineError;
use super::ddim::Ddim;
use super::layout::{self, LayoutGuidance, PlannedObject};
use super::model::Model;

/// Settings of one sampling run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// DDIM steps.
    pub steps: usize,
    /// Classifier-free guidance scale; 1 disables guidance.
    pub guidance: f64,
    /// Whether to apply the model's layout guidance, when its
    /// configuration has one.
    pub layout: bool,
}

/// Settings of one inversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InversionOptions {
    /// DDIM steps from the clean latent up to the noisiest timestep.
    pub steps: usize,
    /// Fixed-point refinements per step (0: the plain first-order inversion).
    pub refinements: usize,
}

impl Model {
    /// Denoises `noise` `(batch, c, h, w)` into clean scaled latents, one
    /// prompt per latent. `on_step` is called after each step with the
    /// number of steps done.
    pub fn sample<S: AsRef<str>>(
        &self,
        noise: &Tensor,
        prompts: &[S],
        options: &SampleOptions,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("sampling", source);
        let batch = noise.dim(0).map_err(err)?;
        if batch != prompts.len() {
            return Err(EngineError::InvalidConfig(format!(
                "{batch} latents but {} prompts",
                prompts.len()
            )));
        }
        let (cond, _) = self.encode_prompts(prompts)?;
        let (uncond, _) = self.encode_prompts(&vec![""; batch])?;
        let plain = Conditioning::new(&cond, &uncond, None, options.guidance)?;
        let timesteps = self.schedule.ddim_timesteps(options.steps);
        let layout = match self.config.layout_guidance.filter(|_| options.layout) {
            Some(guidance) => self.layout(
                noise,
                prompts,
                (&cond, &uncond),
                &plain,
                &timesteps,
                &guidance,
            )?,
            None => None,
        };
        // A UNet with layout channels reads the chosen layout at every
        // step, but the attention bias applies to the leading steps only.
        let (plain, layout) = match layout {
            Some(planned) => (
                plain.with_layout(planned.channels.clone())?,
                Some((planned.guided, planned.active_steps)),
            ),
            None => (plain, None),
        };
        let ddim = Ddim::new(&self.schedule, self.config.prediction_type);
        let mut x = noise.clone();
        for (i, &t) in timesteps.iter().enumerate() {
            let conditioning = match &layout {
                Some((guided, active_steps)) if i < *active_steps => guided,
                _ => &plain,
            };
            let output = self.guided_output(&x, t, conditioning)?;
            x = ddim
                .step(&x, &output, t, timesteps.get(i + 1).copied())
                .map_err(err)?;
            tracing::trace!(step = i + 1, timestep = t, "ddim step");
            on_step(i + 1);
        }
        Ok(x)
    }

    /// Plans the layouts of a batch (see `engine::layout`) and returns the
    /// conditioning that carries them, or `None` when no prompt of the
    /// batch has a layout.
    fn layout<S: AsRef<str>>(
        &self,
        noise: &Tensor,
        prompts: &[S],
        (cond, uncond): (&Tensor, &Tensor),
        plain: &Conditioning,
        timesteps: &[usize],
        guidance: &LayoutGuidance,
    ) -> Result<Option<PlannedConditioning>, EngineError> {
        guidance.validate()?;
        let err = |source| EngineError::candle("planning layouts", source);
        let latents = noise
            .flatten_from(1)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(err)?;
        let candidates: Vec<Vec<Vec<PlannedObject>>> = prompts
            .iter()
            .zip(&latents)
            .map(|(prompt, latent)| {
                let seed = layout::layout_seed(latent);
                layout::plans(&self.tokenizer, prompt.as_ref(), seed, guidance.candidates)
            })
            .collect();
        if candidates.iter().all(Vec::is_empty) {
            return Ok(None);
        }

        let probe_steps = guidance.probe_steps(timesteps.len());
        let estimates = if probe_steps > 0 {
            Some(self.probe(noise, plain, &timesteps[..probe_steps])?)
        } else {
            None
        };
        let chosen: Vec<Vec<PlannedObject>> = candidates
            .into_iter()
            .enumerate()
            .map(|(i, mut plans)| {
                if plans.is_empty() {
                    return Vec::new();
                }
                let pick = estimates
                    .as_ref()
                    .map_or(0, |images| layout::choose(&plans, &images[i]));
                plans.swap_remove(pick)
            })
            .collect();

        let (_, _, height, width) = noise.dims4().map_err(err)?;
        let regions = layout::region_biases(
            &chosen,
            self.tokenizer.max_len(),
            (height, width),
            guidance.strength,
        )?
        .to_device(noise.device())
        .and_then(|t| t.to_dtype(noise.dtype()))
        .map_err(err)?;
        let channels = match self.unet.config().layout_channels {
            0 => None,
            count => {
                let circles: Vec<Vec<layout::Circle>> = chosen
                    .iter()
                    .map(|plan| plan.iter().map(PlannedObject::circle).collect())
                    .collect();
                let maps = layout::layout_maps(&circles, count, (height, width))?
                    .to_device(noise.device())
                    .and_then(|t| t.to_dtype(noise.dtype()))
                    .map_err(err)?;
                Some(maps)
            }
        };
        // Every latent's context gains the empty prompt's tokens; the
        // unconditional half attends to them twice, which changes nothing.
        let guided = Conditioning::new(
            &Tensor::cat(&[cond, uncond], 1).map_err(err)?,
            &Tensor::cat(&[uncond, uncond], 1).map_err(err)?,
            Some(regions),
            plain.guidance,
        )?
        .with_layout(channels.clone())?;
        Ok(Some(PlannedConditioning {
            guided,
            active_steps: guidance.active_steps(timesteps.len()),
            channels,
        }))
    }

    /// Runs `timesteps` from `noise` without layout guidance and decodes the
    /// clean image that the last step predicts.
    fn probe(
        &self,
        noise: &Tensor,
        plain: &Conditioning,
        timesteps: &[usize],
    ) -> Result<Vec<RgbImage>, EngineError> {
        let err = |source| EngineError::candle("probing the layout", source);
        let ddim = Ddim::new(&self.schedule, self.config.prediction_type);
        let mut x = noise.clone();
        let mut estimate = None;
        for (i, &t) in timesteps.iter().enumerate() {
            let output = self.guided_output(&x, t, plain)?;
            if i + 1 == timesteps.len() {
                let (_, x0) = ddim
                    .split(&x, &output, ddim.alpha_bar(Some(t)))
                    .map_err(err)?;
                estimate = Some(x0);
            } else {
                x = ddim
                    .step(&x, &output, t, Some(timesteps[i + 1]))
                    .map_err(err)?;
            }
        }
        match estimate {
            Some(x0) => self.decode_latents(&x0),
            None => Ok(Vec::new()),
        }
    }

    /// Runs the UNet at `(x, t)`, with classifier-free guidance when the
    /// conditioning has an unconditional half.
    fn guided_output(
        &self,
        x: &Tensor,
        t: usize,
        conditioning: &Conditioning,
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("sampling", source);
        if !conditioning.guided() {
            return self.unet_at(
                x,
                t,
                &conditioning.context,
                conditioning.regions.as_ref(),
                conditioning.layout.as_ref(),
            );
        }
        let batch = x.dim(0).map_err(err)?;
        let input = Tensor::cat(&[x, x], 0).map_err(err)?;
        let out = self.unet_at(
            &input,
            t,
            &conditioning.context,
            conditioning.regions.as_ref(),
            conditioning.layout.as_ref(),
        )?;
        let uncond = out.narrow(0, 0, batch).map_err(err)?;
        let cond = out.narrow(0, batch, batch).map_err(err)?;
        (&uncond + ((cond - &uncond).map_err(err)? * conditioning.guidance).map_err(err)?)
            .map_err(err)
    }

    /// Estimates the initial noise that produced clean scaled `latents`, by
    /// DDIM inversion with the empty prompt and no guidance.
    pub fn invert(
        &self,
        latents: &Tensor,
        options: &InversionOptions,
    ) -> Result<Tensor, EngineError> {
        let batch = latents
            .dim(0)
            .map_err(|source| EngineError::candle("inverting", source))?;
        let (empty, _) = self.encode_prompts(&vec![""; batch])?;
        let plain = Conditioning::new(&empty, &empty, None, 1.0)?;
        self.invert_under(latents, options, &|_| &plain)
    }

    /// Estimates the initial noise of `latents` by DDIM inversion under the
    /// conditioning that sampled them: `prompts`, the layout that sampling
    /// planned from the initial latents `noise`, and `sample`'s guidance.
    /// `verify` does not use it. `examples/probe_rereading.rs` does, to
    /// measure what the empty-prompt inversion of [`invert`](Self::invert)
    /// loses.
    pub fn invert_as_sampled<S: AsRef<str>>(
        &self,
        latents: &Tensor,
        noise: &Tensor,
        prompts: &[S],
        sample: &SampleOptions,
        options: &InversionOptions,
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("inverting", source);
        let batch = latents.dim(0).map_err(err)?;
        if batch != prompts.len() || noise.dims() != latents.dims() {
            return Err(EngineError::InvalidConfig(format!(
                "{batch} latents of shape {:?}, but {} prompts and initial latents of shape {:?}; \
                 pass one prompt and one initial latent per latent",
                latents.dims(),
                prompts.len(),
                noise.dims()
            )));
        }
        let (cond, _) = self.encode_prompts(prompts)?;
        let (uncond, _) = self.encode_prompts(&vec![""; batch])?;
        let plain = Conditioning::new(&cond, &uncond, None, sample.guidance)?;
        let sampled = self.schedule.ddim_timesteps(sample.steps);
        let planned = match self.config.layout_guidance.filter(|_| sample.layout) {
            Some(guidance) => self.layout(
                noise,
                prompts,
                (&cond, &uncond),
                &plain,
                &sampled,
                &guidance,
            )?,
            None => None,
        };
        let Some(planned) = planned else {
            return self.invert_under(latents, options, &|_| &plain);
        };
        let plain = plain.with_layout(planned.channels.clone())?;
        // Sampling biased attention during its leading (noisiest) steps, so
        // an inversion step at or above the last of those timesteps does too.
        let cutoff = planned
            .active_steps
            .checked_sub(1)
            .and_then(|last| sampled.get(last).copied());
        let guided = &planned.guided;
        self.invert_under(latents, options, &|t| match cutoff {
            Some(cutoff) if t >= cutoff => guided,
            _ => &plain,
        })
    }

    /// Inverts `latents` by first-order DDIM, with the conditioning that
    /// `condition` returns for each timestep.
    fn invert_under<'a>(
        &self,
        latents: &Tensor,
        options: &InversionOptions,
        condition: &dyn Fn(usize) -> &'a Conditioning,
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("inverting", source);
        let ddim = Ddim::new(&self.schedule, self.config.prediction_type);
        let mut timesteps = self.schedule.ddim_timesteps(options.steps);
        timesteps.reverse();
        let mut x = latents.clone();
        let mut alpha_below = 1.0;
        for &t in &timesteps {
            let conditioning = condition(t);
            let output = self.guided_output(&x, t, conditioning)?;
            let mut estimate = ddim
                .invert_step(&x, alpha_below, &x, &output, t)
                .map_err(err)?;
            for _ in 0..options.refinements {
                let output = self.guided_output(&estimate, t, conditioning)?;
                estimate = ddim
                    .invert_step(&x, alpha_below, &estimate, &output, t)
                    .map_err(err)?;
            }
            x = estimate;
            alpha_below = ddim.alpha_bar(Some(t));
        }
        Ok(x)
    }

    /// Runs the UNet at one timestep for the whole batch. Inversion passes
    /// no layout, so a UNet with layout channels inverts with zeros there.
    fn unet_at(
        &self,
        x: &Tensor,
        t: usize,
        context: &Tensor,
        regions: Option<&Tensor>,
        layout: Option<&Tensor>,
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("running the UNet", source);
        let batch = x.dim(0).map_err(err)?;
        let timesteps = Tensor::full(t as f32, batch, &self.device).map_err(err)?;
        self.unet
            .forward_with_layout(x, &timesteps, context, regions, layout)
            .map_err(err)
    }
}

/// Per-latent standard deviation, a cheap sanity figure for logs.
pub fn latent_std(latents: &Tensor) -> Result<Vec<f32>, EngineError> {
    let err = |source| EngineError::candle("measuring latents", source);
    let flat = latents.flatten_from(1).map_err(err)?;
    let mean = flat.mean_keepdim(D::Minus1).map_err(err)?;
    let var = flat
        .broadcast_sub(&mean)
        .and_then(|c| c.sqr())
        .and_then(|s| s.mean(D::Minus1))
        .map_err(err)?;
    var.sqrt().and_then(|s| s.to_vec1()).map_err(err)
}

/// The text side of a sampling step: the context the UNet attends to, its
/// region biases, the layout channels, and the guidance scale. With
/// guidance, the batch is the unconditional half followed by the
/// conditional half.
struct Conditioning {
    context: Tensor,
    regions: Option<Tensor>,
    layout: Option<Tensor>,
    guidance: f64,
}

/// A planned layout as sampling uses it: the conditioning with the
/// attention bias, the number of leading steps it applies to, and the
/// layout channels `(batch, channels, h, w)` of the conditional half, when
/// the UNet has them.
struct PlannedConditioning {
    guided: Conditioning,
    active_steps: usize,
    channels: Option<Tensor>,
}

impl Conditioning {
    /// Joins `cond` and `uncond` contexts `(batch, len, dim)`; `regions`
    /// `(batch, len, h, w)` bias the conditional half, and the
    /// unconditional half gets none.
    fn new(
        cond: &Tensor,
        uncond: &Tensor,
        regions: Option<Tensor>,
        guidance: f64,
    ) -> Result<Self, EngineError> {
        let err = |source| EngineError::candle("preparing the text condition", source);
        if guidance == 1.0 {
            return Ok(Self {
                context: cond.clone(),
                regions,
                layout: None,
                guidance,
            });
        }
        let context = Tensor::cat(&[uncond, cond], 0).map_err(err)?;
        let regions = match regions {
            Some(r) => Some(Tensor::cat(&[&r.zeros_like().map_err(err)?, &r], 0).map_err(err)?),
            None => None,
        };
        Ok(Self {
            context,
            regions,
            layout: None,
            guidance,
        })
    }

    /// Gives the conditional half the layout channels `layout` `(batch,
    /// channels, h, w)`, and the unconditional half zeros.
    fn with_layout(self, layout: Option<Tensor>) -> Result<Self, EngineError> {
        let err = |source| EngineError::candle("preparing the layout channels", source);
        let Some(layout) = layout else {
            return Ok(Self {
                layout: None,
                ..self
            });
        };
        let layout = if self.guided() {
            Tensor::cat(&[&layout.zeros_like().map_err(err)?, &layout], 0).map_err(err)?
        } else {
            layout
        };
        Ok(Self {
            layout: Some(layout),
            ..self
        })
    }

    fn guided(&self) -> bool {
        self.guidance != 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::builtin;
    use crate::eval::evaluate;
    use crate::watermark::plain_latent;
    use crate::world::{Colour, Language, Object, Relation, SceneSpec, Shape, Size, caption};
    use candle_core::Device;

    fn noise(model: &Model, seeds: std::ops::Range<u64>) -> Tensor {
        let (c, h, w) = model.config().latent_shape();
        let count = seeds.end - seeds.start;
        let values: Vec<f32> = seeds.flat_map(|s| plain_latent(s, c * h * w)).collect();
        Tensor::from_vec(values, (count as usize, c, h, w), &Device::Cpu).unwrap()
    }

    fn options(model: &Model, steps: usize, layout: bool) -> SampleOptions {
        SampleOptions {
            steps,
            guidance: model.config().default_guidance,
            layout,
        }
    }

    #[test]
    fn layout_channels_reach_only_the_conditional_half() {
        let device = Device::Cpu;
        let cond = Tensor::ones((2, 3, 4), DType::F32, &device).unwrap();
        let uncond = Tensor::zeros((2, 3, 4), DType::F32, &device).unwrap();
        let layout = Tensor::ones((2, 3, 4, 4), DType::F32, &device).unwrap();
        let guided = Conditioning::new(&cond, &uncond, None, 3.0)
            .unwrap()
            .with_layout(Some(layout.clone()))
            .unwrap();
        let channels = guided.layout.unwrap();
        assert_eq!(channels.dims(), &[4, 3, 4, 4]);
        let per_latent: Vec<f32> = channels
            .flatten_from(1)
            .unwrap()
            .sum(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(per_latent, [0.0, 0.0, 48.0, 48.0]);

        let unguided = Conditioning::new(&cond, &uncond, None, 1.0)
            .unwrap()
            .with_layout(Some(layout))
            .unwrap();
        assert_eq!(unguided.layout.unwrap().dims(), &[2, 3, 4, 4]);
        let none = Conditioning::new(&cond, &uncond, None, 3.0)
            .unwrap()
            .with_layout(None)
            .unwrap();
        assert!(none.layout.is_none());
    }

    #[test]
    fn inversion_as_sampled_follows_record() {
        use crate::engine::ops::tests::max_abs_diff;
        let model = builtin::load(&Device::Cpu).unwrap();
        let noise = noise(&model, 0..2);
        let prompts = [
            "a small red circle above a large blue square",
            "一个小红色圆在大蓝色正方形的上方",
        ];
        let sample = options(&model, 6, true);
        let latents = model
            .sample(&noise, &prompts, &sample, &mut |_| {})
            .unwrap();
        let inversion = InversionOptions {
            steps: 4,
            refinements: 0,
        };
        let plain = model.invert(&latents, &inversion).unwrap();
        let as_sampled = |prompts: &[&str], sample: &SampleOptions| {
            model
                .invert_as_sampled(&latents, &noise, prompts, sample, &inversion)
                .unwrap()
        };

        // An empty prompt without guidance or layout is the plain inversion.
        let bare = SampleOptions {
            guidance: 1.0,
            layout: false,
            ..sample
        };
        assert_eq!(max_abs_diff(&plain, &as_sampled(&["", ""], &bare)), 0.0);
        // The prompt and guidance move every latent, and so does the plan.
        let record = as_sampled(&prompts, &sample);
        for i in 0..2 {
            let moved = max_abs_diff(&plain.get(i).unwrap(), &record.get(i).unwrap());
            assert!(moved > 1e-3, "latent {i} moved by {moved}");
        }
        let unplanned = as_sampled(
            &prompts,
            &SampleOptions {
                layout: false,
                ..sample
            },
        );
        assert!(max_abs_diff(&record, &unplanned) > 1e-3);

        let short = model.invert_as_sampled(&latents, &noise, &prompts[..1], &sample, &inversion);
        assert!(matches!(short, Err(EngineError::InvalidConfig(_))));
    }

    #[test]
    fn layout_guidance_changes_only_prompts_it_can_plan() {
        let model = builtin::load(&Device::Cpu).unwrap();
        let prompts = ["a red circle above a blue square", "a photo of a cat"];
        let noise = noise(&model, 40..42);
        let run = |layout: bool| {
            model
                .sample(&noise, &prompts, &options(&model, 6, layout), &mut |_| {})
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let (guided, plain) = (run(true), run(false));
        assert_ne!(guided[0], plain[0], "a world prompt should be laid out");
        let gap = guided[1]
            .iter()
            .zip(&plain[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            gap < 1e-4,
            "other prompts should be left alone, moved by {gap}"
        );
        assert_eq!(run(true), guided, "layouts should follow from the noise");
    }

    /// Counts the scenes whose two shapes the evaluator finds in the
    /// stated relation.
    fn relations_kept(model: &Model, specs: &[SceneSpec], layout: bool) -> usize {
        let prompts: Vec<String> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let language = [Language::English, Language::Chinese][i % 2];
                caption(spec, language)
            })
            .collect();
        let noise = noise(model, 100..100 + specs.len() as u64);
        let steps = model.config().default_steps;
        let latents = model
            .sample(
                &noise,
                &prompts,
                &options(model, steps, layout),
                &mut |_| {},
            )
            .unwrap();
        let images = model.decode_latents(&latents).unwrap();
        images
            .iter()
            .zip(specs)
            .filter(|(image, spec)| evaluate(image, spec).unwrap().relation_ok == Some(true))
            .count()
    }

    #[test]
    fn guided_pairs_keep_their_relation() {
        let model = builtin::load(&Device::Cpu).unwrap();
        let object = |colour, shape| Object {
            shape,
            colour,
            size: Size::Large,
        };
        let pairs = [
            (Colour::Red, Colour::Blue),
            (Colour::Yellow, Colour::Purple),
            (Colour::Green, Colour::Pink),
            (Colour::Orange, Colour::Cyan),
        ];
        let relations = [
            Relation::Above,
            Relation::LeftOf,
            Relation::Below,
            Relation::RightOf,
        ];
        let specs: Vec<SceneSpec> = (0..8)
            .map(|i| {
                let (a, b) = pairs[i % 4];
                SceneSpec::Pair {
                    first: object(a, Shape::Circle),
                    relation: relations[(i + i / 4) % 4],
                    second: object(b, Shape::Square),
                }
            })
            .collect();
        let guided = relations_kept(&model, &specs, true);
        let plain = relations_kept(&model, &specs, false);
        assert!(guided >= 6, "layout guidance kept {guided} of 8 relations");
        assert!(
            guided > plain,
            "{guided} with layout guidance, {plain} without"
        );
    }
}
