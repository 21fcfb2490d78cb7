//! Recurrent models over `nn::lstm` (LSTM or GRU, PyTorch's names):
//!
//! - `lstm` / `gru`, the seed's forecaster: `LSTM(units)` over windows of shape (n_seq, n_features) → the last
//!   hidden state → `Dense(num_outputs)`. Trained with MSE on `n_pred_seq · n_features` targets it is the seed's
//!   `LSTM → Dense(n_pred_seq * n_features) → Reshape((n_pred_seq, n_features))` (the outputs stay flat here, as
//!   the trainer's targets are; [`Forecaster::reshape`] gives the seed's shape); with a classification loss it is
//!   a sequence classifier. Inputs of shape (n_seq) are one feature per step.
//! - `lstm_text` / `gru_text`, the text classifier: `Embedding(vocab + 2, embed, mask_zero)` → LSTM → Dense over
//!   token indices (0 = padding, 1 = out of vocabulary, as `data::sequences` writes them).
//!
//! Names: `embedding.weight`, `lstm.weight_ih_l0` … (`gru.` for a GRU), `classifier.weight`, `classifier.bias`.
//! Options: `units`, `layers`, `bidirectional`, `dropout` (between recurrent layers), `stateful` (forecaster: the
//! final state of a batch starts the next one, until `reset_states`); text: `vocab`, `embed`, `mask_zero`, `init`.
//! As in Keras, `stateful` is for batches that continue each other: train it with `--no-shuffle` and a batch
//! size that divides the data, and call `reset_states` between unrelated sequences.
use std::cell::RefCell;

use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::embedding::{Embedding, EmbeddingInit};
use crate::nn::lstm::{CellKind, Rnn, RnnConfig, RnnState};
use crate::nn::{ClassifierHead, Module, Path};

/// The recurrent part of both models.
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentConfig {
    pub cell: CellKind,
    pub units: i64,
    pub layers: i64,
    pub bidirectional: bool,
    pub dropout: f64,
}

impl RecurrentConfig {
    fn from_model_config(c: &ModelConfig, cell: CellKind, default_units: i64) -> Result<Self> {
        let rc = RecurrentConfig {
            cell,
            units: c.opt("units", default_units)?,
            layers: c.opt("layers", 1)?,
            bidirectional: c.opt("bidirectional", false)?,
            dropout: c.opt("dropout", 0.0)?,
        };
        if rc.units < 1 || rc.layers < 1 {
            return Err(Error::config(format!("units={} and layers={} must be ≥ 1", rc.units, rc.layers)));
        }
        Ok(rc)
    }
    fn rnn_config(&self, input_size: i64) -> RnnConfig {
        RnnConfig {
            num_layers: self.layers,
            batch_first: true,
            dropout: self.dropout,
            bidirectional: self.bidirectional,
            ..RnnConfig::new(input_size, self.units)
        }
    }
}

/// Keras' `stateful=True`: the final state of one batch is the initial state of the next (cut from the graph),
/// until `reset_states`. A batch of another size than the carried state starts from zeros.
#[derive(Debug, Default)]
struct Carry {
    on: bool,
    state: RefCell<Option<RnnState>>,
}

impl Carry {
    fn initial(&self, batch: i64) -> Option<RnnState> {
        if !self.on {
            return None;
        }
        self.state.borrow().as_ref().filter(|s| s.batch_size() == batch).map(RnnState::detach)
    }
    fn keep(&self, state: &RnnState) {
        if self.on {
            *self.state.borrow_mut() = Some(state.detach());
        }
    }
    fn reset(&self) {
        *self.state.borrow_mut() = None;
    }
}

/// The seed's forecaster: recurrent layer(s) → last hidden state → Dense.
#[derive(Debug)]
pub struct Forecaster {
    rnn: Rnn,
    classifier: ClassifierHead,
    n_seq: i64,
    n_features: i64,
    carry: Carry,
}

