//! Layers with PyTorch's parameter names, shapes, registration order and default initialisation.
use tch::{Kind, Tensor};

use super::{trace, Activation, Module, Path};

/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear and Conv (kaiming_uniform with a=sqrt(5)).
fn uniform_fan_in(shape: &[i64], fan_in: i64) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Tensor::empty(shape, (Kind::Float, tch::Device::Cpu)).uniform_(-bound, bound)
}

#[derive(Debug)]
pub struct Linear {
    name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: &Path, c_in: i64, c_out: i64) -> Self {
        Self::with_bias(p, c_in, c_out, true)
    }
    pub fn with_bias(p: &Path, c_in: i64, c_out: i64, bias: bool) -> Self {
        let weight = p.param("weight", uniform_fan_in(&[c_out, c_in], c_in));
        let bias = bias.then(|| p.param("bias", uniform_fan_in(&[c_out], c_in)));
        Linear { name: p.name().to_string(), weight, bias }
    }
    fn n_params(&self) -> i64 {
        self.weight.numel() as i64 + self.bias.as_ref().map_or(0, |b| b.numel() as i64)
    }
}

impl Module for Linear {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = xs.linear(&self.weight, self.bias.as_ref());
        trace::record(&self.name, "Linear", &ys, self.n_params());
        ys
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ConvConfig {
    pub stride: i64,
    pub padding: i64,
    pub dilation: i64,
    pub groups: i64,
    pub bias: bool,
}

impl Default for ConvConfig {
    fn default() -> Self {
        ConvConfig { stride: 1, padding: 0, dilation: 1, groups: 1, bias: true }
    }
}

#[derive(Debug)]
pub struct Conv2d {
    name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub config: ConvConfig,
}

impl Conv2d {
    pub fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, config: ConvConfig) -> Self {
        let fan_in = c_in / config.groups * kernel * kernel;
        let weight = p.param("weight", uniform_fan_in(&[c_out, c_in / config.groups, kernel, kernel], fan_in));
        let bias = config.bias.then(|| p.param("bias", uniform_fan_in(&[c_out], fan_in)));
        Conv2d { name: p.name().to_string(), weight, bias, config }
    }
}

impl Module for Conv2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let c = &self.config;
        let ys = xs.conv2d(&self.weight, self.bias.as_ref(), [c.stride], [c.padding], [c.dilation], c.groups);
        let n = self.weight.numel() as i64 + self.bias.as_ref().map_or(0, |b| b.numel() as i64);
        trace::record(&self.name, "Conv2d", &ys, n);
        ys
    }
}

/// BatchNorm1d/2d with PyTorch's state: weight, bias, running_mean, running_var, num_batches_tracked.
#[derive(Debug)]
pub struct BatchNorm {
    name: String,
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    pub momentum: f64,
    pub eps: f64,
    dims: usize,
    /// The group whose global batch it normalises over (`--sync-bn`), given by the store it was built in.
    sync: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
}

impl BatchNorm {
    pub fn new(p: &Path, features: i64, dims: usize) -> Self {
        let opts = (Kind::Float, tch::Device::Cpu);
        BatchNorm {
            name: p.name().to_string(),
            weight: p.param("weight", Tensor::ones([features], opts)),
            bias: p.param("bias", Tensor::zeros([features], opts)),
            running_mean: p.buffer("running_mean", Tensor::zeros([features], opts)),
            running_var: p.buffer("running_var", Tensor::ones([features], opts)),
            num_batches_tracked: p.buffer("num_batches_tracked", Tensor::zeros([], (Kind::Int64, tch::Device::Cpu))),
            momentum: 0.1,
            eps: 1e-5,
            dims,
            sync: p.store().sync_bn_group(),
        }
    }
    pub fn new2d(p: &Path, features: i64) -> Self {
        Self::new(p, features, 2)
    }
    pub fn new1d(p: &Path, features: i64) -> Self {
        Self::new(p, features, 1)
    }
}

