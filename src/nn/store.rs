//! An ordered store of parameters and buffers.
//!
//! Unlike tch's `VarStore` (a hash map), entries keep PyTorch's registration order, which `state_dict()` and
//! `torch.optim`'s parameter indices follow; a name registered twice is an error, not a silent `name__1`.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    /// A trainable parameter (requires grad), listed by `parameters()`.
    Parameter,
    /// A buffer (running statistics, counters): in the state dict, not optimised.
    Buffer,
}

#[derive(Debug)]
pub struct Var {
    pub name: String,
    pub tensor: Tensor,
    pub kind: VarKind,
}

#[derive(Debug, Default)]
struct Vars {
    entries: Vec<Var>,
    index: HashMap<String, usize>,
    /// Where the next entry goes (replacing a classifier keeps its place); `None` = at the end.
    cursor: Option<usize>,
}

/// The owner of every tensor of a model. Cloning it gives another handle on the same store.
#[derive(Debug, Clone)]
pub struct VarStore {
    vars: Rc<RefCell<Vars>>,
    device: Device,
    /// The group the batch norms built in this store synchronise over (`--sync-bn`).
    sync_bn: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
}

impl VarStore {
    pub fn new(device: Device) -> Self {
        VarStore { vars: Rc::new(RefCell::new(Vars::default())), device, sync_bn: None }
    }
    /// A store whose batch norms, built after this, normalise over `group`'s global batch (PyTorch's
    /// `SyncBatchNorm.convert_sync_batchnorm` applied at construction).
    pub fn with_sync_bn(mut self, group: std::sync::Arc<crate::dist::ProcessGroup>) -> Self {
        self.sync_bn = Some(group);
        self
    }
    pub fn sync_bn_group(&self) -> Option<std::sync::Arc<crate::dist::ProcessGroup>> {
        self.sync_bn.clone()
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn root(&self) -> Path {
        Path { store: self.clone(), prefix: String::new() }
    }

    fn add(&self, name: String, tensor: Tensor, kind: VarKind) -> Result<Tensor> {
        let mut vars = self.vars.borrow_mut();
        if vars.index.contains_key(&name) {
            return Err(Error::invalid(format!("parameter name '{name}' registered twice")));
        }
        let tensor = match kind {
            VarKind::Parameter => tensor.set_requires_grad(true),
            VarKind::Buffer => tensor.set_requires_grad(false),
        };
        let handle = tensor.shallow_clone();
        let pos = match vars.cursor {
            Some(c) => {
                vars.cursor = Some(c + 1);
                c
            }
            None => vars.entries.len(),
        };
        vars.entries.insert(pos, Var { name, tensor, kind });
        vars.reindex();
        Ok(handle)
    }

    /// Removes every entry under `prefix` (`classifier` removes `classifier.weight`, `classifier.0.bias`, …)
    /// and places the next registrations where the first removed entry was.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        let mut vars = self.vars.borrow_mut();
        let dotted = format!("{prefix}.");
        let first = vars.entries.iter().position(|v| v.name == prefix || v.name.starts_with(&dotted));
        vars.entries.retain(|v| !(v.name == prefix || v.name.starts_with(&dotted)));
        vars.reindex();
        vars.cursor = first;
        first.map_or(0, |_| 1)
    }
    /// Registrations go to the end again.
    pub fn reset_cursor(&self) {
        self.vars.borrow_mut().cursor = None;
    }

