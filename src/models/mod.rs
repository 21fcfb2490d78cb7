//! The model zoo: one registry, named as torchvision/timm name the models; one file per family.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use tch::Tensor;

use crate::error::{did_you_mean, Error, Result};
use crate::nn::{Module, Path, VarStore};

pub mod alexnet;
pub mod attention;
pub mod bninception;
pub mod cbam;
pub mod channel_boost;
pub mod cmpe_se;
pub mod densenet;
pub mod diagram;
pub mod embedding;
pub mod googlenet;
pub mod highway;
pub mod inception;
pub mod inception4;
pub mod lenet;
pub mod lstm;
pub mod mlp;
pub mod mobilenet;
pub mod polynet;
pub mod preprocess;
pub mod pyramidnet;
pub mod resnet;
pub mod senet;
pub mod vgg;
pub mod wrn;
pub mod xception;
pub mod zfnet;

/// `impl Module` for models whose forward pass is their head over their features (timm's `forward`): the zoo's
/// one `forward_t`.
macro_rules! forward_head_of_features {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::nn::Module for $t {
            fn forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor {
                use $crate::models::Model;
                self.forward_head(&self.forward_features(xs, train), train)
            }
        }
    )+};
}
pub(crate) use forward_head_of_features;

/// `Model::reset_classifier` and `Model::num_outputs` of a model whose classifier is the
/// [`crate::nn::ClassifierHead`] in field `$head`.
macro_rules! classifier_head_methods {
    ($head:ident) => {
        fn reset_classifier(&mut self, num_outputs: i64) {
            self.$head.reset(num_outputs)
        }
        fn num_outputs(&self) -> i64 {
            self.$head.num_outputs()
        }
    };
}
pub(crate) use classifier_head_methods;

/// Every classifier has this surface (timm's): features, head, and a replaceable classifier.
pub trait Model: Module {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor;
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor;
    /// Replaces the classifier with a freshly initialised one of `num_outputs` outputs, keeping its name.
    fn reset_classifier(&mut self, num_outputs: i64);
    fn num_outputs(&self) -> i64;
    /// The training-mode forward pass of a model with auxiliary classifiers (GoogLeNet's `aux1`/`aux2`, Inception
    /// v3's `AuxLogits`): the main logits and each auxiliary head's logits. `None` (the default) for models
    /// without them. The trainer uses it when it returns `Some`, adding `FitConfig::aux_loss_weight` (0.3, the
    /// GoogLeNet paper's discount) × each auxiliary loss to the main loss; `forward_t` gives the main logits only.
    fn aux_outputs_t(&self, _xs: &Tensor) -> Option<(Tensor, Vec<Tensor>)> {
        None
    }
    /// `Some(n)` for models of integer inputs (embeddings): indices in `0..n` are valid at every input position
    /// (what a test or a summary feeds them); `None` (the default) for real-valued inputs.
    fn index_inputs(&self) -> Option<i64> {
        None
    }
    /// Checks a whole input tensor before a pass over it (the trainer calls it on each dataset it fits or
    /// evaluates), so that a bad value, such as an index past an embedding table, is one clear error up front.
    fn check_input(&self, _xs: &Tensor) -> Result<()> {
        Ok(())
    }
    /// Keras' `reset_states`: a stateful recurrent model forgets the state it carries between batches.
    fn reset_states(&self) {}
    /// The classifier's name prefix where it depends on the model's options (a channel-boosted model's learner);
    /// `None` (the default): the registry entry's `classifier`.
    fn classifier(&self) -> Option<String> {
        None
    }
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
        crate::util::option(&self.options, key, default, |v| {
            Error::config(format!("model option {key}={v} does not parse"))
        })
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
    v.extend(highway::entries());
    v.extend(lenet::entries());
    v.extend(alexnet::entries());
    v.extend(zfnet::entries());
    v.extend(vgg::entries());
    v.extend(resnet::entries());
    v.extend(wrn::entries());
    v.extend(senet::entries());
    v.extend(cbam::entries());
    v.extend(attention::entries());
    v.extend(cmpe_se::entries());
    v.extend(googlenet::entries());
    v.extend(inception::entries());
    v.extend(inception4::entries());
    v.extend(bninception::entries());
    v.extend(polynet::entries());
    v.extend(densenet::entries());
    v.extend(mobilenet::entries());
    v.extend(xception::entries());
    v.extend(pyramidnet::entries());
    v.extend(channel_boost::entries());
    v.extend(lstm::entries());
    v.extend(embedding::entries());
    v
}

/// The survey's categories of CNN architectures (Khan et al. 2020, "A survey of the recent architectures of deep
/// convolutional neural networks", the seed's list of CNN types), in its order, then the rest of the zoo.
pub const CATEGORIES: &[&str] = &[
    "spatial exploitation",
    "depth",
    "multi-path",
    "width",
    "feature-map (channel) exploitation",
    "channel boosting",
    "attention",
    "depthwise separable (efficient)",
    "not convolutional: MLPs, recurrent, embeddings, diagrams",
];

