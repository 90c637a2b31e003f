//! Training the UNet for noise prediction (DDPM's simple loss): the forward pass of a batch of
//! noised samples as a [`Tape`] (the same operations as [`UNet::prepare`], default time
//! embedding), the mean squared error against the noise, the backward pass derived from it,
//! and AdamW over the f32 weights, which are the loaded UNet's own tensors (trained in place).

use std::path::Path;

use super::config::{BlockKind, TimeShift, UNetConfig};
use super::unet::{UNet, time_config};
use super::weights::{AttnBlock, Conv, Linear, Norm, ResBlock};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::autodiff::Tape;
use crate::graph::{Id, Plan};
use crate::io::Checkpoint;
use crate::kernels::timestep;
use crate::models::train::{self, HostTensor, Optimizer, Parameter, Update};
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// The inputs a batch writes and the loss it reads.
struct Inputs {
    /// The noised samples `x_t` `[batch, C, H, W]`.
    sample: Tensor,
    /// Each sample's timestep (f32, `[batch]`).
    timesteps: Tensor,
    /// The noise the UNet should predict, shaped as `sample`.
    target: Tensor,
    loss: Tensor,
}

/// A UNet being trained: the model (its weights are the parameters), the compiled forward
/// and backward plan for one batch size, and the optimizer.
pub struct UNetTrainer {
    gpu: Gpu,
    unet: UNet,
    batch: usize,
    params: Vec<Parameter>,
    inputs: Inputs,
    plan: Plan,
    pub optimizer: Optimizer,
}

/// Fresh weights for `config` as PyTorch initialises its layers by default: convolution and
/// Linear weights uniform in ±1/√fan_in, biases 0, norms 1 ([`Checkpoint::synthetic`]).
pub fn initial_weights(seed: u64) -> Checkpoint {
    Checkpoint::synthetic(seed)
}

impl UNetTrainer {
    /// A trainer for the UNet `config` with the weights in `checkpoint`, compiled for
    /// batches of `batch` samples.
    pub fn new(
        gpu: &Gpu,
        config: UNetConfig,
        checkpoint: &Checkpoint,
        batch: usize,
        optimizer: Optimizer,
    ) -> Result<UNetTrainer> {
        if config.time_shift != TimeShift::Default || config.center_input_sample {
            return Err(Error::Invalid(
                "training covers UNets with the default time embedding and uncentred input"
                    .to_string(),
            ));
        }
        let unet = UNet::from_parts(gpu, config, checkpoint, DType::F32)?;
        unet.check_batch(batch)?;
        let params = unet
            .weights
            .named
            .iter()
            .map(|(name, tensor)| Parameter::from_tensor(gpu, name, tensor))
            .collect::<Result<Vec<_>>>()?;
        let shape = unet.sample_shape(batch);
        let inputs = Inputs {
            sample: Tensor::empty(gpu, &shape, DType::F32)?,
            timesteps: Tensor::empty(gpu, &[batch], DType::F32)?,
            target: Tensor::empty(gpu, &shape, DType::F32)?,
            loss: Tensor::empty(gpu, &[batch], DType::F32)?,
        };
        let plan = build_plan(gpu, &unet, &params, &inputs, batch)?;
        Ok(UNetTrainer {
            gpu: gpu.clone(),
            unet,
            batch,
            params,
            inputs,
            plan,
            optimizer,
        })
    }

