//! Parameter groups as `torch.optim` keeps them: each group its own learning rate and weight decay over a subset
//! of the parameters. Built from `--no-decay-norm-bias` (timm's rule: no weight decay on parameters with ndim ≤ 1
//! or names ending in `.bias`) and `--lr-mult PREFIX=M,…` (the group's lr is the base lr times M).
use tch::Tensor;

use crate::error::{Error, Result};

/// One `torch.optim` param group: parameter indices (in `model.parameters()` order) and its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    pub params: Vec<usize>,
    pub lr: f64,
    pub weight_decay: f64,
    /// The group's lr over the base lr (`--lr-mult`), used when the base lr is set as a whole (`set_lr`).
    pub lr_mult: f64,
}

impl ParamGroup {
    /// The group's hyper-parameters: `base`'s, with the group's lr and weight decay (all tchzoo varies by group).
    pub fn hyper(&self, base: &super::Hyper) -> super::Hyper {
        super::Hyper { lr: self.lr, weight_decay: self.weight_decay, ..*base }
    }
}

/// How the parameters split into groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSpec {
    pub no_decay_norm_bias: bool,
    /// (name prefix, multiplier), as given.
    pub lr_mult: Vec<(String, f64)>,
}

impl GroupSpec {
    pub fn is_plain(&self) -> bool {
        !self.no_decay_norm_bias && self.lr_mult.is_empty()
    }
}

/// Parses `classifier=10,layer4=2`: prefixes of parameter names and positive finite multipliers.
pub fn parse_lr_mult(s: &str) -> Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let pairs = crate::util::parse_pairs(s, None, |part| {
        Error::config(format!("⟨lr_mult⟩ '{part}': write PREFIX=MULTIPLIER, e.g. classifier=10,layer4=2"))
    })?;
    for (name, value) in pairs {
        let part = format!("{name}={value}");
        let name = name.trim_end_matches('.').to_string();
        let m: f64 = value
            .parse()
            .map_err(|_| Error::config(format!("⟨lr_mult⟩ {name}='{value}': the multiplier is not a number")))?;
        if !(m.is_finite() && m >= 0.0) {
            return Err(Error::config(format!("⟨lr_mult⟩ {name}={value}: the multiplier must be finite and ≥ 0")));
        }
        if name.is_empty() {
            return Err(Error::config(format!("⟨lr_mult⟩ '{part}': the parameter-name prefix is empty")));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Error::config(format!("⟨lr_mult⟩ names '{name}' twice")));
        }
        out.push((name, m));
    }
    if out.is_empty() {
        return Err(Error::config("⟨lr_mult⟩ is empty: give PREFIX=MULTIPLIER, e.g. classifier=10"));
    }
    Ok(out)
}

/// Whether `name` lies under `prefix` (the name itself, or a module path below it).
fn under(name: &str, prefix: &str) -> bool {
    name == prefix || (name.starts_with(prefix) && name[prefix.len()..].starts_with('.'))
}

/// timm's `param_groups_weight_decay` rule: no decay for 0-/1-d parameters (biases, norm weights) and `.bias`.
pub fn is_no_decay(name: &str, shape: &[i64]) -> bool {
    shape.len() <= 1 || name.ends_with(".bias")
}

/// The groups for `named` parameters: one per distinct (lr multiplier, decayed) pair, in the order of their first
/// parameter. `classifier` (the model's head, as the registry names it) stands for the prefix `classifier` when no
/// parameter is named so. A prefix that matches no parameter is an error naming some real prefixes. The longest
/// matching prefix decides a parameter's multiplier.
pub fn build(
    named: &[(String, Tensor)],
    spec: &GroupSpec,
    lr: f64,
    weight_decay: f64,
    classifier: Option<&str>,
) -> Result<Vec<ParamGroup>> {
    let mut prefixes: Vec<(String, f64)> = Vec::new();
    for (prefix, m) in &spec.lr_mult {
        let matches = |p: &str| named.iter().any(|(n, _)| under(n, p));
        let resolved = if matches(prefix) {
            prefix.clone()
        } else if prefix == "classifier" && classifier.is_some_and(|c| !c.is_empty() && matches(c)) {
            classifier.unwrap_or_default().to_string()
        } else {
            return Err(Error::config(format!(
                "⟨lr_mult⟩ '{prefix}' matches no parameter; prefixes here: {}",
                real_prefixes(named, classifier)
            )));
        };
        prefixes.push((resolved, *m));
    }
    let mut groups: Vec<(u64, bool, ParamGroup)> = Vec::new();
    for (i, (name, t)) in named.iter().enumerate() {
        let mult = prefixes.iter().filter(|(p, _)| under(name, p)).max_by_key(|(p, _)| p.len()).map_or(1.0, |x| x.1);
        let decay = !(spec.no_decay_norm_bias && is_no_decay(name, &t.size()));
        match groups.iter_mut().find(|(m, d, _)| *m == mult.to_bits() && *d == decay) {
            Some((_, _, g)) => g.params.push(i),
            None => groups.push((
                mult.to_bits(),
                decay,
                ParamGroup {
                    params: vec![i],
                    lr: lr * mult,
                    weight_decay: if decay { weight_decay } else { 0.0 },
                    lr_mult: mult,
                },
            )),
        }
    }
    if groups.is_empty() {
        groups.push((1f64.to_bits(), true, ParamGroup { params: vec![], lr, weight_decay, lr_mult: 1.0 }));
    }
    Ok(groups.into_iter().map(|(_, _, g)| g).collect())
}

