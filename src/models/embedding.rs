//! Entity embeddings, the seed's book project: two embedding tables, `entity` and `link`, whose vectors for an
//! (entity, link) pair are joined by a dot product (on normalised vectors by default: the cosine, Keras'
//! `Dot(normalize=True)`), then `classifier`, a Dense(1) as the seed adds for the classification task.
//!
//! Trained on pairs from `data::pairs` with sampled negatives: as classification (label 1/0, sigmoid and binary
//! cross-entropy) or as regression (target ±1, MSE; `head=false` drops the Dense and regresses the dot product
//! itself, exactly the seed's regression model). What is wanted afterwards is the `entity.weight` table:
//! [`nearest`] ranks entities by cosine similarity, as `tchzoo similar` prints them.
//!
//! Inputs: [N, 2] int64 (entity index, link index). Options: `entities`, `links` (table sizes, 1000 by default;
//! at least the data's counts, or training refuses the first index beyond; rows beyond the data's stay untrained
//! and `tchzoo similar` leaves them out), `dim` (50, the seed's), `cosine` (true), `head` (true), `init` (uniform
//! ±0.05 as Keras).
use tch::{Kind, Tensor};

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::embedding::{check_indices, Embedding, EmbeddingInit};
use crate::nn::{Linear, Module, Path};

#[derive(Debug, Clone, PartialEq)]
pub struct EntityEmbeddingConfig {
    pub entities: i64,
    pub links: i64,
    pub dim: i64,
    pub cosine: bool,
    pub head: bool,
    pub init: EmbeddingInit,
}

impl EntityEmbeddingConfig {
    pub fn from_model_config(c: &ModelConfig) -> Result<Self> {
        let cfg = EntityEmbeddingConfig {
            entities: c.opt("entities", 1000)?,
            links: c.opt("links", 1000)?,
            dim: c.opt("dim", 50)?,
            cosine: c.opt("cosine", true)?,
            head: c.opt("head", true)?,
            init: match c.options.get("init") {
                Some(v) => v.parse()?,
                None => EmbeddingInit::Uniform,
            },
        };
        if cfg.entities < 1 || cfg.links < 1 || cfg.dim < 1 {
            return Err(Error::config(format!(
                "entity_embedding: entities={}, links={} and dim={} must be ≥ 1",
                cfg.entities, cfg.links, cfg.dim
            )));
        }
        if c.input_shape != [2] {
            return Err(Error::config(format!(
                "entity_embedding takes (entity, link) index pairs, input shape [2]; got {:?}",
                c.input_shape
            )));
        }
        if !cfg.head && c.num_outputs != 1 {
            return Err(Error::config(format!(
                "entity_embedding with head=false outputs the dot product itself, one value; {} outputs asked",
                c.num_outputs
            )));
        }
        Ok(cfg)
    }
}

#[derive(Debug)]
pub struct EntityEmbedding {
    pub entity: Embedding,
    pub link: Embedding,
    classifier: Option<Linear>,
    path: Path,
    cosine: bool,
    num_outputs: i64,
    /// The tables' names, for the summary's trace on the unchecked path.
    names: [String; 2],
}

impl EntityEmbedding {
    pub fn new(p: &Path, c: &EntityEmbeddingConfig, num_outputs: i64) -> Self {
        let entity = Embedding::new(&p.sub("entity"), c.entities, c.dim, c.init, false);
        let link = Embedding::new(&p.sub("link"), c.links, c.dim, c.init, false);
        let classifier = c.head.then(|| Linear::new(&p.sub("classifier"), 1, num_outputs));
        let names = [p.sub("entity").name().to_string(), p.sub("link").name().to_string()];
        EntityEmbedding { entity, link, classifier, path: p.clone(), cosine: c.cosine, num_outputs, names }
    }

    /// Both lookups without checking the indices on the host first: on the CPU, int64 [N, 2], the gather kernel
    /// checks the range itself (as PyTorch's `nn.Embedding`), so a forward pass costs no host read; `None` on
    /// another device (a device-side assert would end the process) or when the kernel refuses an index, and the
    /// caller takes the checked path and its message. `fit` has checked the whole dataset before its first step.
    fn unchecked_lookup(&self, xs: &Tensor) -> Option<(Tensor, Tensor)> {
        let size = xs.size();
        if xs.device() != tch::Device::Cpu || xs.kind() != Kind::Int64 || size.len() != 2 || size[1] != 2 {
            return None;
        }
        let a = Tensor::f_embedding(&self.entity.weight, &xs.select(1, 0), -1, false, false).ok()?;
        let b = Tensor::f_embedding(&self.link.weight, &xs.select(1, 1), -1, false, false).ok()?;
        for (name, (ys, table)) in self.names.iter().zip([(&a, &self.entity), (&b, &self.link)]) {
            crate::nn::trace::record(name, "Embedding", ys, table.weight.numel() as i64);
        }
        Some((a, b))
    }