impl Forecaster {
    pub fn new(p: &Path, input_shape: &[i64], num_outputs: i64, rc: &RecurrentConfig, stateful: bool) -> Result<Self> {
        let (n_seq, n_features) = match *input_shape {
            [t] => (t, 1),
            [t, f] => (t, f),
            _ => {
                return Err(Error::config(format!(
                    "the recurrent models take windows of shape (n_seq, n_features) or (n_seq); got {input_shape:?}"
                )))
            }
        };
        let rnn = Rnn::new(&p.sub(rc.cell.attr()), rc.cell, &rc.rnn_config(n_features))?;
        let classifier = ClassifierHead::linear(&p.sub("classifier"), rnn.output_size(), num_outputs);
        Ok(Forecaster { rnn, classifier, n_seq, n_features, carry: Carry { on: stateful, ..Carry::default() } })
    }

    /// The seed's `Reshape((n_pred_seq, n_features))` of flat outputs [B, n_pred_seq · n_features].
    pub fn reshape(&self, outputs: &Tensor) -> Result<Tensor> {
        let k = outputs.size().last().copied().unwrap_or(0);
        if k % self.n_features != 0 {
            return Err(Error::invalid(format!("{k} outputs do not split into steps of {} features", self.n_features)));
        }
        Ok(outputs.reshape([-1, k / self.n_features, self.n_features]))
    }

    pub fn rnn(&self) -> &Rnn {
        &self.rnn
    }
    /// The window length and features per step the model was built for.
    pub fn window(&self) -> (i64, i64) {
        (self.n_seq, self.n_features)
    }
}

forward_head_of_features!(Forecaster);

impl Model for Forecaster {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = if xs.dim() == 2 && self.n_features == 1 { xs.unsqueeze(-1) } else { xs.shallow_clone() };
        let xs = xs.to_kind(tch::Kind::Float);
        let initial = self.carry.initial(xs.size()[0]);
        let (_, state) = self.rnn.forward_state(&xs, initial.as_ref(), None, train);
        self.carry.keep(&state);
        self.rnn.last_hidden(&state)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(features, train)
    }
    classifier_head_methods!(classifier);
    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let size = xs.size();
        let ok = size.len() == 3 && size[2] == self.n_features || size.len() == 2 && self.n_features == 1;
        if !ok {
            return Err(Error::invalid(format!(
                "the model takes windows of shape [N, n_seq, {}], got {size:?}",
                self.n_features
            )));
        }
        Ok(())
    }
    fn reset_states(&self) {
        self.carry.reset();
    }
}

/// Embedding → recurrent layer(s) → last hidden state → Dense, over token indices.
#[derive(Debug)]
pub struct TextClassifier {
    embedding: Embedding,
    rnn: Rnn,
    classifier: ClassifierHead,
}

/// The text classifier's options.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Words in the vocabulary; the embedding has `vocab + 2` rows (0 = padding, 1 = out of vocabulary).
    pub vocab: i64,
    pub embed: i64,
    pub mask_zero: bool,
    pub init: EmbeddingInit,
    pub recurrent: RecurrentConfig,
}

impl TextConfig {
    pub fn from_model_config(c: &ModelConfig, cell: CellKind) -> Result<Self> {
        let tc = TextConfig {
            vocab: c.opt("vocab", 10_000)?,
            embed: c.opt("embed", 64)?,
            mask_zero: c.opt("mask_zero", true)?,
            init: match c.options.get("init") {
                Some(v) => v.parse()?,
                None => EmbeddingInit::Uniform,
            },
            recurrent: RecurrentConfig::from_model_config(c, cell, 64)?,
        };
        if tc.vocab < 1 || tc.embed < 1 {
            return Err(Error::config(format!("vocab={} and embed={} must be ≥ 1", tc.vocab, tc.embed)));
        }
        Ok(tc)
    }
    pub fn input_dim(&self) -> i64 {
        self.vocab + 2
    }
}

impl TextClassifier {
    pub fn new(p: &Path, c: &TextConfig, num_outputs: i64) -> Result<Self> {
        let embedding = Embedding::new(&p.sub("embedding"), c.input_dim(), c.embed, c.init, c.mask_zero);
        let rc = &c.recurrent;
        let rnn = Rnn::new(&p.sub(rc.cell.attr()), rc.cell, &rc.rnn_config(c.embed))?;
        let classifier = ClassifierHead::linear(&p.sub("classifier"), rnn.output_size(), num_outputs);
        Ok(TextClassifier { embedding, rnn, classifier })
    }
    pub fn embedding(&self) -> &Embedding {
        &self.embedding
    }
}

