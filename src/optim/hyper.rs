//! The optimizer hyper-parameters, defined once. Each has torch.optim's name, which is also its `config.json`
//! key, its `tchzoo train` flag (`--name`; Adam's `betas` are `--beta1` and `--beta2`) and its key in a
//! checkpoint's `param_groups`:
//! - [`Hyper`]: the resolved values an optimizer steps with, [`Hyper::torch_defaults`] per optimizer;
//! - [`PARAMS`]: each name with its field, the table the `param_groups` writer and reader walk;
//! - [`torch_keys`]: the keys of one `param_groups` entry per optimizer, in torch.optim 2.13's order, the
//!   hyper-parameters among torch's fixed entries ([`torch_constant`]);
//! - [`HyperConfig`]: the user's form, `#[serde(flatten)]`ed into `RunConfig` (`null` = the optimizer's
//!   default for the three that depend on it), and [`HyperArgs`], its flags, `#[command(flatten)]`ed into
//!   `tchzoo train`'s.
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{OptimizerImpl, OptimizerKind};
use crate::error::{Error, Result};

/// One value per hyper-parameter (each optimizer reads those it has).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub lr: f64,
    /// SGD and RMSprop.
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Adam and AdamW.
    pub betas: (f64, f64),
    pub eps: f64,
    pub amsgrad: bool,
    /// RMSprop's smoothing constant.
    pub alpha: f64,
    pub centered: bool,
}

/// A hyper-parameter's value, or one of torch's fixed `param_groups` entries (`None`: Python's None).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Number(f64),
    Flag(bool),
    Pair(f64, f64),
    None,
}

/// Where a hyper-parameter lives in [`Hyper`], by its kind of value.
#[derive(Clone, Copy)]
pub enum Field {
    Number(fn(&mut Hyper) -> &mut f64),
    Flag(fn(&mut Hyper) -> &mut bool),
    Pair(fn(&mut Hyper) -> &mut (f64, f64)),
}

/// Every hyper-parameter: its name and its field (`tests` checks that this covers [`Hyper`]).
pub const PARAMS: [(&str, Field); 10] = [
    ("lr", Field::Number(|h| &mut h.lr)),
    ("momentum", Field::Number(|h| &mut h.momentum)),
    ("dampening", Field::Number(|h| &mut h.dampening)),
    ("nesterov", Field::Flag(|h| &mut h.nesterov)),
    ("weight_decay", Field::Number(|h| &mut h.weight_decay)),
    ("betas", Field::Pair(|h| &mut h.betas)),
    ("eps", Field::Number(|h| &mut h.eps)),
    ("amsgrad", Field::Flag(|h| &mut h.amsgrad)),
    ("alpha", Field::Number(|h| &mut h.alpha)),
    ("centered", Field::Flag(|h| &mut h.centered)),
];

impl Hyper {
    /// The defaults of `torch.optim` for `kind` (AdamW's weight decay 1e-2, RMSprop's lr 1e-2, …).
    pub fn torch_defaults(kind: OptimizerKind) -> Hyper {
        let base = Hyper {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            betas: (0.9, 0.999),
            eps: 1e-8,
            amsgrad: false,
            alpha: 0.99,
            centered: false,
        };
        match kind {
            OptimizerKind::Sgd | OptimizerKind::Adam => base,
            OptimizerKind::Adamw => Hyper { weight_decay: 1e-2, ..base },
            OptimizerKind::Rmsprop => Hyper { lr: 1e-2, ..base },
        }
    }

    /// The value of the hyper-parameter `name`; `None` when there is none of that name.
    pub fn get(&self, name: &str) -> Option<Value> {
        let mut h = *self;
        let (_, field) = PARAMS.iter().find(|(n, _)| *n == name)?;
        Some(match field {
            Field::Number(f) => Value::Number(*f(&mut h)),
            Field::Flag(f) => Value::Flag(*f(&mut h)),
            Field::Pair(f) => {
                let (a, b) = *f(&mut h);
                Value::Pair(a, b)
            }
        })
    }

    /// Checks what `torch.optim`'s constructors check, and that libtorch can take each value as a float32 scalar.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::config(what));
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be a finite number ≥ 0", self.lr));
        }
        // libtorch takes the hyper-parameters as float32 scalars: beyond its range they overflow (a panic).
        for (name, v) in [
            ("learning rate", self.lr),
            ("momentum", self.momentum),
            ("dampening", self.dampening),
            ("weight decay", self.weight_decay),
            ("eps", self.eps),
            ("alpha", self.alpha),
        ] {
            if !v.is_finite() || v.abs() > f32::MAX as f64 {
                return bad(format!("{name} {v} is not a finite float32 number (|value| ≤ 3.4e38)"));
            }
        }
        if self.momentum < 0.0 || self.weight_decay < 0.0 || self.eps < 0.0 {
            return bad("momentum, weight decay and eps must be ≥ 0".into());
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return bad("nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)".into());
        }
        if !(0.0..1.0).contains(&self.betas.0) || !(0.0..1.0).contains(&self.betas.1) {
            return bad(format!("betas {:?} must lie in [0, 1)", self.betas));
        }
        Ok(())
    }
}

