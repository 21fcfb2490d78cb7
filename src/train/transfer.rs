//! Transfer learning, as the seed's "Channel Boosted CNN using TL" and timm/Keras users do it:
//! - `--pretrained W.pt` loads a state dict non-strictly; a classifier of another size (other `num_classes`) is
//!   dropped, as timm's `load_pretrained` does, and the report names what was loaded, skipped and left new.
//! - `--freeze features` (every parameter but the classifier's) or `--freeze a,b` (name prefixes) turns
//!   `requires_grad` off: no gradient is computed for those parameters, so the optimizer leaves them as they are
//!   (it skips parameters without a gradient, as torch.optim does), and a BatchNorm whose weight is frozen runs in
//!   eval mode (running statistics used, not updated), as timm's `freeze` makes it a FrozenBatchNorm2d.
//! - A model part's weights (a channel-boosted model's `booster_weights`) load by the same path, strictly, under
//!   the part's name prefix ([`build_model`]): the model's build receives values and reads no file.
//! - `--unfreeze-at N` turns them back on from epoch N (1-based, as the progress lines count): two-stage
//!   fine-tuning. The optimizer's state for those parameters starts at that epoch, as for a parameter group added
//!   to a torch optimizer then.
use std::path::Path;

use tch::Tensor;

use super::callbacks::{Callback, CallbackContext};
use crate::error::{Error, Result};
use crate::models;
use crate::nn::VarStore;

/// What `load_pretrained` did.
#[derive(Debug, Default, Clone)]
pub struct PretrainedReport {
    /// Tensors loaded from the file.
    pub loaded: Vec<String>,
    /// Tensors in the file that were not used, each with the reason.
    pub skipped: Vec<String>,
    /// The model's tensors the file did not provide: they keep their fresh initialisation.
    pub new: Vec<String>,
}

impl PretrainedReport {
    /// One line: counts, and the names of what was skipped and left new (the first few of each).
    pub fn describe(&self) -> String {
        let list = |v: &Vec<String>| {
            let shown: Vec<&str> = v.iter().take(4).map(|s| s.as_str()).collect();
            let more = if v.len() > 4 { format!(", … {} more", v.len() - 4) } else { String::new() };
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({}{more})", shown.join(", "))
            }
        };
        format!(
            "loaded {} tensors, skipped {}{}, new {}{}",
            self.loaded.len(),
            self.skipped.len(),
            list(&self.skipped),
            self.new.len(),
            list(&self.new)
        )
    }
}

/// Whether `name` is `prefix` or below it (`layer1` covers `layer1.0.conv1.weight`, not `layer10.…`); a prefix
/// ending in a dot (`features.`) is taken literally, which names a module called `features` rather than the
/// `features` keyword of `--freeze`.
fn under(name: &str, prefix: &str) -> bool {
    if prefix.ends_with('.') {
        return name.starts_with(prefix);
    }
    name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
}

/// Loads the tensors of `path` (a state dict, `.pt`/`.safetensors`, or a general checkpoint holding one) whose
/// names and shapes match `store`; a `module.` prefix on every key (a DataParallel/DDP checkpoint) is removed. The
/// classifier (`classifier`, a name prefix) is dropped when its shapes differ. An error when nothing matches.
pub fn load_pretrained(store: &VarStore, path: &Path, classifier: &str) -> Result<PretrainedReport> {
    load_into(store, read_weights(path)?, path, "", Fit::Pretrained { classifier })
}

/// The state dict of a weights file (`.pt`/`.safetensors`, or a general checkpoint holding one), without the
/// `module.` prefix a DataParallel/DDP checkpoint puts on every key.
pub fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut tensors = crate::checkpoint::read_state_dict(path)?;
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with("module.")) {
        for (k, _) in tensors.iter_mut() {
            *k = k["module.".len()..].to_string();
        }
    }
    Ok(tensors)
}