/// The survey category a registered model belongs to (one of [`CATEGORIES`]). The survey puts Highway Networks
/// and ResNets under both depth and multi-path; here they are under depth, DenseNet and PolyNet under
/// multi-path, and Wide ResNets, ResNeXt, PyramidNet and Xception under width.
pub fn category(e: &ModelEntry) -> &'static str {
    let width = e.name.starts_with("wide_resnet") || e.name.starts_with("resnext");
    let i = match e.family {
        "lenet" | "alexnet" | "zfnet" | "vgg" | "googlenet" => 0,
        "resnet" if width => 3,
        "highway" | "resnet" | "inception" | "inception_resnet" => 1,
        "densenet" | "polynet" => 2,
        "wrn" | "pyramidnet" | "xception" => 3,
        "senet" | "cmpe_se" => 4,
        "channel_boost" => 5,
        "attention" | "cbam" => 6,
        "mobilenet" => 7,
        _ => 8,
    };
    CATEGORIES[i]
}

/// The registry, checked once: a duplicate name is an error.
pub fn registry() -> Result<&'static [ModelEntry]> {
    static REG: OnceLock<std::result::Result<Vec<ModelEntry>, String>> = OnceLock::new();
    let reg = REG.get_or_init(|| {
        let entries = all_entries();
        check_unique_names(entries.iter().map(|e| e.name)).map_err(|e| e.to_string())?;
        Ok(entries)
    });
    reg.as_deref().map_err(|e| Error::invalid(e.clone()))
}

/// The registry's rule: a name registered twice is an error naming it.
pub fn check_unique_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(Error::invalid(format!("model '{name}' is registered twice")));
        }
    }
    Ok(())
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
    build_with(spec, store, num_outputs, input_shape, &[])
}

/// As [`build`], with model options given apart from the spec (`--booster` is `channel_boost`'s option
/// `booster`). An option naming a part's weights file ([`weight_parts`], such as `booster_weights`) is refused:
/// a model's build reads no file; `crate::train::transfer::build_model` reads and loads them.
pub fn build_with(
    spec: &str,
    store: &VarStore,
    num_outputs: i64,
    input_shape: &[i64],
    extra: &[(&str, &str)],
) -> Result<Box<dyn Model>> {
    if diagram::is_diagram(spec) && extra.is_empty() {
        return diagram::build(spec, store, num_outputs, input_shape);
    }
    let (entry, config) = model_config(spec, num_outputs, input_shape, extra)?;
    build_entry(entry, store, &config)
}

/// A part of a model whose weights may come from a file (a channel-boosted model's booster): the model's build
/// receives its class count as an option and reads no file; the library reads the file, fills the class count
/// from its classifier when not given, and loads it under `prefix` after the build, strictly (every tensor of the
/// part, nothing else, the same shapes; see `crate::train::transfer::build_model`).
#[derive(Debug)]
pub struct WeightPart {
    /// The model option naming the weights file (`booster_weights`).
    pub option: &'static str,
    /// The part's name prefix in the model's state dict (`booster`), which is also how errors name it.
    pub prefix: &'static str,
    /// The option naming the registered model the part is (`booster`), and its default (`resnet20`).
    pub model_option: &'static str,
    pub default_model: &'static str,
    /// The option of the part's class count (`booster_classes`).
    pub classes_option: &'static str,
}

/// The parts of `entry` whose weights the library loads from files (none for most models).
pub fn weight_parts(entry: &ModelEntry) -> &'static [WeightPart] {
    match entry.family {
        "channel_boost" => channel_boost::PARTS,
        _ => &[],
    }
}

/// The registry entry and the checked [`ModelConfig`] of a spec (`mlp:hidden=64x64`) with options given apart
/// (`extra`): unknown or repeated options and fewer than one output are errors.
pub fn model_config(
    spec: &str,
    num_outputs: i64,
    input_shape: &[i64],
    extra: &[(&str, &str)],
) -> Result<(&'static ModelEntry, ModelConfig)> {
    let mut spec = crate::util::Spec::parse(spec, "model")?;
    let entry = find(&spec.source)?;
    for (k, v) in extra {
        if spec.options.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::config(format!("model option {k} is given twice (in the model spec and as a flag)")));
        }
    }
    let config = ModelConfig { num_outputs, input_shape: input_shape.to_vec(), options: spec.options };
    config.check_options(entry.name, entry.options)?;
    if num_outputs < 1 {
        return Err(Error::config(format!("model '{}' needs at least one output, got {num_outputs}", entry.name)));
    }
    Ok((entry, config))
}

/// Builds `entry` for `config` into `store`. A model's build reads no file: an option naming a part's weights
/// file ([`weight_parts`]) is refused here, as nothing would load it.
pub fn build_entry(entry: &ModelEntry, store: &VarStore, config: &ModelConfig) -> Result<Box<dyn Model>> {
    if let Some(part) = weight_parts(entry).iter().find(|p| config.options.contains_key(p.option)) {
        return Err(Error::config(format!(
            "model option {}: the {} weights file is read by the library, not by the model's build (build with \
             tchzoo::train::transfer::build_model)",
            part.option, part.prefix
        )));
    }
    (entry.build)(&store.root(), config)
}

/// The channels C of a model's `[C, H, W]` image input of at least `min`×`min` (`why` explains the minimum in
/// the error), or one clear error naming the model.
pub(crate) fn image_channels(c: &ModelConfig, name: &str, min: i64, why: &str) -> Result<i64> {
    match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && *h >= min.max(1) && *w >= min.max(1) => Ok(*ch),
        shape if min <= 1 => Err(Error::config(format!("{name} takes images [C, H, W], got {shape:?}"))),
        shape => {
            Err(Error::config(format!("{name} takes images [C, H, W] of at least {min}×{min}{why}, got {shape:?}")))
        }
    }
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
    let _ =
        out.map_err(|e| Error::invalid(format!("the model does not take inputs of shape {input_shape:?}: {e:#}")))?;
    Ok(rows)
}
