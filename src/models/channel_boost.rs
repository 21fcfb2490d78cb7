//! Channel-Boosted CNN (Khan, Sohail and Ali 2018, "A New Channel Boosted Convolutional Neural Network using
//! Transfer Learning", arXiv 1804.08528): the input's channels are "boosted" with auxiliary channels that a
//! pretrained network, frozen (transfer learning), computes from the same input; a trainable CNN learns on the
//! concatenation. The paper's boosting networks are generative (autoencoders) and it publishes no code; here any
//! registered image model can be the booster (`booster=resnet18`, weights from `booster_weights=W.pt`), and its
//! feature maps are the auxiliary channels.
//!
//! `channel_boost` (options `booster` [resnet20], `booster_weights`, `booster_classes`, `boost_channels` [8],
//! `learner` [resnet20]) registers, in this order:
//! - `booster.*`: the booster, built for the input's [C, H, W] and `booster_classes` outputs (read from the
//!   weights' classifier when they are given). Its parameters never train (`requires_grad` off, so the optimizer
//!   skips them and its BatchNorms run in eval mode) and it always runs in eval mode, without autograd.
//! - `boost`: a 1×1 convolution (with bias) from the booster's feature channels to `boost_channels`, then bilinear
//!   resizing (align_corners=false) to the input's H×W. (A 1×1 convolution commutes with bilinear resizing, whose
//!   weights sum to one, so reducing first is the cheap order.)
//! - `learner.*`: any registered image model built for C + `boost_channels` input channels; its classifier is
//!   the model's (`learner.fc` for a ResNet).
//!
//! The Python definition is `ChannelBoostedCNN` in scripts/reference_models.py (tests/transfer.rs checks logits
//! and one training step against it). The state dict holds the booster too, so a checkpoint is self-contained.
use std::path::Path as FsPath;

use tch::Tensor;

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{Conv2d, ConvConfig, Module, Path};

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "channel_boost",
        family: "channel_boost",
        description: "Channel-Boosted CNN (Khan et al. 2018): a frozen pretrained booster's feature maps as extra \
                      input channels of a trainable learner CNN (--booster, --booster-weights)",
        default_input: &[3, 32, 32],
        default_classes: 10,
        first_layer: "boost",
        classifier: "learner.fc",
        options: &["booster", "booster_weights", "booster_classes", "boost_channels", "learner"],
        build,
    }]
}

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
    let weights = c.options.get("booster_weights").map(FsPath::new);
    let tensors = weights.map(crate::checkpoint::read_state_dict).transpose()?;
    let booster_classes: i64 = match (c.options.get("booster_classes"), &tensors) {
        (Some(_), _) => c.opt("booster_classes", 0)?,
        (None, Some(t)) => {
            let key = format!("{}.weight", booster_entry.classifier);
            let found = t.iter().find(|(k, _)| *k == key).map(|(_, v)| v.size()[0]);
            found.ok_or_else(|| Error::Checkpoint {
                path: weights.map(|w| w.display().to_string()).unwrap_or_default(),
                msg: format!(
                    "has no {key}, the classifier of booster {booster_name}: is it a {booster_name} state dict? (give \
                     booster_classes=N if its classifier is named otherwise)"
                ),
            })?
        }
        (None, None) => booster_entry.default_classes,
    };
    let booster_config = ModelConfig::new(booster_classes, &c.input_shape);
    let bp = p.sub("booster");
    let booster = (booster_entry.build)(&bp, &booster_config)
        .map_err(|e| Error::config(format!("channel_boost: booster {booster_name}: {e}")))?;
    let store = p.store();
    if let (Some(path), Some(tensors)) = (weights, tensors) {
        let prefixed: Vec<(String, Tensor)> =
            tensors.into_iter().map(|(k, t)| (format!("{}.{k}", bp.name()), t)).collect();
        let report = store.load_state_dict(&prefixed, false, &path.display().to_string())?;
        let missing: Vec<&String> =
            report.missing.iter().filter(|k| k.starts_with(&format!("{}.", bp.name()))).collect();
        if !missing.is_empty() || !report.unexpected.is_empty() || !report.mismatched.is_empty() {
            let mut parts = vec![];
            if !missing.is_empty() {
                parts.push(format!("{} booster tensors missing (first: {})", missing.len(), missing[0]));
            }
            if !report.unexpected.is_empty() {
                parts.push(format!("unexpected keys such as {}", report.unexpected[0]));
            }
            if !report.mismatched.is_empty() {
                parts.push(format!("shape mismatches such as {}", report.mismatched[0]));
            }
            return Err(Error::Checkpoint {
                path: path.display().to_string(),
                msg: format!("is not a state dict of booster {booster_name}: {}", parts.join("; ")),
            });
        }
    }
    let prefix = format!("{}.", bp.name());
    for (name, t) in store.named_parameters() {
        if name.starts_with(&prefix) {
            let _ = t.set_requires_grad(false);
        }
    }
    // The booster's feature channels, from one pass on a zero image (no autograd, eval mode).
    let probe = Tensor::zeros([1, channels, h, w], (tch::Kind::Float, p.device()));
    let features = crate::util::catch_torch(|| tch::no_grad(|| booster.forward_features(&probe, false)))
        .map_err(|e| Error::config(format!("channel_boost: booster {booster_name} on {:?}: {e}", c.input_shape)))?;
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
        .map_err(|e| Error::config(format!("channel_boost: learner {learner_name}: {e}")))?;
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