/// How [`load_into`] treats the tensors that do not fit.
#[derive(Debug, Clone, Copy)]
pub enum Fit<'a> {
    /// `--pretrained`: what does not match is skipped and reported (a `classifier` of other shapes as such), the
    /// rest keeps its initialisation; an error only when nothing matches.
    Pretrained { classifier: &'a str },
    /// A part's weights (a channel-boosted model's booster): every tensor under the prefix is given, no other
    /// tensor, with the same shapes; otherwise an error saying the file is not a state dict of `what`.
    Strict { what: &'a str },
}

/// Loads `tensors` (read from `origin`) into `store` under `prefix` (`booster` puts `conv1.weight` at
/// `booster.conv1.weight`; `""` is the whole model) by the rule `fit`. The report's `new` lists the tensors
/// under `prefix` that the file did not provide.
pub fn load_into(
    store: &VarStore,
    tensors: Vec<(String, Tensor)>,
    origin: &Path,
    prefix: &str,
    fit: Fit,
) -> Result<PretrainedReport> {
    let ours: std::collections::HashMap<String, Tensor> =
        store.state_dict().into_iter().filter(|(k, _)| prefix.is_empty() || under(k, prefix)).collect();
    let mut report = PretrainedReport::default();
    let (mut unexpected, mut mismatched) = (vec![], vec![]);
    let mut keep = vec![];
    for (k, t) in tensors {
        let k = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match ours.get(&k) {
            None => {
                report.skipped.push(format!("{k}: not in this model"));
                unexpected.push(k);
            }
            Some(o) if o.size() != t.size() => {
                let why = match fit {
                    Fit::Pretrained { classifier } if under(&k, classifier) => "classifier of another size",
                    _ => "other shape",
                };
                report.skipped.push(format!("{k}: {why}, {:?} in the file, {:?} here", t.size(), o.size()));
                mismatched.push(format!("{k}: expected {:?}, got {:?}", o.size(), t.size()));
            }
            Some(_) => {
                report.loaded.push(k.clone());
                keep.push((k, t));
            }
        }
    }
    let loaded: std::collections::HashSet<&String> = report.loaded.iter().collect();
    report.new = store
        .state_dict()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| ours.contains_key(k) && !loaded.contains(k))
        .collect();
    let refuse = |msg: String| Err(Error::Checkpoint { path: origin.display().to_string(), msg });
    match fit {
        Fit::Pretrained { .. } if keep.is_empty() => {
            return refuse(
                "no tensor matches this model's names and shapes; is it a state dict of the same architecture?".into(),
            );
        }
        Fit::Strict { what } if !report.new.is_empty() || !report.skipped.is_empty() => {
            let mut parts = vec![];
            if let Some(first) = report.new.first() {
                parts.push(format!("{} {prefix} tensors missing (first: {first})", report.new.len()));
            }
            if let Some(first) = unexpected.first() {
                parts.push(format!("unexpected keys such as {first}"));
            }
            if let Some(first) = mismatched.first() {
                parts.push(format!("shape mismatches such as {first}"));
            }
            return refuse(format!("is not a state dict of {what}: {}", parts.join("; ")));
        }
        _ => {}
    }
    store.load_state_dict(&keep, false, &origin.display().to_string())?;
    Ok(report)
}

/// A part's weights file that [`build_model`] loaded, and what it loaded.
#[derive(Debug, Clone)]
pub struct PartLoad {
    /// The model option that named the file (`booster_weights`).
    pub option: &'static str,
    pub file: String,
    pub report: PretrainedReport,
}