/// The run's optimizer: `config`'s hyper-parameters over `store`'s parameters, in the groups `--no-decay-norm-bias`
/// and `--lr-mult` ask for (`classifier` = the model's head as the registry names it).
pub fn optimizer_for(
    run: &crate::config::Run,
    store: &crate::nn::VarStore,
    classifier: &str,
) -> Result<super::Optimizer> {
    let mut c = run.optimizer.clone();
    if run.config.optimizer_impl.is_none() {
        let device = store.parameters().first().map_or(tch::Device::Cpu, |p| p.device());
        c.implementation = super::OptimizerImpl::default_for(device, c.kind);
    }
    let spec = &run.groups;
    if spec.is_plain() {
        return super::Optimizer::new(c, store.parameters());
    }
    let named = store.named_parameters();
    let groups = build(&named, spec, c.hyper.lr, c.hyper.weight_decay, Some(classifier))?;
    if run.config.cuda_graph && groups.len() > 1 {
        return Err(Error::config(
            "⟨cuda_graph⟩ captures one learning rate: it does not combine with ⟨lr_mult⟩ or ⟨no_decay_norm_bias⟩ yet",
        ));
    }
    super::Optimizer::with_groups(c, named.into_iter().map(|(_, t)| t).collect(), groups)
}

/// Up to a dozen module prefixes of the parameter names (one and two levels), for an error message.
fn real_prefixes(named: &[(String, Tensor)], classifier: Option<&str>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for (n, _) in named {
        let parts: Vec<&str> = n.split('.').collect();
        for depth in 1..=2.min(parts.len().saturating_sub(1)) {
            let p = parts[..depth].join(".");
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
    }
    let total = seen.len();
    seen.truncate(12);
    let mut text = seen.join(", ");
    if total > 12 {
        text.push_str(", …");
    }
    if let Some(c) = classifier.filter(|c| !c.is_empty()) {
        text.push_str(&format!(" (classifier = {c})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> Vec<(String, Tensor)> {
        [
            ("features.0.weight", vec![6, 1, 5, 5]),
            ("features.0.bias", vec![6]),
            ("features.1.weight", vec![6]),
            ("fc.weight", vec![3, 6]),
            ("fc.bias", vec![3]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), Tensor::zeros(s.as_slice(), (tch::Kind::Float, tch::Device::Cpu))))
        .collect()
    }

    #[test]
    fn groups_by_multiplier_and_decay_in_first_appearance_order() {
        let spec =
            GroupSpec { no_decay_norm_bias: true, lr_mult: parse_lr_mult("classifier=10,features.0=2").unwrap() };
        let g = build(&named(), &spec, 0.1, 0.01, Some("fc")).unwrap();
        let summary: Vec<(Vec<usize>, f64, f64)> =
            g.iter().map(|g| (g.params.clone(), g.lr_mult, g.weight_decay)).collect();
        assert_eq!(
            summary,
            vec![
                (vec![0], 2.0, 0.01),
                (vec![1], 2.0, 0.0),
                (vec![2], 1.0, 0.0),
                (vec![3], 10.0, 0.01),
                (vec![4], 10.0, 0.0)
            ]
        );
        assert_eq!(g[3].lr, 0.1 * 10.0);
    }

    #[test]
    fn plain_spec_is_one_group_and_unknown_prefix_names_real_ones() {
        let g = build(&named(), &GroupSpec::default(), 0.1, 0.01, None).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].params, vec![0, 1, 2, 3, 4]);
        let spec = GroupSpec { no_decay_norm_bias: false, lr_mult: parse_lr_mult("layer4=2").unwrap() };
        let e = build(&named(), &spec, 0.1, 0.0, Some("fc")).unwrap_err().to_string();
        assert!(e.contains("'layer4' matches no parameter") && e.contains("features.0") && e.contains("fc"), "{e}");
        // `feat` is not a module prefix of `features.0.weight`.
        let spec = GroupSpec { no_decay_norm_bias: false, lr_mult: parse_lr_mult("feat=2").unwrap() };
        assert!(build(&named(), &spec, 0.1, 0.0, None).is_err());
        for bad in ["x", "a=-1", "a=nan", "=2", "a=2,a=3", ""] {
            assert!(parse_lr_mult(bad).is_err(), "{bad}");
        }
    }
}