forward_head_of_features!(TextClassifier);

impl Model for TextClassifier {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let idx = self.embedding.indices(xs).unwrap_or_else(|e| panic!("{e}"));
        let emb = self.embedding.forward_t(&idx, train);
        let mask = self.embedding.compute_mask(&idx);
        let (_, state) = self.rnn.forward_state(&emb, None, mask.as_ref(), train);
        self.rnn.last_hidden(&state)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(features, train)
    }
    classifier_head_methods!(classifier);
    fn index_inputs(&self) -> Option<i64> {
        Some(self.embedding.input_dim)
    }
    fn check_input(&self, xs: &Tensor) -> Result<()> {
        if xs.dim() != 2 {
            return Err(Error::invalid(format!(
                "the model takes token indices of shape [N, length], got {:?}",
                xs.size()
            )));
        }
        self.embedding
            .indices(xs)
            .map(|_| ())
            .map_err(|e| Error::invalid(format!("{e:#} (model option vocab = input_dim − 2)")))
    }
}

const SEQ_OPTIONS: &[&str] = &["units", "layers", "bidirectional", "dropout", "stateful"];
const TEXT_OPTIONS: &[&str] = &["vocab", "embed", "mask_zero", "init", "units", "layers", "bidirectional", "dropout"];

fn forecaster(p: &Path, c: &ModelConfig, cell: CellKind) -> Result<Box<dyn Model>> {
    let rc = RecurrentConfig::from_model_config(c, cell, 50)?;
    Ok(Box::new(Forecaster::new(p, &c.input_shape, c.num_outputs, &rc, c.opt("stateful", false)?)?))
}

fn text(p: &Path, c: &ModelConfig, cell: CellKind) -> Result<Box<dyn Model>> {
    if c.input_shape.len() != 1 {
        return Err(Error::config(format!(
            "the text classifier takes token sequences of shape (length); got {:?}",
            c.input_shape
        )));
    }
    Ok(Box::new(TextClassifier::new(p, &TextConfig::from_model_config(c, cell)?, c.num_outputs)?))
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "lstm",
            family: "lstm",
            description: "LSTM(units) over (n_seq, n_features) windows → Dense: the seed's forecaster \
                          (options: units=50, layers, bidirectional, dropout, stateful)",
            default_input: &[12, 1],
            default_classes: 1,
            first_layer: "lstm",
            classifier: "classifier",
            options: SEQ_OPTIONS,
            build: |p, c| forecaster(p, c, CellKind::Lstm),
        },
        ModelEntry {
            name: "gru",
            family: "lstm",
            description: "GRU(units) over (n_seq, n_features) windows → Dense (options as lstm)",
            default_input: &[12, 1],
            default_classes: 1,
            first_layer: "gru",
            classifier: "classifier",
            options: SEQ_OPTIONS,
            build: |p, c| forecaster(p, c, CellKind::Gru),
        },
        ModelEntry {
            name: "lstm_text",
            family: "lstm",
            description: "Embedding(vocab+2, embed, mask_zero) → LSTM → Dense over token indices \
                          (options: vocab=10000, embed=64, units=64, layers, bidirectional, dropout, mask_zero, init)",
            default_input: &[20],
            default_classes: 2,
            first_layer: "embedding",
            classifier: "classifier",
            options: TEXT_OPTIONS,
            build: |p, c| text(p, c, CellKind::Lstm),
        },
        ModelEntry {
            name: "gru_text",
            family: "lstm",
            description: "Embedding(vocab+2, embed, mask_zero) → GRU → Dense over token indices \
                          (options as lstm_text)",
            default_input: &[20],
            default_classes: 2,
            first_layer: "embedding",
            classifier: "classifier",
            options: TEXT_OPTIONS,
            build: |p, c| text(p, c, CellKind::Gru),
        },
    ]
}
