//! The general training checkpoint of the PyTorch tutorials, both ways:
//! `{"epoch", "model_state_dict", "optimizer_state_dict": {"state", "param_groups"}, "loss"}`, with
//! `param_groups` keyed exactly as torch.optim 2.13 writes them for SGD, Adam, AdamW and RMSprop, so that
//! `torch.optim.Adam(model.parameters()).load_state_dict(ckpt["optimizer_state_dict"])` works.
use std::path::Path;

use tch::Tensor;

use super::{read_pt, write_pt, Object};
use crate::error::{Error, Result};
use crate::nn::VarStore;
use crate::optim::hyper::{self, Field, Hyper, Value};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};

/// What a checkpoint says besides the weights and optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub epoch: Option<i64>,
    pub loss: Option<f64>,
}

/// Saves `{"epoch", "model_state_dict", "optimizer_state_dict", "loss"}` as a `.pt` file, atomically.
pub fn save_checkpoint(path: &Path, epoch: i64, store: &VarStore, opt: &Optimizer, loss: f64) -> Result<()> {
    let obj = Object::dict(vec![
        ("epoch", Object::Int(epoch)),
        ("model_state_dict", Object::from_state_dict(&store.state_dict())),
        ("optimizer_state_dict", optimizer_state_dict(opt)),
        ("loss", Object::Float(loss)),
    ]);
    write_pt(path, &obj)
}

/// Loads a general checkpoint written by [`save_checkpoint`] or by Python: the model weights (strict), the
/// optimizer's state and hyper-parameters, and the epoch and loss. Everything is checked before anything changes.
pub fn load_checkpoint(path: &Path, store: &VarStore, opt: &mut Optimizer) -> Result<CheckpointInfo> {
    let origin = path.display().to_string();
    let err = |msg: String| Error::Checkpoint { path: origin.clone(), msg };
    let obj = read_pt(path)?;
    let model = obj
        .get("model_state_dict")
        .ok_or_else(|| err(format!("no 'model_state_dict' in this {} (keys: {})", obj.type_name(), obj.keys())))?;
    let tensors = model.state_dict().ok_or_else(|| err("'model_state_dict' is not a dict of tensors".into()))?;
    let opt_state = obj
        .get("optimizer_state_dict")
        .ok_or_else(|| err(format!("no 'optimizer_state_dict' (keys: {})", obj.keys())))?;
    let plan = plan_optimizer_load(opt, opt_state).map_err(|m| err(format!("optimizer_state_dict: {m}")))?;
    let epoch = match obj.get("epoch") {
        None | Some(Object::None) => None,
        Some(e) => Some(e.as_i64().ok_or_else(|| err(format!("'epoch' is a {}, not an int", e.type_name())))?),
    };
    let loss = match obj.get("loss") {
        None | Some(Object::None) => None,
        Some(l) => Some(l.as_f64().ok_or_else(|| err(format!("'loss' is a {}, not a number", l.type_name())))?),
    };
    store.load_state_dict(&tensors, true, &origin)?;
    apply_plan(opt, plan).map_err(|e| err(e.to_string()))?;
    Ok(CheckpointInfo { epoch, loss })
}

/// The optimizer's `state_dict()` as torch.optim 2.13 writes it: one entry in `param_groups` per group, its
/// `params` numbered as torch numbers them (consecutively over the groups in order, whatever the parameters'
/// order in the model), `state` keyed by those numbers, and `foreach`/`fused` saying the implementation that ran.
pub fn optimizer_state_dict(opt: &Optimizer) -> Object {
    let groups = opt.groups();
    let mut state: Vec<(Object, Object)> = Vec::new();
    let mut next = 0i64;
    let mut group_objs = Vec::new();
    for g in &groups {
        let mut ids = Vec::new();
        for &i in &g.params {
            let entries = opt.param_state(i);
            if !entries.is_empty() {
                let d = entries.into_iter().map(|(k, t)| (Object::Str(k), Object::Tensor(t))).collect();
                state.push((Object::Int(next), Object::Dict(d)));
            }
            ids.push(Object::Int(next));
            next += 1;
        }
        let mut group = group_hyper_parameters(&opt.config, &g.hyper(&opt.config.hyper));
        group.push(("params", Object::List(ids)));
        group_objs.push(Object::dict(group));
    }
    state.sort_by_key(|(k, _)| k.as_i64());
    Object::dict(vec![("state", Object::Dict(state)), ("param_groups", Object::List(group_objs))])
}

/// One group's `param_groups` entry (less `params`), keyed and ordered as torch.optim 2.13 writes it.
fn group_hyper_parameters(c: &OptimizerConfig, h: &Hyper) -> Vec<(&'static str, Object)> {
    let object = |v| match v {
        Value::Number(x) => Object::Float(x),
        Value::Flag(b) => Object::Bool(b),
        Value::Pair(a, b) => Object::Tuple(vec![Object::Float(a), Object::Float(b)]),
        Value::None => Object::None,
    };
    hyper::torch_param_group(c.kind, c.implementation, h).into_iter().map(|(k, v)| (k, object(v))).collect()
}