/// The keys of a `param_groups` entry of `kind` (less `params`), as torch.optim 2.13 writes them: hyper-parameters
/// ([`PARAMS`]) and torch's fixed entries ([`torch_constant`]).
pub fn torch_keys(kind: OptimizerKind) -> &'static [&'static str] {
    match kind {
        OptimizerKind::Sgd => &[
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "nesterov",
            "maximize",
            "foreach",
            "differentiable",
            "fused",
        ],
        OptimizerKind::Adam | OptimizerKind::Adamw => &[
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "amsgrad",
            "maximize",
            "foreach",
            "capturable",
            "differentiable",
            "fused",
            "decoupled_weight_decay",
        ],
        OptimizerKind::Rmsprop => &[
            "lr",
            "momentum",
            "alpha",
            "eps",
            "centered",
            "weight_decay",
            "capturable",
            "foreach",
            "maximize",
            "differentiable",
        ],
    }
}

/// The value of one of torch's fixed `param_groups` entries, which tchzoo does not vary; `None` for a key that is
/// not one of them. torch records what the constructor was given: `SGD(…, foreach=False)` keeps foreach False and
/// fused None, `foreach=True` foreach True, `fused=True` fused True and foreach None; tchzoo always chooses
/// explicitly.
pub fn torch_constant(key: &str, kind: OptimizerKind, implementation: OptimizerImpl) -> Option<Value> {
    Some(match key {
        "maximize" | "capturable" | "differentiable" => Value::Flag(false),
        "foreach" => match implementation {
            OptimizerImpl::Single => Value::Flag(false),
            OptimizerImpl::Foreach => Value::Flag(true),
            OptimizerImpl::Fused => Value::None,
        },
        "fused" => match implementation {
            OptimizerImpl::Fused => Value::Flag(true),
            _ => Value::None,
        },
        "decoupled_weight_decay" => Value::Flag(kind == OptimizerKind::Adamw),
        _ => return None,
    })
}

/// A `param_groups` entry of `kind` with the hyper-parameters `h` (less `params`), keyed and ordered as
/// torch.optim 2.13 writes it.
pub fn torch_param_group(kind: OptimizerKind, implementation: OptimizerImpl, h: &Hyper) -> Vec<(&'static str, Value)> {
    torch_keys(kind)
        .iter()
        .map(|&k| (k, h.get(k).or_else(|| torch_constant(k, kind, implementation)).unwrap_or(Value::None)))
        .collect()
}

/// The hyper-parameters as a run config holds them (the user's form in `config.json`): `null` = the optimizer's
/// default for those whose default depends on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HyperConfig {
    /// `null` = the optimizer's default (Keras' and torch's: SGD 1e-2, Adam, AdamW and RMSprop 1e-3).
    pub lr: Option<f64>,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// `null` = the optimizer's default (AdamW 1e-2, others 0).
    pub weight_decay: Option<f64>,
    pub betas: (f64, f64),
    pub eps: Option<f64>,
    pub amsgrad: bool,
    pub alpha: f64,
    pub centered: bool,
}

impl Default for HyperConfig {
    /// torch.optim's defaults (the same for every optimizer), the optimizer-dependent ones unset.
    fn default() -> Self {
        let t = Hyper::torch_defaults(OptimizerKind::Sgd);
        HyperConfig {
            lr: None,
            momentum: t.momentum,
            dampening: t.dampening,
            nesterov: t.nesterov,
            weight_decay: None,
            betas: t.betas,
            eps: None,
            amsgrad: t.amsgrad,
            alpha: t.alpha,
            centered: t.centered,
        }
    }
}

impl HyperConfig {
    /// The values for `kind`: `torch.optim`'s defaults where unset, but Keras' learning rates (torch.optim's for
    /// SGD, Adam and AdamW; torch's RMSprop takes 1e-2, Keras' 1e-3).
    pub fn resolve(&self, kind: OptimizerKind) -> Hyper {
        let torch = Hyper::torch_defaults(kind);
        let keras_lr = match kind {
            OptimizerKind::Sgd => 1e-2,
            OptimizerKind::Adam | OptimizerKind::Adamw | OptimizerKind::Rmsprop => 1e-3,
        };
        Hyper {
            lr: self.lr.unwrap_or(keras_lr),
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay.unwrap_or(torch.weight_decay),
            betas: self.betas,
            eps: self.eps.unwrap_or(torch.eps),
            amsgrad: self.amsgrad,
            alpha: self.alpha,
            centered: self.centered,
        }
    }
}