thread_local! {
    static CUMULATIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every training-mode batch norm at `momentum=None`: the running statistics become the cumulative
/// average of the batches' (factor 1 / num_batches_tracked), as `torch.optim.swa_utils.update_bn` sets them.
pub fn with_cumulative_batch_norm<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CUMULATIVE.with(|c| c.set(false));
        }
    }
    CUMULATIVE.with(|c| c.set(true));
    let _reset = Reset;
    f()
}

impl BatchNorm {
    /// The factor of a training-mode update of the running statistics, after `num_batches_tracked` was counted up:
    /// `momentum`, or under [`with_cumulative_batch_norm`] `1 / num_batches_tracked` (one host read).
    fn update_factor(&self) -> f64 {
        if CUMULATIVE.with(|c| c.get()) {
            1.0 / self.num_batches_tracked.int64_value(&[]) as f64
        } else {
            self.momentum
        }
    }

    /// Training-mode batch norm over the global batch of a distributed run (PyTorch's `SyncBatchNorm`): the
    /// per-channel sum and count, then the sum of squared deviations from the global mean, are summed over the
    /// ranks by a differentiable all-reduce, so the gradient flows through the other ranks' statistics too.
    /// `None` when a collective fails (another rank stopped): the caller falls back to this rank's batch, and the
    /// gradient all-reduce that follows reports the failure.
    fn forward_synced(&self, xs: &Tensor, group: &crate::dist::ProcessGroup) -> Option<Tensor> {
        let c = self.weight.size()[0];
        let dims: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
        let mut shape = vec![1i64; xs.dim()];
        shape[1] = c;
        let count = (xs.numel() as i64 / c) as f64;
        let opts = (xs.kind(), xs.device());
        let local =
            Tensor::cat(&[xs.sum_dim_intlist(dims.as_slice(), false, xs.kind()), Tensor::full([1], count, opts)], 0);
        let global = group.all_reduce_autograd(&local).ok()?;
        let n = global.narrow(0, c, 1);
        let mean = global.narrow(0, 0, c) / &n;
        let centered = xs - mean.view(shape.as_slice());
        let squares =
            group.all_reduce_autograd(&centered.square().sum_dim_intlist(dims.as_slice(), false, xs.kind())).ok()?;
        let var = squares / &n;
        let ys = &centered * (&var + self.eps).rsqrt().view(shape.as_slice()) * self.weight.view(shape.as_slice())
            + self.bias.view(shape.as_slice());
        tch::no_grad(|| {
            // Bessel's correction n / (n − 1) on the device (n = 1: none), no host read per layer and step.
            let n = n.detach();
            let unbiased = &n / (&n - 1.0).clamp_min(1.0);
            let m = self.update_factor();
            let new_mean = &self.running_mean * (1.0 - m) + mean.detach() * m;
            let new_var = &self.running_var * (1.0 - m) + var.detach() * unbiased * m;
            self.running_mean.shallow_clone().copy_(&new_mean);
            self.running_var.shallow_clone().copy_(&new_var);
        });
        Some(ys)
    }
}

impl Module for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // A frozen BatchNorm (weight without requires_grad: `--freeze`, a channel-boosting booster) runs in eval
        // mode, as timm's FrozenBatchNorm2d: running statistics used, not updated.
        let train = train && self.weight.requires_grad();
        if train {
            // In place on the device: no host synchronisation.
            let _ = tch::no_grad(|| self.num_batches_tracked.shallow_clone().g_add_scalar_(1));
        }
        let synced = match &self.sync {
            Some(g) if train && g.world > 1 => self.forward_synced(xs, g),
            _ => None,
        };
        let ys = synced.unwrap_or_else(|| {
            Tensor::batch_norm(
                xs,
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                train,
                if train { self.update_factor() } else { self.momentum },
                self.eps,
                true,
            )
        });
        let kind = if self.dims == 2 { "BatchNorm2d" } else { "BatchNorm1d" };
        trace::record(&self.name, kind, &ys, 2 * self.weight.numel() as i64);
        ys
    }
}

#[derive(Debug)]
pub struct Dropout {
    name: String,
    pub p: f64,
}