/// Loads a torch.optim `state_dict()` (as read from a `.pt` file) into `opt`: hyper-parameters and per-parameter
/// state. The optimizer family must match (Adam state does not load into SGD).
pub fn load_optimizer_state_dict(opt: &mut Optimizer, state_dict: &Object) -> Result<()> {
    let plan = plan_optimizer_load(opt, state_dict).map_err(|m| Error::invalid(format!("optimizer state: {m}")))?;
    apply_plan(opt, plan)
}

struct Plan {
    config: OptimizerConfig,
    states: Vec<(usize, Vec<(String, Tensor)>)>,
    /// Each group's lr and weight decay.
    lrs: Vec<f64>,
    wds: Vec<f64>,
}

fn kind_name(k: OptimizerKind) -> &'static str {
    match k {
        OptimizerKind::Sgd => "SGD",
        OptimizerKind::Adam => "Adam",
        OptimizerKind::Adamw => "AdamW",
        OptimizerKind::Rmsprop => "RMSprop",
    }
}

fn plan_optimizer_load(opt: &Optimizer, sd: &Object) -> std::result::Result<Plan, String> {
    let groups = match sd.get("param_groups") {
        Some(Object::List(g)) => g,
        _ => return Err("no 'param_groups' list".into()),
    };
    let ours = opt.groups();
    if groups.len() != ours.len() {
        return Err(format!(
            "{} parameter groups, this optimizer has {} (⟨no_decay_norm_bias⟩ and ⟨lr_mult⟩ decide them; use the \
             run's)",
            groups.len(),
            ours.len()
        ));
    }
    let Some(group) = groups.first() else { return Err("no parameter group".into()) };
    let num = |key: &str| -> std::result::Result<Option<f64>, String> {
        match group.get(key) {
            None | Some(Object::None) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("param_groups[0].{key} is a {}", v.type_name())),
        }
    };
    let flag = |key: &str| -> std::result::Result<Option<bool>, String> {
        match group.get(key) {
            None | Some(Object::None) => Ok(None),
            Some(Object::Bool(b)) => Ok(Some(*b)),
            Some(v) => {
                v.as_i64().map(|i| Some(i != 0)).ok_or_else(|| format!("param_groups[0].{key} is a {}", v.type_name()))
            }
        }
    };
    let has = |key: &str| group.get(key).is_some();
    let file_kind = if has("nesterov") || has("dampening") {
        OptimizerKind::Sgd
    } else if has("alpha") || has("centered") {
        OptimizerKind::Rmsprop
    } else if has("betas") {
        match flag("decoupled_weight_decay")? {
            Some(true) => OptimizerKind::Adamw,
            Some(false) => OptimizerKind::Adam,
            // Before torch 2.6 AdamW's groups looked like Adam's.
            None if opt.config.kind == OptimizerKind::Adamw => OptimizerKind::Adamw,
            None => OptimizerKind::Adam,
        }
    } else {
        return Err(format!("param_groups[0] has keys {} of no optimizer tchzoo knows", group.keys()));
    };
    if file_kind != opt.config.kind {
        return Err(format!(
            "it holds {} state, this optimizer is {}; choose the same optimizer to resume",
            kind_name(file_kind),
            kind_name(opt.config.kind)
        ));
    }
    if flag("maximize")? == Some(true) {
        return Err("maximize=True is not supported".into());
    }
    let mut c = opt.config.clone();
    for (key, field) in &hyper::PARAMS {
        match field {
            Field::Number(f) => {
                if let Some(v) = num(key)? {
                    *f(&mut c.hyper) = v;
                }
            }
            Field::Flag(f) => {
                if let Some(v) = flag(key)? {
                    *f(&mut c.hyper) = v;
                }
            }
            Field::Pair(f) => {
                if let Some(pair) = group.get(key) {
                    let two = match pair {
                        Object::Tuple(v) | Object::List(v) if v.len() == 2 => v[0].as_f64().zip(v[1].as_f64()),
                        _ => None,
                    };
                    *f(&mut c.hyper) = two.ok_or_else(|| format!("param_groups[0].{key} are not two numbers"))?;
                }
            }
        }
    }
    c.validate().map_err(|e| e.to_string())?;

    // File index → our parameter index, group by group; and each group's lr and weight decay.
    let params = opt.params();
    let mut index: Vec<(i64, usize)> = Vec::new();
    let (mut lrs, mut wds) = (Vec::new(), Vec::new());
    for (g, (file_group, our_group)) in groups.iter().zip(&ours).enumerate() {
        let ids: Vec<i64> = match file_group.get("params") {
            Some(Object::List(v)) => v
                .iter()
                .map(|x| x.as_i64().ok_or(format!("param_groups[{g}].params holds a non-integer")))
                .collect::<std::result::Result<_, _>>()?,
            _ => return Err(format!("param_groups[{g}] has no 'params' list")),
        };
        if ids.len() != our_group.params.len() {
            return Err(format!(
                "param_groups[{g}] covers {} parameters, this optimizer's group {g} has {} (of {} in the model)",
                ids.len(),
                our_group.params.len(),
                params.len()
            ));
        }
        for (&id, &i) in ids.iter().zip(&our_group.params) {
            if index.iter().any(|(x, _)| *x == id) {
                return Err(format!("parameter {id} is in two param_groups"));
            }
            index.push((id, i));
        }
        let value = |key: &str, default: f64| -> std::result::Result<f64, String> {
            match file_group.get(key) {
                None | Some(Object::None) => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| format!("param_groups[{g}].{key} is a {}", v.type_name())),
            }
        };
        let (lr, wd) = (value("lr", c.hyper.lr)?, value("weight_decay", c.hyper.weight_decay)?);
        for (what, v) in [("lr", lr), ("weight_decay", wd)] {
            if !(v.is_finite() && v >= 0.0 && v.abs() <= f32::MAX as f64) {
                return Err(format!("param_groups[{g}].{what} {v} is not a finite number ≥ 0"));
            }
        }
        lrs.push(lr);
        wds.push(wd);
    }
    let state = match sd.get("state") {
        Some(Object::Dict(s) | Object::OrderedDict(s)) => s,
        _ => return Err("no 'state' dict".into()),
    };
    let required: Vec<&str> = match c.kind {
        OptimizerKind::Sgd => vec![],
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let mut r = vec!["step", "exp_avg", "exp_avg_sq"];
            if c.hyper.amsgrad {
                r.push("max_exp_avg_sq");
            }
            r
        }
        OptimizerKind::Rmsprop => {
            let mut r = vec!["step", "square_avg"];
            if c.hyper.momentum > 0.0 {
                r.push("momentum_buffer");
            }
            if c.hyper.centered {
                r.push("grad_avg");
            }
            r
        }
    };
    let mut states = Vec::new();
    for (id, entries) in state {
        let id = id.as_i64().ok_or_else(|| format!("state key is a {}, not a parameter index", id.type_name()))?;
        let i = index
            .iter()
            .find(|(x, _)| *x == id)
            .map(|(_, i)| *i)
            .ok_or_else(|| format!("state for parameter {id}, not in params"))?;
        let entries = match entries {
            Object::Dict(e) | Object::OrderedDict(e) => e,
            other => return Err(format!("state[{id}] is a {}", other.type_name())),
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let k = k.as_str().ok_or_else(|| format!("state[{id}] has a non-string key"))?;
            let t = match v {
                Object::None => continue, // SGD's momentum_buffer before momentum starts
                Object::Tensor(t) => t.shallow_clone(),
                other if k == "step" => Tensor::from(
                    other.as_f64().ok_or_else(|| format!("state[{id}].step is a {}", other.type_name()))? as f32,
                ),
                other => return Err(format!("state[{id}].{k} is a {}, not a tensor", other.type_name())),
            };
            if k == "step" {
                if t.numel() != 1 {
                    return Err(format!("state[{id}].step has {} elements", t.numel()));
                }
            } else if t.size() != params[i].size() {
                return Err(format!(
                    "state[{id}].{k} has shape {:?}, parameter {i} has {:?}",
                    t.size(),
                    params[i].size()
                ));
            } else if !t.is_floating_point() {
                return Err(format!("state[{id}].{k} is not a floating-point tensor"));
            }
            out.push((k.to_string(), t));
        }
        if !out.is_empty() {
            if let Some(miss) = required.iter().find(|r| !out.iter().any(|(k, _)| k == *r)) {
                return Err(format!("state[{id}] lacks '{miss}' for {}", kind_name(c.kind)));
            }
            if c.kind == OptimizerKind::Sgd
                && c.hyper.momentum != 0.0
                && !out.iter().any(|(k, _)| k == "momentum_buffer")
            {
                return Err(format!("state[{id}] lacks 'momentum_buffer'"));
            }
        }
        states.push((i, out));
    }
    Ok(Plan { config: c, states, lrs, wds })
}

