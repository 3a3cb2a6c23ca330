//! AdamW with linear warm-up and cosine decay, gradient clipping and an
//! exponential moving average of the weights.
//!
//! candle-nn has an AdamW, but it keeps its moment estimates private, so a
//! run resumed from a checkpoint would restart them from zero. This one
//! exposes its state by variable name.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Learning-rate schedule: linear warm-up to `peak`, then cosine decay to
/// `floor` at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Learning rate at the end of warm-up.
    pub peak: f64,
    /// Learning rate at the last step.
    pub floor: f64,
    /// Steps of linear warm-up from zero.
    pub warmup_steps: usize,
    /// Length of the whole run.
    pub total_steps: usize,
}

impl LrSchedule {
    /// Learning rate for optimisation step `step` (counting from 0).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.floor + (self.peak - self.floor) * cosine
    }
}

/// AdamW (decoupled weight decay) over named variables.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    steps_done: usize,
}

impl AdamW {
    /// An optimiser over `vars` (sorted by name for a stable order).
    pub fn new(mut vars: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let first = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let second = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            first,
            second,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            steps_done: 0,
        })
    }

    /// Optimisation steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// The variables, by name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Scales gradients so their global L2 norm is at most `max_norm` and
    /// returns the norm before clipping.
    pub fn clip_gradients(&self, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
        let mut total = 0.0;
        for (_, var) in &self.vars {
            if let Some(grad) = grads.get(var.as_tensor()) {
                total += grad.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = total.sqrt();
        if norm > max_norm && norm.is_finite() {
            let scale = max_norm / norm;
            for (_, var) in &self.vars {
                if let Some(grad) = grads.remove(var.as_tensor()) {
                    grads.insert(var.as_tensor(), (grad * scale)?);
                }
            }
        }
        Ok(norm)
    }

    /// One update at learning rate `lr`. Variables without a gradient are
    /// left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps_done += 1;
        let t = self.steps_done as i32;
        let correction1 = 1.0 - self.beta1.powi(t);
        let correction2 = 1.0 - self.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Detached, so that no moment estimate keeps the previous
            // step's computation graph (and through it every earlier
            // estimate) alive.
            let grad = grad.detach();
            let m = ((&self.first[i] * self.beta1)? + (&grad * (1.0 - self.beta1))?)?.detach();
            let v =
                ((&self.second[i] * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?.detach();
            let update = ((&m / correction1)? / ((&v / correction2)?.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.first[i] = m;
            self.second[i] = v;
        }
        Ok(())
    }

    /// The moment estimates as named tensors, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut state = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            state.insert(format!("adam.m.{name}"), self.first[i].clone());
            state.insert(format!("adam.v.{name}"), self.second[i].clone());
        }
        state
    }

    /// Restores moment estimates saved by `state` and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps_done: usize) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let (Some(m), Some(v)) = (
                state.get(&format!("adam.m.{name}")),
                state.get(&format!("adam.v.{name}")),
            ) else {
                candle_core::bail!("checkpoint has no optimiser state for {name}")
            };
            self.first[i] = m.clone();
            self.second[i] = v.clone();
        }
        self.steps_done = steps_done;
        Ok(())
    }
}

/// Exponential moving average of variables; the averaged weights are what
/// a training run ships.
pub struct Ema {
    decay: f64,
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    /// Starts the average at the variables' current values.
    pub fn new(vars: &[(String, Var)], decay: f64) -> Result<Self> {
        let shadow = vars
            .iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { decay, shadow })
    }

    /// Folds the variables' current values into the average. The decay
    /// ramps up as (1 + step) / (10 + step) early on, so the average is not
    /// dominated by the random initialisation.
    pub fn update(&mut self, vars: &[(String, Var)], step: usize) -> Result<()> {
        let decay = self.decay.min((1 + step) as f64 / (10 + step) as f64);
        for ((_, shadow), (_, var)) in self.shadow.iter_mut().zip(vars) {
            // Detached: an average built from the variable would otherwise
            // record an operation that keeps every earlier average alive.
            let current = var.as_tensor().detach();
            *shadow = ((&*shadow * decay)? + (current * (1.0 - decay))?)?.detach();
        }
        Ok(())
    }

    /// The averaged tensors by variable name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.shadow.iter().cloned().collect()
    }

    /// Replaces the average with saved tensors (same names).
    pub fn load(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        for (name, shadow) in &mut self.shadow {
            match saved.get(name.as_str()) {
                Some(t) => *shadow = t.clone(),
                None => candle_core::bail!("checkpoint has no moving average for {name}"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn schedule_warms_up_then_decays() {
        let schedule = LrSchedule {
            peak: 1e-3,
            floor: 1e-4,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert!((schedule.at(0) - 1e-4).abs() < 1e-12);
        assert!((schedule.at(9) - 1e-3).abs() < 1e-12);
        assert!((schedule.at(60) - 5.5e-4).abs() < 1e-9);
        assert!((schedule.at(110) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn optimiser_state_keeps_no_graph() {
        // A moment estimate or average that records its operation keeps
        // every earlier step's tensors alive, so memory grows each step.
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let vars = vec![("x".to_string(), x.clone())];
        let mut adam = AdamW::new(vars.clone(), 0.01).unwrap();
        let mut ema = Ema::new(&vars, 0.9).unwrap();
        for step in 0..3 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            adam.step(&grads, 0.05).unwrap();
            ema.update(&vars, step).unwrap();
        }
        for (name, tensor) in adam.state().iter().chain(ema.tensors().iter()) {
            assert!(!tensor.track_op(), "{name} records its computation");
        }
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut adam = AdamW::new(vec![("x".into(), x.clone())], 0.0).unwrap();
        for _ in 0..500 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            adam.step(&grads, 0.05).unwrap();
        }
        let values = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.abs() < 0.05), "{values:?}");
    }

    #[test]
    fn clipping_bounds_the_gradient_norm() {
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()).unwrap();
        let adam = AdamW::new(vec![("x".into(), x.clone())], 0.0).unwrap();
        let loss = (x.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let mut grads = loss.backward().unwrap();
        let norm = adam.clip_gradients(&mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-5);
        let clipped = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((clipped[0] - 0.6).abs() < 1e-5 && (clipped[1] - 0.8).abs() < 1e-5);
    }

    #[test]
    fn state_round_trips() {
        let x = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let mut adam = AdamW::new(vec![("x".into(), x.clone())], 0.0).unwrap();
        let loss = (x.as_tensor() + 1.0)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        adam.step(&loss.backward().unwrap(), 0.1).unwrap();
        let state = adam.state();
        let mut other = AdamW::new(vec![("x".into(), x.clone())], 0.0).unwrap();
        other.load_state(&state, 1).unwrap();
        assert_eq!(other.steps_done(), 1);
        assert_eq!(
            other.state()["adam.m.x"].to_vec1::<f32>().unwrap(),
            state["adam.m.x"].to_vec1::<f32>().unwrap()
        );
    }
}