impl Dropout {
    pub fn new(p: &Path, prob: f64) -> Self {
        Dropout { name: p.name().to_string(), p: prob }
    }
}

impl Module for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = if train && self.p > 0.0 { xs.dropout(self.p, train) } else { xs.shallow_clone() };
        trace::record(&self.name, "Dropout", &ys, 0);
        ys
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Debug)]
pub struct Pool2d {
    name: String,
    pub kind: PoolKind,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    /// PyTorch's `ceil_mode`: the output size is rounded up, so a last, partial window at the edge is kept.
    pub ceil_mode: bool,
}

impl Pool2d {
    pub fn new(p: &Path, kind: PoolKind, kernel: i64, stride: i64, padding: i64) -> Self {
        Pool2d { name: p.name().to_string(), kind, kernel, stride, padding, ceil_mode: false }
    }
    /// The same pool with `ceil_mode=True` (GoogLeNet's max pools).
    pub fn with_ceil_mode(self) -> Self {
        Pool2d { ceil_mode: true, ..self }
    }
}

impl Module for Pool2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let (k, s, pad) = ([self.kernel, self.kernel], [self.stride, self.stride], [self.padding, self.padding]);
        let (ys, kind) = match self.kind {
            PoolKind::Max => (xs.max_pool2d(k, s, pad, [1, 1], self.ceil_mode), "MaxPool2d"),
            PoolKind::Avg => (xs.avg_pool2d(k, s, pad, self.ceil_mode, true, None), "AvgPool2d"),
        };
        trace::record(&self.name, kind, &ys, 0);
        ys
    }
}

#[derive(Debug)]
pub struct Flatten {
    name: String,
}

impl Flatten {
    pub fn new(p: &Path) -> Self {
        Flatten { name: p.name().to_string() }
    }
}

impl Module for Flatten {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = xs.flatten(1, -1);
        trace::record(&self.name, "Flatten", &ys, 0);
        ys
    }
}

/// An activation as a layer, so it takes an index in a `Sequential` as in PyTorch.
#[derive(Debug)]
pub struct Act {
    name: String,
    pub act: Activation,
}

impl Act {
    pub fn new(p: &Path, act: Activation) -> Self {
        Act { name: p.name().to_string(), act }
    }
}

impl Module for Act {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = self.act.apply(xs);
        trace::record(&self.name, self.act.torch_name(), &ys, 0);
        ys
    }
}

/// `nn.Sequential`: children named by their index, parameterless layers included in the count.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Self {
        Sequential { layers: vec![] }
    }
    /// The index the next layer gets: build it at `path.sub(seq.next_index())`.
    pub fn next_index(&self) -> usize {
        self.layers.len()
    }
    /// Appends a layer that is already boxed (e.g. from `Activation::layer`).
    pub fn push_boxed(&mut self, layer: Box<dyn Module>) {
        self.layers.push(layer);
    }
    pub fn push(&mut self, layer: impl Module + 'static) {
        self.layers.push(Box::new(layer));
    }
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
    /// Replaces the last layer (used by `reset_classifier`).
    pub fn replace_last(&mut self, layer: impl Module + 'static) {
        self.layers.pop();
        self.layers.push(Box::new(layer));
    }
}

impl Module for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for layer in &self.layers {
            ys = layer.forward_t(&ys, train);
        }
        ys
    }
}

/// `nn.AdaptiveAvgPool2d((h, w))`: averages each map down to a fixed size (torchvision's ResNet `(1, 1)`, VGG
/// `(7, 7)`, AlexNet `(6, 6)`), so the classifier's width does not depend on the input size.
#[derive(Debug)]
pub struct AdaptiveAvgPool2d {
    name: String,
    pub output_size: [i64; 2],
}

impl AdaptiveAvgPool2d {
    pub fn new(p: &Path, output_size: [i64; 2]) -> Self {
        AdaptiveAvgPool2d { name: p.name().to_string(), output_size }
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = xs.adaptive_avg_pool2d(self.output_size);
        trace::record(&self.name, "AdaptiveAvgPool2d", &ys, 0);
        ys
    }
}