fn apply_plan(opt: &mut Optimizer, plan: Plan) -> Result<()> {
    let implementation = opt.config.implementation;
    opt.config = plan.config;
    // The run's --optimizer-impl decides how to step; the file's foreach/fused say how it was stepped.
    opt.config.implementation = implementation;
    opt.set_group_lrs(&plan.lrs);
    opt.set_group_weight_decays(&plan.wds);
    let groups = opt.groups();
    if groups.len() > 1 {
        // The base lr and weight decay: those of the first group without a multiplier / with decay.
        if let Some(g) = groups.iter().find(|g| g.lr_mult == 1.0) {
            opt.set_base_lr(g.lr);
        } else if groups[0].lr_mult > 0.0 {
            opt.set_base_lr(groups[0].lr / groups[0].lr_mult);
        }
        if let Some(g) = groups.iter().find(|g| g.weight_decay != 0.0) {
            opt.config.hyper.weight_decay = g.weight_decay;
        }
    }
    let n = opt.params().len();
    let mut seen = vec![false; n];
    for (i, entries) in plan.states {
        seen[i] = true;
        opt.set_param_state(i, entries)?;
    }
    for (i, s) in seen.iter().enumerate() {
        if !s {
            opt.set_param_state(i, vec![("step".to_string(), Tensor::from(0f32))])?;
        }
    }
    Ok(())
}
