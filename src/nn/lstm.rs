//! `torch.nn.LSTM` and `torch.nn.GRU`: stacked, bidirectional, dropout between layers, batch-first or not, with
//! PyTorch's parameter names, shapes, registration order and initialisation, so a state dict moves either way.
//!
//! Per layer `l` and direction (`""`, then `"_reverse"`): `weight_ih_l{l}` [G·H, in], `weight_hh_l{l}` [G·H, H],
//! `bias_ih_l{l}` [G·H], `bias_hh_l{l}` [G·H], with G = 4 gates for LSTM in the order i, f, g, o and G = 3 for GRU
//! in the order r, z, n. Every parameter starts U(-1/√H, 1/√H), as PyTorch's `reset_parameters`.
//!
//! Masks are Keras' (`mask_zero` reaching the LSTM): a masked step leaves the state as it was and outputs zeros.
//! For right-padded batches this is exactly PyTorch's `pack_padded_sequence` (outputs zero past each length, the
//! final state taken at the last real step, the reverse direction starting there); for left padding (Keras'
//! `pad_sequences` default) it equals running each sequence without its padding. Without a mask the fused libtorch
//! kernel runs (cuDNN on CUDA); with one, a step loop.
use tch::{Kind, Tensor};

use super::{trace, Module, Path};
use crate::error::{Error, Result};

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Lstm,
    Gru,
}

impl CellKind {
    /// Gates stacked in each weight: 4 (i, f, g, o) or 3 (r, z, n).
    pub fn gates(&self) -> i64 {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
    /// PyTorch's class name and the attribute name models give the layer.
    pub fn torch_name(&self) -> &'static str {
        match self {
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
        }
    }
    pub fn attr(&self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }
}

impl std::str::FromStr for CellKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lstm" => Ok(CellKind::Lstm),
            "gru" => Ok(CellKind::Gru),
            other => Err(Error::config(format!("unknown recurrent cell '{other}'; choose lstm or gru"))),
        }
    }
}

/// `torch.nn.LSTM`'s arguments (PyTorch's defaults: one layer, biases, time-major, no dropout, one direction).
#[derive(Debug, Clone, PartialEq)]
pub struct RnnConfig {
    pub input_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub bias: bool,
    /// Inputs and outputs are [batch, time, features] (Keras' layout) instead of [time, batch, features].
    pub batch_first: bool,
    /// Dropout on the outputs of every layer but the last, in training.
    pub dropout: f64,
    pub bidirectional: bool,
}