    pub fn unet(&self) -> &UNet {
        &self.unet
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn parameters(&self) -> &[Parameter] {
        &self.params
    }

    /// Times each kernel of one forward and backward pass on the last batch written
    /// (`repeats` samples, median), longest first.
    pub fn profile(&self, repeats: u32) -> Result<Vec<crate::graph::KernelTime>> {
        self.plan.profile(0, repeats)
    }

    /// Bytes of the plan's intermediate tensors (activations and gradients).
    pub fn scratch_bytes(&self) -> u64 {
        self.plan.scratch_bytes()
    }

    /// Runs the forward and backward pass on noised samples `x_t` at `timesteps` against
    /// the `noise` to predict, and returns the mean squared error; the gradients are left in
    /// the parameters.
    pub fn compute_gradients(
        &mut self,
        x_t: &[f32],
        timesteps: &[f32],
        noise: &[f32],
    ) -> Result<f64> {
        let len = self.inputs.sample.len();
        if x_t.len() != len || noise.len() != len || timesteps.len() != self.batch {
            return Err(Error::shape(
                "training batch",
                format!(
                    "{} samples, {} noise values and {} timesteps for a batch of {} × {len}",
                    x_t.len(),
                    noise.len(),
                    timesteps.len(),
                    self.batch
                ),
            ));
        }
        crate::error::require_finite(x_t, || "the noised samples".to_string())?;
        self.inputs.sample.write_f32(x_t)?;
        self.inputs.timesteps.write_f32(timesteps)?;
        self.inputs.target.write_f32(noise)?;
        self.plan.run(0)?;
        let losses = self.inputs.loss.to_f32()?;
        Ok(losses.iter().map(|&l| f64::from(l)).sum::<f64>() / len as f64)
    }

    /// One training step at learning rate `lr`: (mean loss, what the optimizer did).
    pub fn step(
        &mut self,
        x_t: &[f32],
        timesteps: &[f32],
        noise: &[f32],
        lr: f32,
    ) -> Result<(f64, Update)> {
        let loss = self.compute_gradients(x_t, timesteps, noise)?;
        let update = self.optimizer.step(&self.gpu, &self.params, lr, 1.0)?;
        Ok((loss, update))
    }

    /// The gradients of the last batch, `(name, values)`.
    pub fn gradients(&self) -> Result<Vec<(String, Vec<f32>)>> {
        self.params
            .iter()
            .map(|p| Ok((p.name.clone(), p.grad.to_f32()?)))
            .collect()
    }

    /// The weights as they are now.
    pub fn weights(&self) -> Result<Vec<HostTensor>> {
        train::read_values(&self.params)
    }

    /// Writes `diffusion_pytorch_model.safetensors` (f32) to `dir`, and the optimizer state
    /// (`optimizer.safetensors`) when `with_state`.
    pub fn save_weights(&self, dir: &Path, with_state: bool) -> Result<()> {
        let weights = self.weights()?;
        train::write_safetensors(
            &dir.join("diffusion_pytorch_model.safetensors"),
            &weights,
            DType::F32,
            None,
        )?;
        if with_state {
            train::save_moments(&dir.join("optimizer.safetensors"), &self.params)?;
        }
        Ok(())
    }

    /// Restores the optimizer's moments from `dir` (the step count is the caller's).
    pub fn load_moments(&self, dir: &Path) -> Result<()> {
        train::load_moments(&dir.join("optimizer.safetensors"), &self.params)
    }
}

/// The noising of DDPM training: `x_t = √ᾱ_t · x_0 + √(1 - ᾱ_t) · noise` for each sample's
/// timestep, with `alphas_cumprod` the scheduler's ᾱ.
pub fn add_noise(
    alphas_cumprod: &[f64],
    x0: &[f32],
    noise: &[f32],
    timesteps: &[usize],
) -> Vec<f32> {
    let per = x0.len() / timesteps.len().max(1);
    x0.iter()
        .zip(noise)
        .enumerate()
        .map(|(i, (&x, &n))| {
            let a = alphas_cumprod[timesteps[i / per]];
            (a.sqrt() * f64::from(x) + (1.0 - a).sqrt() * f64::from(n)) as f32
        })
        .collect()
}

/// DDPM training batches from a set of images: per batch, `batch` image indices
/// (`next % images`), `batch` timesteps (`next % T`), then standard normal noise
/// ([`train::normal`]) from one SplitMix64 generator, and `x_t` computed in f64, so a script
/// can draw the same batches.
pub struct DdpmBatches {
    images: Vec<f32>,
    image_len: usize,
    alphas_cumprod: Vec<f64>,
    rng: Rng,
}

/// One batch: the noised samples, their timesteps, the noise to predict.
pub struct DdpmBatch {
    pub x_t: Vec<f32>,
    pub timesteps: Vec<f32>,
    pub noise: Vec<f32>,
}

impl DdpmBatches {
    /// Batches of `images` (`image_len` values each) noised on the schedule `betas`.
    pub fn new(
        images: Vec<f32>,
        image_len: usize,
        betas: &[f64],
        seed: u64,
    ) -> Result<DdpmBatches> {
        if image_len == 0 || images.is_empty() || !images.len().is_multiple_of(image_len) {
            return Err(Error::Invalid(format!(
                "{} values do not make whole images of {image_len}",
                images.len()
            )));
        }
        if betas.is_empty() {
            return Err(Error::Invalid("a noise schedule of no steps".to_string()));
        }
        let mut product = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                product *= 1.0 - b;
                product
            })
            .collect();
        Ok(DdpmBatches {
            images,
            image_len,
            alphas_cumprod,
            rng: Rng::new(seed),
        })
    }

    pub fn next_batch(&mut self, batch: usize) -> DdpmBatch {
        let count = (self.images.len() / self.image_len) as u64;
        let steps = self.alphas_cumprod.len() as u64;
        let picks: Vec<usize> = (0..batch)
            .map(|_| (self.rng.next_u64() % count) as usize)
            .collect();
        let ts: Vec<usize> = (0..batch)
            .map(|_| (self.rng.next_u64() % steps) as usize)
            .collect();
        let noise = train::normal(&mut self.rng, batch * self.image_len, 1.0);
        let x0: Vec<f32> = picks
            .iter()
            .flat_map(|&i| {
                self.images[i * self.image_len..][..self.image_len]
                    .iter()
                    .copied()
            })
            .collect();
        DdpmBatch {
            x_t: add_noise(&self.alphas_cumprod, &x0, &noise, &ts),
            timesteps: ts.iter().map(|&t| t as f32).collect(),
            noise,
        }
    }

    /// Skips `batches` batches of `batch` (resuming a run).
    pub fn skip(&mut self, batches: u64, batch: usize) {
        for _ in 0..batches {
            self.next_batch(batch);
        }
    }
}

