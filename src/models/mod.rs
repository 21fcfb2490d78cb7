//! The model zoo: one registry, named as torchvision/timm name the models; one file per family.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use tch::Tensor;

use crate::error::{did_you_mean, Error, Result};
use crate::nn::{Module, Path, VarStore};

pub mod alexnet;
pub mod diagram;
pub mod lenet;
pub mod mlp;
pub mod resnet;
pub mod vgg;

/// Every classifier has this surface (timm's): features, head, and a replaceable classifier.
pub trait Model: Module {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor;
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor;
    /// Replaces the classifier with a freshly initialised one of `num_outputs` outputs, keeping its name.
    fn reset_classifier(&mut self, num_outputs: i64);
    fn num_outputs(&self) -> i64;
}

/// What a model is built for: output units, the shape of one input sample, and model options
/// (`mlp:hidden=64x64,activation=tanh`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub num_outputs: i64,
    pub input_shape: Vec<i64>,
    pub options: BTreeMap<String, String>,
}

impl ModelConfig {
    pub fn new(num_outputs: i64, input_shape: &[i64]) -> Self {
        ModelConfig { num_outputs, input_shape: input_shape.to_vec(), options: BTreeMap::new() }
    }
    /// An option parsed as `T`, or `default`.
    pub fn opt<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.options.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Error::config(format!("model option {key}={v} does not parse"))),
        }
    }
    /// Rejects options the model does not know, naming the valid ones.
    pub fn check_options(&self, model: &str, known: &[&str]) -> Result<()> {
        for k in self.options.keys() {
            if !known.contains(&k.as_str()) {
                return Err(Error::config(format!(
                    "model '{model}' has no option '{k}'{}; its options: {}",
                    did_you_mean(k, known.iter().copied()),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            }
        }
        Ok(())
    }
}

pub type BuildFn = fn(&Path, &ModelConfig) -> Result<Box<dyn Model>>;

/// A registered architecture.
pub struct ModelEntry {
    pub name: &'static str,
    pub family: &'static str,
    pub description: &'static str,
    /// The shape of one input sample the model is made for (C, H, W or features).
    pub default_input: &'static [i64],
    /// Classes the reference model has by default (ImageNet's 1,000, or 10).
    pub default_classes: i64,
    /// Names of the first layer and of the classifier, as in timm's default_cfg.
    pub first_layer: &'static str,
    pub classifier: &'static str,
    /// The model options it accepts.
    pub options: &'static [&'static str],
    pub build: BuildFn,
}

impl std::fmt::Debug for ModelEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEntry").field("name", &self.name).field("family", &self.family).finish()
    }
}

fn all_entries() -> Vec<ModelEntry> {
    let mut v = vec![];
    v.extend(mlp::entries());
    v.extend(lenet::entries());
    v.extend(alexnet::entries());
    v.extend(vgg::entries());
    v.extend(resnet::entries());
    v
}

/// The registry, checked once: a duplicate name is an error.
pub fn registry() -> Result<&'static [ModelEntry]> {
    static REG: OnceLock<std::result::Result<Vec<ModelEntry>, String>> = OnceLock::new();
    let reg = REG.get_or_init(|| {
        let entries = all_entries();
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            if !seen.insert(e.name) {
                return Err(format!("model '{}' is registered twice", e.name));
            }
        }
        Ok(entries)
    });
    reg.as_deref().map_err(|e| Error::invalid(e.clone()))
}

pub fn find(name: &str) -> Result<&'static ModelEntry> {
    if diagram::is_diagram(name) {
        return diagram::entry(name);
    }
    let reg = registry()?;
    reg.iter().find(|e| e.name == name).ok_or_else(|| Error::UnknownModel {
        name: name.to_string(),
        hint: did_you_mean(name, reg.iter().map(|e| e.name)),
    })
}

/// Builds a model from a spec (`lenet5`, `mlp:hidden=64x64`) into `store`.
/// A spec containing `=>` is a text diagram (`CONV(8,3) => RELU => FC(10)`, see [`diagram`]).
pub fn build(spec: &str, store: &VarStore, num_outputs: i64, input_shape: &[i64]) -> Result<Box<dyn Model>> {
    if diagram::is_diagram(spec) {
        return diagram::build(spec, store, num_outputs, input_shape);
    }
    let spec = crate::util::Spec::parse(spec, "model")?;
    let entry = find(&spec.source)?;
    let config = ModelConfig { num_outputs, input_shape: input_shape.to_vec(), options: spec.options };
    config.check_options(entry.name, entry.options)?;
    if num_outputs < 1 {
        return Err(Error::config(format!("model '{}' needs at least one output, got {num_outputs}", entry.name)));
    }
    (entry.build)(&store.root(), &config)
}

/// One row of `tchzoo summary`.
pub use crate::nn::trace::LayerTrace;

/// Runs one forward pass in eval mode on zeros of `[1, input_shape…]` and returns each leaf layer's output shape.
pub fn trace(model: &dyn Model, store: &VarStore, input_shape: &[i64]) -> Result<Vec<LayerTrace>> {
    let mut shape = vec![1];
    shape.extend_from_slice(input_shape);
    let xs = Tensor::zeros(shape.as_slice(), (tch::Kind::Float, store.device()));
    let (out, rows) =
        crate::nn::trace::capture(|| tch::no_grad(|| crate::util::catch_torch(|| model.forward_t(&xs, false))));
    let _ = out.map_err(|e| Error::invalid(format!("the model does not take inputs of shape {input_shape:?}: {e}")))?;
    Ok(rows)
}