    /// Trainable parameters in registration order (= Python's `model.parameters()`).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.of_kind(VarKind::Parameter)
    }
    /// The buffers (running statistics, counters) in registration order.
    pub fn buffers(&self) -> Vec<Tensor> {
        self.of_kind(VarKind::Buffer)
    }
    fn of_kind(&self, kind: VarKind) -> Vec<Tensor> {
        self.vars.borrow().entries.iter().filter(|v| v.kind == kind).map(|v| v.tensor.shallow_clone()).collect()
    }
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.vars
            .borrow()
            .entries
            .iter()
            .filter(|v| v.kind == VarKind::Parameter)
            .map(|v| (v.name.clone(), v.tensor.shallow_clone()))
            .collect()
    }
    /// Parameters and buffers in `state_dict()` order.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.vars.borrow().entries.iter().map(|v| (v.name.clone(), v.tensor.shallow_clone())).collect()
    }
    pub fn entries_meta(&self) -> Vec<(String, Vec<i64>, Kind, VarKind)> {
        self.vars.borrow().entries.iter().map(|v| (v.name.clone(), v.tensor.size(), v.tensor.kind(), v.kind)).collect()
    }
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let vars = self.vars.borrow();
        vars.index.get(name).map(|&i| vars.entries[i].tensor.shallow_clone())
    }
    pub fn len(&self) -> usize {
        self.vars.borrow().entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of scalars in trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        self.vars
            .borrow()
            .entries
            .iter()
            .filter(|v| v.kind == VarKind::Parameter)
            .map(|v| v.tensor.numel() as i64)
            .sum()
    }

    /// Copies named tensors into the store, as `load_state_dict`. With `strict`, missing keys, unexpected keys and
    /// shape mismatches are all listed in one error; without, matching entries load and the rest is reported.
    pub fn load_state_dict(&self, tensors: &[(String, Tensor)], strict: bool, origin: &str) -> Result<LoadReport> {
        let vars = self.vars.borrow();
        let mut report = LoadReport::default();
        let given: HashMap<&str, &Tensor> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        for v in &vars.entries {
            match given.get(v.name.as_str()) {
                None => report.missing.push(v.name.clone()),
                Some(t) if t.size() != v.tensor.size() => {
                    report.mismatched.push(format!("{}: expected {:?}, got {:?}", v.name, v.tensor.size(), t.size()))
                }
                Some(_) => {}
            }
        }
        for (k, _) in tensors {
            if !vars.index.contains_key(k) {
                report.unexpected.push(k.clone());
            }
        }
        if strict && !report.is_clean() {
            return Err(Error::Checkpoint { path: origin.to_string(), msg: report.describe() });
        }
        tch::no_grad(|| -> Result<()> {
            for v in &vars.entries {
                if let Some(t) = given.get(v.name.as_str()) {
                    if t.size() == v.tensor.size() {
                        let mut dst = v.tensor.shallow_clone();
                        dst.f_copy_(&t.to_device(self.device).to_kind(v.tensor.kind()))?;
                        report.loaded += 1;
                    }
                }
            }
            Ok(())
        })?;
        Ok(report)
    }
}

impl Vars {
    fn reindex(&mut self) {
        self.index = self.entries.iter().enumerate().map(|(i, v)| (v.name.clone(), i)).collect();
    }
}

/// What a state-dict load matched and what it did not.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub loaded: usize,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub mismatched: Vec<String>,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        let list = |v: &Vec<String>| {
            let shown: Vec<&str> = v.iter().take(8).map(|s| s.as_str()).collect();
            let more = if v.len() > 8 { format!(" … and {} more", v.len() - 8) } else { String::new() };
            format!("{}{}", shown.join(", "), more)
        };
        if !self.missing.is_empty() {
            parts.push(format!("missing keys: {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected keys: {}", list(&self.unexpected)));
        }
        if !self.mismatched.is_empty() {
            parts.push(format!("shape mismatches: {}", list(&self.mismatched)));
        }
        if parts.is_empty() {
            format!("loaded {} tensors", self.loaded)
        } else {
            parts.join("; ")
        }
    }
}

/// A position in the module tree: `root / "features" / 0` names `features.0`.
#[derive(Debug, Clone)]
pub struct Path {
    store: VarStore,
    prefix: String,
}

impl Path {
    pub fn sub(&self, name: impl std::fmt::Display) -> Path {
        let name = name.to_string();
        let prefix = if self.prefix.is_empty() { name } else { format!("{}.{}", self.prefix, name) };
        Path { store: self.store.clone(), prefix }
    }
    pub fn name(&self) -> &str {
        &self.prefix
    }
    pub fn store(&self) -> &VarStore {
        &self.store
    }
    pub fn device(&self) -> Device {
        self.store.device
    }
    /// Replaces every entry under this path by what `build` registers there, in the same place of the store's
    /// order (a classifier rebuilt by `reset_classifier` keeps torch's key order).
    pub fn replace<T>(&self, build: impl FnOnce(&Path) -> T) -> T {
        self.store.remove_prefix(&self.prefix);
        let built = build(self);
        self.store.reset_cursor();
        built
    }
    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }
    /// Registers a trainable parameter, initialised by `init` (a tensor of the right shape on any device).
    pub fn param(&self, name: &str, init: Tensor) -> Tensor {
        self.try_add(name, init, VarKind::Parameter)
    }
    pub fn buffer(&self, name: &str, init: Tensor) -> Tensor {
        self.try_add(name, init, VarKind::Buffer)
    }
    fn try_add(&self, name: &str, init: Tensor, kind: VarKind) -> Tensor {
        let full = self.full(name);
        // A duplicate name is a programming error in a model definition, caught by the registry tests.
        self.store
            .add(full.clone(), init.to_device(self.store.device).detach(), kind)
            .unwrap_or_else(|e| panic!("model definition bug: {e}"))
    }
}