/// Adds the UNet's operations to a tape, tracking its parameters.
struct Builder<'a> {
    t: Tape,
    params: &'a [(String, Tensor)],
    ids: Vec<Id>,
}

impl Builder<'_> {
    fn p(&self, tensor: &Tensor) -> Result<Id> {
        self.params
            .iter()
            .position(|(_, t)| t.same_as(tensor))
            .map(|i| self.ids[i])
            .ok_or_else(|| Error::Invalid("a UNet tensor is not among its parameters".to_string()))
    }

    fn conv(&mut self, x: Id, conv: &Conv) -> Result<Id> {
        let w = self.p(&conv.weight)?;
        let b = conv.bias.as_ref().map(|b| self.p(b)).transpose()?;
        self.t.conv2d(x, w, b, conv.options)
    }

    fn group_norm(&mut self, x: Id, norm: &Norm, silu: bool) -> Result<Id> {
        let (w, b) = (self.p(&norm.weight)?, self.p(&norm.bias)?);
        self.t.group_norm(x, w, b, norm.groups, norm.eps, silu)
    }

    fn linear(&mut self, x: Id, linear: &Linear) -> Result<Id> {
        let w = self.p(&linear.weight)?;
        let b = linear.bias.as_ref().map(|b| self.p(b)).transpose()?;
        self.t.linear(x, w, b)
    }

    fn scaled(&mut self, x: Id, scale: f32) -> Result<Id> {
        if scale == 1.0 {
            Ok(x)
        } else {
            self.t.scale(x, scale)
        }
    }

    fn resnet(&mut self, x: Id, emb: Id, r: &ResBlock) -> Result<Id> {
        let a = self.group_norm(x, &r.norm1, true)?;
        let a = self.conv(a, &r.conv1)?;
        let time = self.linear(emb, &r.time)?;
        let mixed = self.t.channel_add(a, time)?;
        let a = self.group_norm(mixed, &r.norm2, true)?;
        let a = self.conv(a, &r.conv2)?;
        let shortcut = match &r.shortcut {
            Some(conv) => self.conv(x, conv)?,
            None => x,
        };
        let sum = self.t.add(shortcut, a)?;
        self.scaled(sum, r.out_scale)
    }

    fn attention(&mut self, x: Id, a: &AttnBlock) -> Result<Id> {
        let [n, ch, h, w] = <[usize; 4]>::try_from(self.t.shape(x))
            .map_err(|_| Error::shape("unet", "expected an NCHW tensor"))?;
        let hw = h * w;
        let (heads, head_dim) = (a.heads, ch / a.heads);
        let normed = match &a.norm {
            Some(norm) => self.group_norm(x, norm, false)?,
            None => x,
        };
        let planar = self.t.reshape(normed, &[n, ch, hw])?;
        let tokens = self.t.transpose(planar)?;
        let rows = self.t.reshape(tokens, &[n * hw, ch])?;
        let heads_shape = [n, hw, heads, head_dim];
        let q = self.linear(rows, &a.q)?;
        let k = self.linear(rows, &a.k)?;
        let v = self.linear(rows, &a.v)?;
        let q = self.t.reshape(q, &heads_shape)?;
        let k = self.t.reshape(k, &heads_shape)?;
        let v = self.t.reshape(v, &heads_shape)?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let attended = self.t.attention(q, k, v, scale, false)?;
        let attended = self.t.reshape(attended, &[n * hw, ch])?;
        let projected = self.linear(attended, &a.out)?;
        let projected = self.t.reshape(projected, &[n, hw, ch])?;
        let planar_out = self.t.transpose(projected)?;
        let planar_out = self.t.reshape(planar_out, &[n, ch, h, w])?;
        let sum = self.t.add(planar_out, x)?;
        self.scaled(sum, a.out_scale)
    }
}