/// Builds a model as [`models::build_with`] does, and loads the weights files its options name for its parts
/// ([`models::weight_parts`], such as a channel-boosted model's `booster_weights`): each file is read before the
/// build (a part's class count, when not given, is its classifier's in the file) and loaded strictly under the
/// part's prefix after it. The model's build itself reads no file.
pub fn build_model(
    spec: &str,
    store: &VarStore,
    num_outputs: i64,
    input_shape: &[i64],
    extra: &[(&str, &str)],
) -> Result<(Box<dyn models::Model>, Vec<PartLoad>)> {
    if models::diagram::is_diagram(spec) && extra.is_empty() {
        return Ok((models::build(spec, store, num_outputs, input_shape)?, vec![]));
    }
    let (entry, mut config) = models::model_config(spec, num_outputs, input_shape, extra)?;
    let mut parts = vec![];
    for part in models::weight_parts(entry) {
        let Some(file) = config.options.remove(part.option) else { continue };
        let path = Path::new(&file);
        let tensors = read_weights(path)?;
        let name = config.options.get(part.model_option).cloned().unwrap_or_else(|| part.default_model.into());
        if !config.options.contains_key(part.classes_option) {
            let key = format!("{}.weight", models::find(&name)?.classifier);
            let classes = tensors.iter().find(|(k, _)| *k == key).map(|(_, t)| t.size()[0]);
            let classes = classes.ok_or_else(|| Error::Checkpoint {
                path: file.clone(),
                msg: format!(
                    "has no {key}, the classifier of {} {name}: is it a {name} state dict? (give {}=N if its \
                     classifier is named otherwise)",
                    part.prefix, part.classes_option
                ),
            })?;
            config.options.insert(part.classes_option.into(), classes.to_string());
        }
        parts.push((part, file, name, tensors));
    }
    let model = models::build_entry(entry, store, &config)?;
    let mut loads = vec![];
    for (part, file, name, tensors) in parts {
        let what = format!("{} {name}", part.prefix);
        let report = load_into(store, tensors, Path::new(&file), part.prefix, Fit::Strict { what: &what })?;
        loads.push(PartLoad { option: part.option, file, report });
    }
    Ok((model, loads))
}

/// The parameters a freeze spec names: `features` = every parameter not under `classifier` (timm's
/// features/head split); otherwise comma-separated name prefixes (`conv1,layer1`, or `features.` for a module
/// literally named `features`), each of which must name at least one parameter.
pub fn frozen_names(store: &VarStore, spec: &str, classifier: &str) -> Result<Vec<String>> {
    let params: Vec<String> = store.named_parameters().into_iter().map(|(k, _)| k).collect();
    let spec = spec.trim();
    if spec == "features" {
        let names: Vec<String> = params.into_iter().filter(|k| !under(k, classifier)).collect();
        if names.is_empty() {
            return Err(Error::config("⟨freeze⟩ features: the model has no parameters outside its classifier"));
        }
        return Ok(names);
    }
    let mut names = vec![];
    for prefix in spec.split(',').map(str::trim) {
        let matched: Vec<&String> = params.iter().filter(|k| under(k, prefix)).collect();
        if matched.is_empty() {
            let roots: std::collections::BTreeSet<&str> =
                params.iter().map(|k| k.split('.').next().unwrap_or(k)).collect();
            return Err(Error::config(format!(
                "⟨freeze⟩: no parameter is named '{prefix}' or starts with '{prefix}.'; give `features` or \
                 prefixes such as {}",
                roots.into_iter().take(6).collect::<Vec<_>>().join(", ")
            )));
        }
        names.extend(matched.into_iter().cloned());
    }
    names.dedup();
    Ok(names)
}

/// Turns `requires_grad` on or off for the named parameters of `store`.
pub fn set_trainable(store: &VarStore, names: &[String], trainable: bool) {
    for name in names {
        if let Some(t) = store.get(name) {
            let _ = t.set_requires_grad(trainable);
        }
    }
}

/// `--unfreeze-at N`: makes the frozen parameters trainable again at the start of epoch N (1-based). It keeps no
/// state of its own: a resumed run past epoch N unfreezes them at its first epoch.
#[derive(Debug)]
pub struct Unfreeze {
    pub epoch: usize,
    pub names: Vec<String>,
}

impl Callback for Unfreeze {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut CallbackContext) -> Result<()> {
        if epoch + 1 >= self.epoch {
            set_trainable(ctx.store, &self.names, true);
        }
        Ok(())
    }
    fn name(&self) -> &'static str {
        "unfreeze"
    }
}