    fn columns(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let size = xs.size();
        if size.len() != 2 || size[1] != 2 {
            return Err(Error::invalid(format!(
                "entity_embedding takes [N, 2] (entity, link) index pairs, got {size:?}"
            )));
        }
        let e =
            check_indices(&xs.select(1, 0), self.entity.input_dim, "entity index (column 0, model option entities)")?;
        let l = check_indices(&xs.select(1, 1), self.link.input_dim, "link index (column 1, model option links)")?;
        Ok((e, l))
    }
}

forward_head_of_features!(EntityEmbedding);

impl Model for EntityEmbedding {
    /// The similarity of each pair: [N, 1].
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let (mut a, mut b) = self.unchecked_lookup(xs).unwrap_or_else(|| {
            let (e, l) = self.columns(xs).unwrap_or_else(|err| panic!("{err}"));
            (self.entity.forward_t(&e, train), self.link.forward_t(&l, train))
        });
        if self.cosine {
            a = normalize(&a);
            b = normalize(&b);
        }
        (a * b).sum_dim_intlist(-1, true, Kind::Float)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        match &self.classifier {
            Some(c) => c.forward_t(features, train),
            None => features.shallow_clone(),
        }
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        if self.classifier.is_none() {
            return;
        }
        self.classifier = self.path.sub("classifier").replace(|p| Some(Linear::new(p, 1, num_outputs)));
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
    fn index_inputs(&self) -> Option<i64> {
        Some(self.entity.input_dim.min(self.link.input_dim))
    }
    fn check_input(&self, xs: &Tensor) -> Result<()> {
        self.columns(xs).map(|_| ())
    }
}

/// Rows scaled to unit length (a zero row stays zero), as Keras' `l2_normalize` with epsilon 1e-12.
pub fn normalize(xs: &Tensor) -> Tensor {
    let norm = xs.square().sum_dim_intlist(-1, true, Kind::Float).clamp_min(1e-12).sqrt();
    xs / norm
}

/// The `k` rows of `table` [N, D] most similar to row `query` by cosine similarity, best first (the query itself
/// first, at 1.0), or the `k` least similar with `least`. Returns (row, similarity).
pub fn nearest(table: &Tensor, query: i64, k: usize, least: bool) -> Result<Vec<(usize, f64)>> {
    let n = table.size().first().copied().unwrap_or(0);
    if table.dim() != 2 || !(0..n).contains(&query) {
        return Err(Error::invalid(format!("nearest: row {query} of a table of shape {:?}", table.size())));
    }
    let unit = normalize(&table.to_kind(Kind::Float).to_device(tch::Device::Cpu));
    let sims = unit.matmul(&unit.get(query).unsqueeze(-1)).squeeze_dim(-1);
    let sims: Vec<f64> = Vec::<f64>::try_from(sims.to_kind(Kind::Double))?;
    let mut order: Vec<usize> = (0..sims.len()).collect();
    order.sort_by(|&a, &b| {
        let o = sims[b].total_cmp(&sims[a]);
        (if least { o.reverse() } else { o }).then(a.cmp(&b))
    });
    Ok(order.into_iter().take(k).map(|i| (i, sims[i])).collect())
}

const OPTIONS: &[&str] = &["entities", "links", "dim", "cosine", "head", "init"];

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "entity_embedding",
        family: "embedding",
        description: "entity and link embeddings joined by a dot product (cosine) → Dense(1): the seed's book model \
                      (options: entities, links, dim=50, cosine, head, init)",
        default_input: &[2],
        default_classes: 1,
        first_layer: "entity",
        classifier: "classifier",
        options: OPTIONS,
        build: |p, c| {
            Ok(Box::new(EntityEmbedding::new(p, &EntityEmbeddingConfig::from_model_config(c)?, c.num_outputs)))
        },
    }]
}
