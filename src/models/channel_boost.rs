//! Channel-Boosted CNN (Khan, Sohail and Ali 2018, "A New Channel Boosted Convolutional Neural Network using
//! Transfer Learning", arXiv 1804.08528): the input's channels are "boosted" with auxiliary channels that a
//! pretrained network, frozen (transfer learning), computes from the same input; a trainable CNN learns on the
//! concatenation. The paper's boosting networks are generative (autoencoders) and it publishes no code; here any
//! registered image model can be the booster (`booster=resnet18`, weights from `booster_weights=W.pt`), and its
//! feature maps are the auxiliary channels.
//!
//! `channel_boost` (options `booster` [resnet20], `booster_weights`, `booster_classes`, `boost_channels` [8],
//! `learner` [resnet20]) registers, in this order:
//! - `booster.*`: the booster, built for the input's [C, H, W] and `booster_classes` outputs. Its parameters never
//!   train (`requires_grad` off, so the optimizer skips them and its BatchNorms run in eval mode) and it always
//!   runs in eval mode, without autograd. The build reads no file: `booster_weights` is a [`PARTS`] entry, which
//!   the library reads (filling `booster_classes` from the file's classifier when not given) and loads strictly
//!   under `booster.` after the build, as it loads `--pretrained` (`crate::train::transfer::build_model`).
//! - `boost`: a 1×1 convolution (with bias) from the booster's feature channels to `boost_channels`, then bilinear
//!   resizing (align_corners=false) to the input's H×W. (A 1×1 convolution commutes with bilinear resizing, whose
//!   weights sum to one, so reducing first is the cheap order.)
//! - `learner.*`: any registered image model built for C + `boost_channels` input channels; its classifier is
//!   the model's (`learner.fc` for a ResNet).
//!
//! The Python definition is `ChannelBoostedCNN` in scripts/reference_models.py (tests/transfer.rs checks logits
//! and one training step against it). The state dict holds the booster too, so a checkpoint is self-contained.
use tch::Tensor;

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry, WeightPart};
use crate::error::{Error, Result};
use crate::nn::{Conv2d, ConvConfig, Module, Path};

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "channel_boost",
        family: "channel_boost",
        description: "Channel-Boosted CNN (Khan et al. 2018): a frozen pretrained booster's feature maps as extra \
                      input channels of a trainable learner CNN (⟨booster⟩, ⟨booster_weights⟩)",
        default_input: &[3, 32, 32],
        default_classes: 10,
        first_layer: "boost",
        classifier: "learner.fc",
        options: &["booster", "booster_weights", "booster_classes", "boost_channels", "learner"],
        build,
    }]
}

/// The booster's weights file (option `booster_weights`), loaded by the library under `booster.`.
pub const PARTS: &[WeightPart] = &[WeightPart {
    option: "booster_weights",
    prefix: "booster",
    model_option: "booster",
    default_model: "resnet20",
    classes_option: "booster_classes",
}];

/// The options that rebuild a trained channel-boosted model from its own checkpoint (`evaluate`/`predict` of a
/// run): the booster's name and its class count, read from the checkpoint's `booster.<classifier>.weight` (the
/// booster's weights are in the checkpoint, so its original weights file is not needed).
pub fn rebuild_options(booster: &str, checkpoint: &[(String, Tensor)]) -> Result<Vec<(&'static str, String)>> {
    let entry = super::find(booster)?;
    let key = format!("booster.{}.weight", entry.classifier);
    let classes = checkpoint.iter().find(|(k, _)| *k == key).map(|(_, t)| t.size()[0]);
    let mut options = vec![("booster", booster.to_string())];
    if let Some(n) = classes {
        options.push(("booster_classes", n.to_string()));
    }
    Ok(options)
}

#[derive(Debug)]
pub struct ChannelBoost {
    booster: Box<dyn Model>,
    boost: Conv2d,
    learner: Box<dyn Model>,
    classifier: String,
}

fn build(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let (channels, h, w) = match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && *h > 0 && *w > 0 => (*ch, *h, *w),
        shape => return Err(Error::config(format!("channel_boost takes images [C, H, W], got {shape:?}"))),
    };
    let booster_name = c.options.get("booster").map(String::as_str).unwrap_or("resnet20");
    let learner_name = c.options.get("learner").map(String::as_str).unwrap_or("resnet20");
    let boost_channels: i64 = c.opt("boost_channels", 8)?;
    if boost_channels < 1 {
        return Err(Error::config("channel_boost: boost_channels must be at least 1"));
    }
    for name in [booster_name, learner_name] {
        if name == "channel_boost" {
            return Err(Error::config("channel_boost cannot boost with or learn on another channel_boost"));
        }
    }
    let booster_entry = super::find(booster_name)?;
    let learner_entry = super::find(learner_name)?;
    let booster_classes: i64 = c.opt("booster_classes", booster_entry.default_classes)?;
    let booster_config = ModelConfig::new(booster_classes, &c.input_shape);
    let bp = p.sub("booster");
    let booster = (booster_entry.build)(&bp, &booster_config)
        .map_err(|e| Error::config(format!("channel_boost: booster {booster_name}: {e:#}")))?;
    let store = p.store();
    let prefix = format!("{}.", bp.name());
    for (name, t) in store.named_parameters() {
        if name.starts_with(&prefix) {
            let _ = t.set_requires_grad(false);
        }
    }
    // The booster's feature channels, from one pass on a zero image (no autograd, eval mode).
    let probe = Tensor::zeros([1, channels, h, w], (tch::Kind::Float, p.device()));
    let features = crate::util::catch_torch(|| tch::no_grad(|| booster.forward_features(&probe, false)))
        .map_err(|e| Error::config(format!("channel_boost: booster {booster_name} on {:?}: {e:#}", c.input_shape)))?;
    if features.dim() != 4 {
        return Err(Error::config(format!(
            "channel_boost: booster {booster_name} gives features of shape {:?}; it needs feature maps [N, C, H, W] \
             (a convolutional model)",
            features.size()
        )));
    }
    let boost = Conv2d::new(&p.sub("boost"), features.size()[1], boost_channels, 1, ConvConfig::default());
    let learner_config = ModelConfig::new(c.num_outputs, &[channels + boost_channels, h, w]);
    let lp = p.sub("learner");
    let learner = (learner_entry.build)(&lp, &learner_config)
        .map_err(|e| Error::config(format!("channel_boost: learner {learner_name}: {e:#}")))?;
    let classifier = format!("{}.{}", lp.name(), learner_entry.classifier);
    Ok(Box::new(ChannelBoost { booster, boost, learner, classifier }))
}

impl ChannelBoost {
    /// The input with the boosted channels appended: [N, C + boost_channels, H, W].
    fn boosted(&self, xs: &Tensor, train: bool) -> Tensor {
        let size = xs.size();
        let aux = tch::no_grad(|| self.booster.forward_features(xs, false));
        let aux = self.boost.forward_t(&aux, train).upsample_bilinear2d([size[2], size[3]], false, None, None);
        Tensor::cat(&[xs, &aux], 1)
    }
}

forward_head_of_features!(ChannelBoost);

impl Model for ChannelBoost {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.learner.forward_features(&self.boosted(xs, train), train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.learner.forward_head(features, train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        self.learner.reset_classifier(num_outputs);
    }
    fn num_outputs(&self) -> i64 {
        self.learner.num_outputs()
    }
    fn classifier(&self) -> Option<String> {
        Some(self.classifier.clone())
    }
}