/// The forward pass of one batch, the mean squared error against the noise, and the
/// backward pass.
fn build_plan(
    gpu: &Gpu,
    unet: &UNet,
    params: &[Parameter],
    inputs: &Inputs,
    batch: usize,
) -> Result<Plan> {
    let c = unet.config();
    let w = &unet.weights;
    let mut t = Tape::new(gpu, DType::F32);
    let ids = params.iter().map(|p| t.parameter(&p.value)).collect();
    let mut b = Builder {
        t,
        params: &w.named,
        ids,
    };

    let x = b.t.input(&inputs.sample);
    let ts = b.t.input(&inputs.timesteps);
    let freqs = b.t.input(&unet.freqs);
    let t_config = time_config(c);
    let sinusoid = b.t.constant(
        "timestep embedding",
        &[ts, freqs],
        &[batch, c.block_out_channels[0]],
        move |n| {
            timestep::timestep_embedding(n.gpu, &t_config, n.tensor(0), n.tensor(1), n.tensor(2))
        },
    );
    let e1 = b.linear(sinusoid, &w.time1)?;
    let e1 = b.t.silu(e1)?;
    let emb = b.linear(e1, &w.time2)?;
    let emb = b.t.silu(emb)?;

    let mut h = b.conv(x, &w.conv_in)?;
    let mut skips = vec![h];
    for level in &w.down {
        for (j, resnet) in level.resnets.iter().enumerate() {
            h = b.resnet(h, emb, resnet)?;
            if level.kind == BlockKind::Attention {
                h = b.attention(h, &level.attentions[j])?;
            }
            skips.push(h);
        }
        if let Some(down) = &level.resample {
            h = b.conv(h, down)?;
            skips.push(h);
        }
    }
    if let Some(mid) = &w.mid {
        h = b.resnet(h, emb, &mid.first)?;
        if let Some(attn) = &mid.attention {
            h = b.attention(h, attn)?;
        }
        h = b.resnet(h, emb, &mid.second)?;
    }
    for level in &w.up {
        for (j, resnet) in level.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip per up ResNet block");
            h = b.t.concat_channels(h, skip)?;
            h = b.resnet(h, emb, resnet)?;
            if level.kind == BlockKind::Attention {
                h = b.attention(h, &level.attentions[j])?;
            }
        }
        if let Some(up) = &level.resample {
            h = b.t.upsample2x(h)?;
            h = b.conv(h, up)?;
        }
    }
    let h = b.group_norm(h, &w.norm_out, true)?;
    let pred = b.conv(h, &w.conv_out)?;
    let (target, loss) = (b.t.input(&inputs.target), b.t.input(&inputs.loss));
    let elements = inputs.sample.len();
    b.t.mse(pred, target, loss, 1.0 / elements as f32)?;
    let mut t = b.t;
    t.backward()?;
    let grads: Vec<&Tensor> = params.iter().map(|p| &p.grad).collect();
    t.compile(&grads)
}