impl RnnConfig {
    pub fn new(input_size: i64, hidden_size: i64) -> Self {
        RnnConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
        }
    }
    pub fn directions(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    pub fn validate(&self) -> Result<()> {
        if self.input_size < 1 || self.hidden_size < 1 || self.num_layers < 1 {
            return Err(Error::config(format!(
                "recurrent layer sizes must be ≥ 1, got input_size {}, hidden_size {}, num_layers {}",
                self.input_size, self.hidden_size, self.num_layers
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(format!("recurrent dropout {} must be in [0, 1)", self.dropout)));
        }
        Ok(())
    }
}

/// The recurrent state: `h` [layers·directions, batch, hidden], and `c` (same shape) for an LSTM.
#[derive(Debug)]
pub struct RnnState {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

impl RnnState {
    /// A copy cut from the graph (what a stateful model carries to the next batch).
    pub fn detach(&self) -> RnnState {
        RnnState { h: self.h.detach(), c: self.c.as_ref().map(Tensor::detach) }
    }
    pub fn batch_size(&self) -> i64 {
        self.h.size()[1]
    }
}

/// An LSTM or GRU stack.
#[derive(Debug)]
pub struct Rnn {
    name: String,
    pub kind: CellKind,
    pub config: RnnConfig,
    /// Per layer, then per direction: [w_ih, w_hh] or [w_ih, w_hh, b_ih, b_hh].
    weights: Vec<Vec<Tensor>>,
}

impl Rnn {
    pub fn new(p: &Path, kind: CellKind, config: &RnnConfig) -> Result<Self> {
        config.validate()?;
        let (h, g, dirs) = (config.hidden_size, kind.gates() * config.hidden_size, config.directions());
        let bound = 1.0 / (h as f64).sqrt();
        let init = |shape: &[i64]| Tensor::empty(shape, (Kind::Float, tch::Device::Cpu)).uniform_(-bound, bound);
        let mut weights = Vec::new();
        for layer in 0..config.num_layers {
            let layer_in = if layer == 0 { config.input_size } else { h * dirs };
            for dir in 0..dirs {
                let sfx = if dir == 1 { "_reverse" } else { "" };
                let mut w = vec![
                    p.param(&format!("weight_ih_l{layer}{sfx}"), init(&[g, layer_in])),
                    p.param(&format!("weight_hh_l{layer}{sfx}"), init(&[g, h])),
                ];
                if config.bias {
                    w.push(p.param(&format!("bias_ih_l{layer}{sfx}"), init(&[g])));
                    w.push(p.param(&format!("bias_hh_l{layer}{sfx}"), init(&[g])));
                }
                weights.push(w);
            }
        }
        Ok(Rnn { name: p.name().to_string(), kind, config: config.clone(), weights })
    }

    /// Width of the outputs: hidden_size × directions.
    pub fn output_size(&self) -> i64 {
        self.config.hidden_size * self.config.directions()
    }

    fn n_params(&self) -> i64 {
        self.weights.iter().flatten().map(|t| t.numel() as i64).sum()
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: i64, device: tch::Device) -> RnnState {
        let shape = [self.config.num_layers * self.config.directions(), batch, self.config.hidden_size];
        let h = Tensor::zeros(shape, (Kind::Float, device));
        let c = (self.kind == CellKind::Lstm).then(|| Tensor::zeros(shape, (Kind::Float, device)));
        RnnState { h, c }
    }

    /// Checks the input and state shapes, so a mistake is one line rather than a libtorch trace.
    pub fn check(&self, xs: &Tensor, state: Option<&RnnState>, mask: Option<&Tensor>) -> Result<()> {
        let size = xs.size();
        let what = if self.name.is_empty() {
            self.kind.torch_name().to_string()
        } else {
            format!("{} '{}'", self.kind.torch_name(), self.name)
        };
        let layout = if self.config.batch_first { "[batch, time, features]" } else { "[time, batch, features]" };
        if size.len() != 3 || size[2] != self.config.input_size {
            return Err(Error::invalid(format!(
                "{what}: input of shape {size:?}; expected {layout} with {} features",
                self.config.input_size
            )));
        }
        let (batch, steps) = if self.config.batch_first { (size[0], size[1]) } else { (size[1], size[0]) };
        if let Some(s) = state {
            let want = vec![self.config.num_layers * self.config.directions(), batch, self.config.hidden_size];
            if s.h.size() != want || s.c.as_ref().is_some_and(|c| c.size() != want) {
                return Err(Error::invalid(format!(
                    "{what}: initial state of shape {:?}; expected {want:?} (layers·directions, batch, hidden)",
                    s.h.size()
                )));
            }
            if (self.kind == CellKind::Lstm) != s.c.is_some() {
                return Err(Error::invalid(format!("{what}: an LSTM state needs h and c, a GRU state h only")));
            }
        }
        if let Some(m) = mask {
            if m.size() != [batch, steps] {
                return Err(Error::invalid(format!(
                    "{what}: mask of shape {:?}; expected [batch, time] = [{batch}, {steps}]",
                    m.size()
                )));
            }
        }
        Ok(())
    }

    /// Runs the stack: `(outputs, final state)`. Outputs are [B, T, H·dirs] (batch-first) or [T, B, H·dirs];
    /// `state` defaults to zeros; `mask` [B, T] (true = a real step) skips the masked steps.
    pub fn f_forward_state(
        &self,
        xs: &Tensor,
        state: Option<&RnnState>,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, RnnState)> {
        self.check(xs, state, mask)?;
        let out = match mask {
            None => self.fused(xs, state, train)?,
            Some(m) => self.stepwise(xs, state, m, train)?,
        };
        trace::record(&self.name, self.kind.torch_name(), &out.0, self.n_params());
        Ok(out)
    }

    /// As [`Rnn::f_forward_state`], panicking on a shape error.
    pub fn forward_state(
        &self,
        xs: &Tensor,
        state: Option<&RnnState>,
        mask: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, RnnState) {
        self.f_forward_state(xs, state, mask, train).unwrap_or_else(|e| panic!("{e}"))
    }

    fn flat_weights(&self) -> Vec<&Tensor> {
        self.weights.iter().flatten().collect()
    }

    fn fused(&self, xs: &Tensor, state: Option<&RnnState>, train: bool) -> Result<(Tensor, RnnState)> {
        let c = &self.config;
        let batch = if c.batch_first { xs.size()[0] } else { xs.size()[1] };
        let zero;
        let state = match state {
            Some(s) => s,
            None => {
                zero = self.zero_state(batch, xs.device());
                &zero
            }
        };
        let params = self.flat_weights();
        let dirs = c.bidirectional;
        Ok(match self.kind {
            CellKind::Lstm => {
                let cell = state.c.as_ref().ok_or_else(|| Error::invalid("an LSTM state needs c"))?;
                let (out, h, cn) =
                    xs.f_lstm(&[&state.h, cell], &params, c.bias, c.num_layers, c.dropout, train, dirs, c.batch_first)?;
                (out, RnnState { h, c: Some(cn) })
            }
            CellKind::Gru => {
                let (out, h) =
                    xs.f_gru(&state.h, &params, c.bias, c.num_layers, c.dropout, train, dirs, c.batch_first)?;
                (out, RnnState { h, c: None })
            }
        })
    }

    fn stepwise(
        &self,
        xs: &Tensor,
        state: Option<&RnnState>,
        mask: &Tensor,
        train: bool,
    ) -> Result<(Tensor, RnnState)> {
        let c = &self.config;
        let x = if c.batch_first { xs.shallow_clone() } else { xs.transpose(0, 1) };
        let (batch, steps) = (x.size()[0], x.size()[1]);
        let state = match state {
            Some(s) => RnnState { h: s.h.shallow_clone(), c: s.c.as_ref().map(Tensor::shallow_clone) },
            None => self.zero_state(batch, xs.device()),
        };
        // [B, T, 1] so that it broadcasts over the hidden units.
        let keep = mask.to_device(xs.device()).to_kind(Kind::Bool).unsqueeze(-1);
        let keep_f = keep.to_kind(x.kind());
        let dirs = c.directions();
        let (mut h_n, mut c_n) = (vec![], vec![]);
        let mut input = x;
        for layer in 0..c.num_layers {
            let mut outputs = vec![];
            for dir in 0..dirs {
                let k = (layer * dirs + dir) as usize;
                let w = &self.weights[k];
                let (b_ih, b_hh) = (w.get(2), w.get(3));
                // The input projection of every step at once; only the recurrent part is sequential.
                let gi_all = input.f_linear(&w[0], b_ih)?;
                let mut h = state.h.get(k as i64);
                let mut cell = state.c.as_ref().map(|t| t.get(k as i64));
                let mut outs: Vec<Tensor> = (0..steps).map(|_| Tensor::new()).collect();
                let order: Vec<i64> = if dir == 0 { (0..steps).collect() } else { (0..steps).rev().collect() };
                for t in order {
                    let gi = gi_all.select(1, t);
                    let gh = h.f_linear(&w[1], b_hh)?;
                    let m = keep.select(1, t);
                    let h_new = match self.kind {
                        CellKind::Lstm => {
                            let g = gi + gh;
                            let gates = g.chunk(4, -1);
                            let (i, f, gg, o) =
                                (gates[0].sigmoid(), gates[1].sigmoid(), gates[2].tanh(), gates[3].sigmoid());
                            let c_prev = cell.as_ref().ok_or_else(|| Error::invalid("an LSTM state needs c"))?;
                            let c_new = f * c_prev + i * gg;
                            let h_new = o * c_new.tanh();
                            cell = Some(c_new.where_self(&m, c_prev));
                            h_new
                        }
                        CellKind::Gru => {
                            let a = gi.chunk(3, -1);
                            let b = gh.chunk(3, -1);
                            let r = (&a[0] + &b[0]).sigmoid();
                            let z = (&a[1] + &b[1]).sigmoid();
                            let n = (&a[2] + r * &b[2]).tanh();
                            (1.0 - &z) * n + z * &h
                        }
                    };
                    outs[t as usize] = &h_new * keep_f.select(1, t);
                    h = h_new.where_self(&m, &h);
                }
                outputs.push(Tensor::stack(&outs, 1));
                h_n.push(h);
                if let Some(cell) = cell {
                    c_n.push(cell);
                }
            }
            let out = Tensor::cat(&outputs, -1);
            input =
                if train && c.dropout > 0.0 && layer + 1 < c.num_layers { out.dropout(c.dropout, true) } else { out };
        }
        let out = if c.batch_first { input } else { input.transpose(0, 1) };
        let h = Tensor::stack(&h_n, 0);
        let cell = (!c_n.is_empty()).then(|| Tensor::stack(&c_n, 0));
        Ok((out, RnnState { h, c: cell }))
    }

    /// The final hidden state of the last layer, directions concatenated: [B, H·dirs] (what Keras' `LSTM(units)`
    /// returns without `return_sequences`).
    pub fn last_hidden(&self, state: &RnnState) -> Tensor {
        let dirs = self.config.directions();
        let n = state.h.size()[0];
        let last = state.h.narrow(0, n - dirs, dirs);
        Tensor::cat(&last.unbind(0), -1)
    }
}

impl Module for Rnn {
    /// The outputs of every step, from a zero state.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_state(xs, None, None, train).0
    }
}