/// The hyper-parameters' flags of `tchzoo train`.
#[derive(Debug, Clone, Args, Default)]
pub struct HyperArgs {
    /// Learning rate [default: the optimizer's, as Keras: sgd 0.01; adam, adamw and rmsprop 0.001], or `auto`:
    /// the learning-rate range test (`tchzoo tune lr`, its defaults) picks it before training.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub dampening: Option<f64>,
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, alias = "weight_decay", allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub beta1: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub beta2: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    #[arg(long)]
    pub amsgrad: bool,
    /// RMSprop's smoothing constant.
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    #[arg(long)]
    pub centered: bool,
}

impl HyperArgs {
    /// The flags given, over `c`; `--lr` aside (a number or `auto`: `train::lr_find::set_lr_flag`).
    pub fn apply(&self, c: &mut HyperConfig) {
        let numbers =
            [(self.momentum, &mut c.momentum), (self.dampening, &mut c.dampening), (self.alpha, &mut c.alpha)];
        for (v, field) in numbers {
            if let Some(v) = v {
                *field = v;
            }
        }
        for (v, field) in [(self.weight_decay, &mut c.weight_decay), (self.eps, &mut c.eps)] {
            if v.is_some() {
                *field = v;
            }
        }
        for (v, field) in [(self.beta1, &mut c.betas.0), (self.beta2, &mut c.betas.1)] {
            if let Some(v) = v {
                *field = v;
            }
        }
        c.nesterov |= self.nesterov;
        c.amsgrad |= self.amsgrad;
        c.centered |= self.centered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [OptimizerKind; 4] =
        [OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::Adamw, OptimizerKind::Rmsprop];

    fn keys(v: serde_json::Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// A hyper-parameter added to `Hyper` needs its row in `PARAMS`, its key in `HyperConfig` (config.json) and
    /// `HyperArgs` (a flag), and a place in the `param_groups` of the optimizers that have it; every key of a
    /// `param_groups` entry is a hyper-parameter or one of torch's fixed entries.
    #[test]
    fn the_one_table_covers_every_form() {
        let names: Vec<String> = PARAMS.iter().map(|(n, _)| n.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        let mut hyper_keys = keys(serde_json::to_value(Hyper::torch_defaults(OptimizerKind::Adam)).unwrap());
        hyper_keys.sort();
        assert_eq!(sorted, hyper_keys, "PARAMS against Hyper's fields");
        let mut config_keys = keys(serde_json::to_value(HyperConfig::default()).unwrap());
        config_keys.sort();
        assert_eq!(sorted, config_keys, "HyperConfig's keys (config.json)");

        let cli = HyperArgs::augment_args(clap::Command::new("train"));
        let flags: Vec<String> = cli.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect();
        for (name, field) in &PARAMS {
            let wanted: Vec<String> = match field {
                Field::Pair(_) => {
                    vec![format!("{}1", name.trim_end_matches('s')), format!("{}2", name.trim_end_matches('s'))]
                }
                _ => vec![name.replace('_', "-")],
            };
            for w in wanted {
                assert!(flags.contains(&w), "no --{w} flag for {name}: {flags:?}");
            }
            assert!(KINDS.iter().any(|&k| torch_keys(k).contains(name)), "{name} is in no param_groups layout");
        }
        for kind in KINDS {
            for key in torch_keys(kind) {
                let known =
                    names.iter().any(|n| n == key) || torch_constant(key, kind, OptimizerImpl::Single).is_some();
                assert!(known, "param_groups key {key} of {kind:?} is neither a hyper-parameter nor a torch constant");
            }
        }
    }

    /// Every field is reached by its own row: distinct values in, the same values out by name.
    #[test]
    fn each_row_reaches_its_own_field() {
        let h = Hyper {
            lr: 1.0,
            momentum: 2.0,
            dampening: 3.0,
            nesterov: true,
            weight_decay: 4.0,
            betas: (5.0, 6.0),
            eps: 7.0,
            amsgrad: false,
            alpha: 8.0,
            centered: true,
        };
        let json = serde_json::to_value(h).unwrap();
        for (name, _) in &PARAMS {
            let got = match h.get(name).unwrap() {
                Value::Number(v) => serde_json::json!(v),
                Value::Flag(b) => serde_json::json!(b),
                Value::Pair(a, b) => serde_json::json!([a, b]),
                Value::None => serde_json::Value::Null,
            };
            assert_eq!(got, json[*name], "{name}");
        }
        assert_eq!(h.get("maximize"), None);
    }
}
