//! Models written as the notes' text diagrams:
//! `CONV(32,3) => BN => RELU => POOL(2) => DROPOUT(0.25) => FC(128) => PRELU => FC(10) => SOFTMAX`.
//!
//! A diagram is a list of layers joined by `=>`, case-insensitive, with sizes in parentheses; shapes come from the
//! data, so only output sizes are written:
//!
//! | token | layer (PyTorch) |
//! |---|---|
//! | `INPUT` | nothing: may open the diagram |
//! | `CONV(c_out, k[, stride[, padding]])`, also `stride=`, `padding=` (a number or `same`) | `nn.Conv2d` |
//! | `BN` | `nn.BatchNorm2d` on images, `nn.BatchNorm1d` on vectors |
//! | `POOL(k[, stride][, max\|avg])`, `MAXPOOL(k)`, `AVGPOOL(k)`; stride defaults to k, kind to max | `nn.MaxPool2d`/`nn.AvgPool2d` |
//! | `FLATTEN`; implied before the first `FC` when the data is still an image | `nn.Flatten` |
//! | `FC(n)`; the last `FC` may omit `n`, which then comes from the data | `nn.Linear` |
//! | `DROPOUT(p)` or `DO(p)`, p = 0.5 when omitted | `nn.Dropout` |
//! | `PRELU` (one shared slope), `PRELU(C)` (one per channel), `PRELU(n)` | `nn.PReLU` |
//! | `ACT`, `ACT(name)`: the model's `activation` option (ReLU by default) or the named one | |
//! | any activation name: `RELU`, `TANH`, `SIGMOID`, `STEP`, `SWISH`, … (see [`Activation::NAMES`]) | `nn.ReLU`, … |
//!
//! Parameter names follow `nn.Sequential`: every layer, the implied `Flatten` and parameterless ones included, takes
//! the next index (`0.weight`, `1.running_mean`, …), so the state dict loads into the equivalent Python
//! `nn.Sequential` (shown by `tests/diagram.rs` with `scripts/fixtures/diagram_parity.py`).
//!
//! **The final SOFTMAX.** The trainer's cross-entropy takes logits and `Trainer::predict_proba` applies the softmax,
//! so a diagram's final `SOFTMAX` is kept out of `forward_t`: the model returns logits, and the summary lists the
//! softmax as the output activation (at the index `nn.Sequential` would give it). Being parameterless, it changes no
//! name; the equivalent Python `nn.Sequential` is the diagram without it. A `SOFTMAX` elsewhere is an ordinary layer.
//!
//! The model options (after `:`, as for registry models) are `activation=NAME`, the activation of `ACT` tokens:
//! `CONV(8,3) => ACT => FC:activation=tanh`. Errors name the offending token, its position and the diagram with the
//! token marked `>>…<<`.
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use tch::Tensor;

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{did_you_mean, Error, Result};
use crate::nn::{
    trace, Activation, BatchNorm, Conv2d, ConvConfig, Dropout, Flatten, Linear, Module, PReLU, Path, Pool2d, PoolKind,
    VarStore,
};

/// The options a diagram model accepts.
pub const OPTIONS: &[&str] = &["activation"];

/// The layer words a diagram knows besides activation names.
pub const LAYER_WORDS: &[&str] =
    &["INPUT", "CONV", "BN", "POOL", "MAXPOOL", "AVGPOOL", "FLATTEN", "FC", "DROPOUT", "DO", "PRELU", "ACT", "SOFTMAX"];

/// Whether a model spec is a diagram rather than a registry name.
pub fn is_diagram(spec: &str) -> bool {
    spec.contains("=>")
}

/// One `=>`-separated token of a diagram, with its 1-based position (`index`) and character `column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub index: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Size(i64),
    /// `k / 2`, which keeps the size for odd kernels at stride 1.
    Same,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreluSlopes {
    /// One slope for all channels (`nn.PReLU()`).
    Shared,
    /// One slope per channel (`nn.PReLU(C)`), C taken from the data.
    PerChannel,
    /// `nn.PReLU(n)`: n must be 1 or the channel count.
    Count(i64),
}

/// A parsed layer, before shapes are known.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Conv {
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: Padding,
    },
    BatchNorm,
    Pool {
        kind: PoolKind,
        kernel: i64,
        stride: i64,
    },
    Flatten,
    /// `None`: the output layer's size, taken from the data.
    Fc(Option<i64>),
    Dropout(f64),
    Prelu(PreluSlopes),
    /// `None`: the model's `activation` option (`ACT`).
    Act(Option<Activation>),
}

/// A parsed diagram: its layers with their tokens, and whether it ends in the output SOFTMAX.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagram {
    pub text: String,
    pub layers: Vec<(LayerSpec, Token)>,
    /// The final SOFTMAX token, kept out of the forward pass (see the module docs).
    pub output_softmax: Option<Token>,
}

impl FromStr for Diagram {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Diagram::parse(s)
    }
}

/// Splits on `=>`, keeping each token's position.
fn tokenize(text: &str) -> Vec<Token> {
    let mut out = vec![];
    let mut start = 0;
    for (i, piece) in text.split("=>").enumerate() {
        let lead = piece.len() - piece.trim_start().len();
        out.push(Token {
            text: piece.trim().to_string(),
            index: i + 1,
            column: text[..start + lead].chars().count() + 1,
        });
        start += piece.len() + 2;
    }
    out
}

impl Diagram {
    /// An error about `tok`: names it, its position, and shows the diagram with the token marked.
    pub fn token_error(text: &str, tok: &Token, msg: impl std::fmt::Display) -> Error {
        let marked: Vec<String> = tokenize(text)
            .iter()
            .map(|t| if t.index == tok.index { format!(">>{}<<", t.text) } else { t.text.clone() })
            .collect();
        Error::config(format!(
            "model diagram, token {} '{}' (column {}) in \"{}\": {msg}",
            tok.index,
            tok.text,
            tok.column,
            marked.join(" => ")
        ))
    }

    pub fn parse(text: &str) -> Result<Diagram> {
        let text = text.trim();
        if !is_diagram(text) {
            return Err(Error::config(format!(
                "model diagram '{text}': join layers with '=>', e.g. 'CONV(8,3) => RELU => FC(10)'"
            )));
        }
        let tokens = tokenize(text);
        let n_tokens = tokens.len();
        let mut layers = vec![];
        let mut output_softmax = None;
        for tok in tokens {
            let err = |msg: String| Diagram::token_error(text, &tok, msg);
            if tok.text.is_empty() {
                return Err(err("an empty layer (two '=>' in a row, or one at an end)".into()));
            }
            let (word, args) = split_call(&tok.text).map_err(&err)?;
            let no_args = |layer: LayerSpec| {
                if args.is_empty() {
                    Ok(layer)
                } else {
                    Err(err(format!("{word} takes no arguments")))
                }
            };
            let layer = match word.as_str() {
                "INPUT" if tok.index == 1 && args.is_empty() => continue,
                "INPUT" => {
                    return Err(err("INPUT may only open the diagram, without sizes (they come from the data)".into()))
                }
                "CONV" | "CONV2D" => parse_conv(&args).map_err(&err)?,
                "BN" | "BATCHNORM" | "BATCH_NORM" => no_args(LayerSpec::BatchNorm)?,
                "POOL" | "MAXPOOL" | "MAX_POOL" | "AVGPOOL" | "AVG_POOL" => parse_pool(&word, &args).map_err(&err)?,
                "FLATTEN" => no_args(LayerSpec::Flatten)?,
                "FC" | "DENSE" | "LINEAR" => match args.as_slice() {
                    [] => LayerSpec::Fc(None),
                    [n] => LayerSpec::Fc(Some(positive(n, "FC's size").map_err(&err)?)),
                    _ => return Err(err("FC takes one size, e.g. FC(128)".into())),
                },
                "DROPOUT" | "DO" => {
                    let p = match args.as_slice() {
                        [] => 0.5,
                        [p] => p.parse::<f64>().ok().filter(|p| (0.0..=1.0).contains(p)).ok_or_else(|| {
                            err(format!("dropout probability '{p}' must be a number in [0, 1], e.g. DROPOUT(0.25)"))
                        })?,
                        _ => return Err(err("DROPOUT takes one probability, e.g. DROPOUT(0.25)".into())),
                    };
                    LayerSpec::Dropout(p)
                }
                "PRELU" => LayerSpec::Prelu(match args.as_slice() {
                    [] => PreluSlopes::Shared,
                    [a] if ["C", "CHANNEL", "CHANNELS"].contains(&a.to_uppercase().as_str()) => PreluSlopes::PerChannel,
                    [n] => PreluSlopes::Count(
                        positive(n, "PRELU's number of slopes (1, or C for one per channel)").map_err(&err)?,
                    ),
                    _ => return Err(err("PRELU takes at most one argument: PRELU, PRELU(C) or PRELU(n)".into())),
                }),
                "ACT" => match args.as_slice() {
                    [] => LayerSpec::Act(None),
                    [name] => match name.parse::<Activation>().map_err(|e| err(e.to_string()))? {
                        Activation::Prelu => LayerSpec::Prelu(PreluSlopes::Shared),
                        act => LayerSpec::Act(Some(act)),
                    },
                    _ => return Err(err("ACT takes at most one activation name, e.g. ACT(tanh)".into())),
                },
                "SOFTMAX" if tok.index == n_tokens && args.is_empty() => {
                    output_softmax = Some(tok.clone());
                    continue;
                }
                _ => match word.parse::<Activation>() {
                    Ok(Activation::Prelu) => unreachable!("PRELU is matched above"),
                    Ok(act) => no_args(LayerSpec::Act(Some(act)))?,
                    Err(_) => {
                        let acts: Vec<String> = Activation::NAMES.iter().map(|n| n.to_uppercase()).collect();
                        let choices = LAYER_WORDS.iter().copied().chain(acts.iter().map(String::as_str));
                        return Err(err(format!(
                            "unknown layer '{word}'{}; layers are {} and the activations {}",
                            did_you_mean(&word, choices),
                            LAYER_WORDS.join(", "),
                            acts.join(", ")
                        )));
                    }
                },
            };
            layers.push((layer, tok));
        }
        let Some(last_fc) = layers.iter().rposition(|(l, _)| matches!(l, LayerSpec::Fc(_))) else {
            return Err(Error::config(format!(
                "model diagram: no FC layer in '{text}'; a diagram ends in its output layer, e.g. '… => FC(10)'"
            )));
        };
        for (i, (layer, tok)) in layers.iter().enumerate() {
            if i < last_fc && *layer == LayerSpec::Fc(None) {
                return Err(Diagram::token_error(
                    text,
                    tok,
                    "a hidden FC needs its size, e.g. FC(128); only the output FC may leave it to the data",
                ));
            }
            let parameterless = matches!(
                layer,
                LayerSpec::Act(_)
                    | LayerSpec::Dropout(_)
                    | LayerSpec::Prelu(PreluSlopes::Shared | PreluSlopes::Count(1))
            );
            if i > last_fc && !parameterless {
                return Err(Diagram::token_error(
                    text,
                    tok,
                    format!(
                        "only activations and DROPOUT may follow the output layer (token {} '{}')",
                        layers[last_fc].1.index, layers[last_fc].1.text
                    ),
                ));
            }
        }
        Ok(Diagram { text: text.to_string(), layers, output_softmax })
    }

    /// The output FC's written size, if any.
    pub fn output_size(&self) -> Option<i64> {
        self.layers.iter().rev().find_map(|(l, _)| match l {
            LayerSpec::Fc(n) => Some(*n),
            _ => None,
        })?
    }
}

/// `NAME` or `NAME(a, b, …)` → the upper-cased name (`-` read as `_`) and the trimmed arguments.
fn split_call(text: &str) -> std::result::Result<(String, Vec<String>), String> {
    let (name, args) = match text.find('(') {
        Some(open) => {
            let inner = text[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| "unbalanced parentheses: write NAME(a, b)".to_string())?;
            if inner.contains(['(', ')']) {
                return Err("nested parentheses: write NAME(a, b)".into());
            }
            let args: Vec<String> = inner.split(',').map(|a| a.trim().to_string()).collect();
            if args.iter().any(String::is_empty) && !(args.len() == 1 && inner.trim().is_empty()) {
                return Err("an empty argument".into());
            }
            (&text[..open], if inner.trim().is_empty() { vec![] } else { args })
        }
        None if text.contains(')') => return Err("unbalanced parentheses: write NAME(a, b)".into()),
        None => (text, vec![]),
    };
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("'{name}' is not a layer name (letters, digits, '_')"));
    }
    Ok((name.to_uppercase().replace('-', "_"), args))
}

fn positive(text: &str, what: &str) -> std::result::Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{what} '{text}' must be a positive whole number"))
}

fn parse_conv(args: &[String]) -> std::result::Result<LayerSpec, String> {
    const USAGE: &str = "CONV takes (filters, kernel[, stride[, padding]]), e.g. CONV(32,3) or CONV(32,3,padding=same)";
    let mut positional = vec![];
    let (mut stride, mut padding) = (None, None);
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => match k.trim().to_lowercase().as_str() {
                "stride" | "s" => stride = Some(v.trim().to_string()),
                "padding" | "pad" | "p" => padding = Some(v.trim().to_string()),
                other => return Err(format!("CONV has no argument '{other}' (stride, padding)")),
            },
            None if positional.len() < 4 => positional.push(a.clone()),
            None => return Err(USAGE.into()),
        }
    }
    if positional.len() < 2 {
        return Err(USAGE.into());
    }
    let c_out = positive(&positional[0], "CONV's filter count")?;
    let kernel = positive(&positional[1], "CONV's kernel size")?;
    let stride = stride.or(positional.get(2).cloned()).map_or(Ok(1), |s| positive(&s, "CONV's stride"))?;
    let padding = match padding.or(positional.get(3).cloned()) {
        None => Padding::Size(0),
        Some(p) if p.eq_ignore_ascii_case("same") => Padding::Same,
        Some(p) => Padding::Size(
            p.parse::<i64>()
                .ok()
                .filter(|&v| v >= 0)
                .ok_or_else(|| format!("CONV's padding '{p}' must be a whole number ≥ 0 or 'same'"))?,
        ),
    };
    Ok(LayerSpec::Conv { c_out, kernel, stride, padding })
}

fn parse_pool(word: &str, args: &[String]) -> std::result::Result<LayerSpec, String> {
    let mut kind = match word {
        "AVGPOOL" | "AVG_POOL" => Some(PoolKind::Avg),
        "MAXPOOL" | "MAX_POOL" => Some(PoolKind::Max),
        _ => None,
    };
    let mut sizes = vec![];
    for a in args {
        match a.to_lowercase().as_str() {
            "max" | "avg" | "average" if kind.is_some() => return Err(format!("{word} already says the pooling kind")),
            "max" => kind = Some(PoolKind::Max),
            "avg" | "average" => kind = Some(PoolKind::Avg),
            _ if sizes.len() < 2 => sizes.push(positive(a, "POOL's size")?),
            _ => return Err("POOL takes (kernel[, stride][, max|avg]), e.g. POOL(2) or POOL(3,2,avg)".into()),
        }
    }
    let kernel = sizes.first().copied().unwrap_or(2);
    let stride = sizes.get(1).copied().unwrap_or(kernel);
    Ok(LayerSpec::Pool { kind: kind.unwrap_or(PoolKind::Max), kernel, stride })
}

fn shape_text(shape: &[i64]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// A model built from a [`Diagram`]: an `nn.Sequential` whose head is the last FC (and any activation after it).
#[derive(Debug)]
pub struct DiagramModel {
    layers: Vec<Box<dyn Module>>,
    /// Index of the output FC in `layers`.
    head: usize,
    head_in: i64,
    head_path: Path,
    /// The `nn.Sequential` index the output SOFTMAX would have, for the summary.
    softmax_name: Option<String>,
    num_outputs: i64,
    diagram: Diagram,
}

impl DiagramModel {
    /// Builds `diagram` under `p` for data of `c.input_shape` and `c.num_outputs` outputs.
    pub fn new(p: &Path, diagram: &Diagram, c: &ModelConfig) -> Result<Self> {
        let default_act: Activation = c.opt("activation", Activation::Relu)?;
        let text = &diagram.text;
        let mut shape = c.input_shape.clone();
        if shape.is_empty() || shape.iter().any(|&d| d < 1) {
            return Err(Error::config(format!("model diagram: the input shape {shape:?} is empty")));
        }
        let mut layers: Vec<Box<dyn Module>> = vec![];
        let mut head = None;
        let mut head_in = 0;
        let last_fc = diagram.layers.iter().rposition(|(l, _)| matches!(l, LayerSpec::Fc(_))).unwrap_or(usize::MAX);
        for (i, (layer, tok)) in diagram.layers.iter().enumerate() {
            let err = |msg: String| Diagram::token_error(text, tok, msg);
            let image = |what: &str, shape: &[i64]| match shape {
                [c, h, w] => Ok((*c, *h, *w)),
                _ => Err(err(format!(
                    "{what} needs image data [C, H, W], but here the data is [{}]{}",
                    shape_text(shape),
                    if layers.is_empty() {
                        "; give an image input (e.g. ⟨input⟩ 1x28x28)"
                    } else {
                        " (after FC or FLATTEN)"
                    }
                ))),
            };
            let sp = p.sub(layers.len());
            match *layer {
                LayerSpec::Conv { c_out, kernel, stride, padding } => {
                    let (c_in, h, w) = image("CONV", &shape)?;
                    let padding = match padding {
                        Padding::Size(p) => p,
                        Padding::Same => kernel / 2,
                    };
                    let (ho, wo) = ((h + 2 * padding - kernel) / stride + 1, (w + 2 * padding - kernel) / stride + 1);
                    if h + 2 * padding < kernel || w + 2 * padding < kernel {
                        return Err(err(format!(
                            "a {kernel}×{kernel} kernel does not fit the {h}×{w} image here; use a smaller kernel, \
                             padding or a larger input"
                        )));
                    }
                    let config = ConvConfig { stride, padding, ..ConvConfig::default() };
                    layers.push(Box::new(Conv2d::new(&sp, c_in, c_out, kernel, config)));
                    shape = vec![c_out, ho, wo];
                }
                LayerSpec::Pool { kind, kernel, stride } => {
                    let (ch, h, w) = image("POOL", &shape)?;
                    if h < kernel || w < kernel {
                        return Err(err(format!("a {kernel}×{kernel} pool does not fit the {h}×{w} image here")));
                    }
                    layers.push(Box::new(Pool2d::new(&sp, kind, kernel, stride, 0)));
                    shape = vec![ch, (h - kernel) / stride + 1, (w - kernel) / stride + 1];
                }
                LayerSpec::BatchNorm => {
                    let bn = match shape.len() {
                        3 => BatchNorm::new2d(&sp, shape[0]),
                        1 | 2 => BatchNorm::new1d(&sp, shape[0]),
                        _ => return Err(err(format!("BN needs [C, H, W] or [F] data, got [{}]", shape_text(&shape)))),
                    };
                    layers.push(Box::new(bn));
                }
                LayerSpec::Flatten => {
                    layers.push(Box::new(Flatten::new(&sp)));
                    shape = vec![shape.iter().product()];
                }
                LayerSpec::Fc(size) => {
                    if shape.len() > 1 {
                        // The notes' diagrams leave it out; nn.Sequential needs it, and it takes an index.
                        layers.push(Box::new(Flatten::new(&sp)));
                        shape = vec![shape.iter().product()];
                    }
                    let c_out = if i == last_fc {
                        match size {
                            Some(n) if n != c.num_outputs => {
                                return Err(err(format!(
                                    "the output layer gives {n} outputs but the data needs {}; write FC without a \
                                     size to take it from the data",
                                    c.num_outputs
                                )))
                            }
                            _ => c.num_outputs,
                        }
                    } else {
                        size.unwrap_or(c.num_outputs)
                    };
                    let fp = p.sub(layers.len());
                    if i == last_fc {
                        head = Some(layers.len());
                        head_in = shape[0];
                    }
                    layers.push(Box::new(Linear::new(&fp, shape[0], c_out)));
                    shape = vec![c_out];
                }
                LayerSpec::Dropout(prob) => layers.push(Box::new(Dropout::new(&sp, prob))),
                LayerSpec::Prelu(slopes) => {
                    let n = match slopes {
                        PreluSlopes::Shared => 1,
                        PreluSlopes::PerChannel => shape[0],
                        PreluSlopes::Count(n) if n == 1 || n == shape[0] => n,
                        PreluSlopes::Count(n) => {
                            return Err(err(format!("PRELU({n}) needs 1 slope or one per channel ({}) here", shape[0])))
                        }
                    };
                    layers.push(Box::new(PReLU::new(&sp, n)));
                }
                LayerSpec::Act(act) => layers.push(act.unwrap_or(default_act).layer(&sp)),
            }
        }
        let head = head.ok_or_else(|| Error::config(format!("model diagram '{text}' has no FC layer")))?;
        let softmax_name = diagram.output_softmax.as_ref().map(|_| p.sub(layers.len()).name().to_string());
        Ok(DiagramModel {
            head,
            head_in,
            head_path: p.sub(head),
            softmax_name,
            num_outputs: c.num_outputs,
            diagram: diagram.clone(),
            layers,
        })
    }

    pub fn diagram(&self) -> &Diagram {
        &self.diagram
    }
    /// The state-dict prefix of the output FC (`"7"` for `7.weight`).
    pub fn classifier_name(&self) -> &str {
        self.head_path.name()
    }
    /// Number of layers in the `nn.Sequential`, the implied `Flatten` included and the output SOFTMAX not.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

forward_head_of_features!(DiagramModel);

impl Model for DiagramModel {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers[..self.head].iter().fold(xs.shallow_clone(), |ys, layer| layer.forward_t(&ys, train))
    }
    /// The output FC and what follows it; logits, without the output SOFTMAX (listed in the summary only).
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let ys =
            self.layers[self.head..].iter().fold(features.shallow_clone(), |ys, layer| layer.forward_t(&ys, train));
        if let Some(name) = &self.softmax_name {
            trace::record(name, "Softmax (predict_proba)", &ys, 0);
        }
        ys
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        self.layers[self.head] = Box::new(self.head_path.replace(|p| Linear::new(p, self.head_in, num_outputs)));
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

/// Builds a diagram spec (`DIAGRAM[:activation=NAME]`) into `store`, as [`super::build`] does for registry names.
pub fn build(spec: &str, store: &VarStore, num_outputs: i64, input_shape: &[i64]) -> Result<Box<dyn Model>> {
    let spec = crate::util::Spec::parse(spec, "model")?;
    let diagram = Diagram::parse(&spec.source)?;
    let config = ModelConfig { num_outputs, input_shape: input_shape.to_vec(), options: spec.options };
    config.check_options("diagram", OPTIONS)?;
    if num_outputs < 1 {
        return Err(Error::config(format!("model diagram needs at least one output, got {num_outputs}")));
    }
    Ok(Box::new(DiagramModel::new(&store.root(), &diagram, &config)?))
}

/// The [`ModelEntry`] of a diagram (checked for syntax), so that `find` works for diagrams as for registry names.
/// Its default input is a 28×28 one-channel image and its default class count the output FC's size (10 if unsized).
/// Entries are made once per diagram text and kept for the life of the process.
pub fn entry(text: &str) -> Result<&'static ModelEntry> {
    static ENTRIES: OnceLock<Mutex<HashMap<String, &'static ModelEntry>>> = OnceLock::new();
    let diagram = Diagram::parse(text)?;
    let mut entries = ENTRIES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = entries.get(&diagram.text) {
        return Ok(e);
    }
    let entry: &'static ModelEntry = Box::leak(Box::new(ModelEntry {
        name: Box::leak(diagram.text.clone().into_boxed_str()),
        family: "diagram",
        description: "a model from a text diagram (CONV, BN, POOL, FC, DROPOUT, activations joined by =>)",
        default_input: &[1, 28, 28],
        default_classes: diagram.output_size().unwrap_or(10),
        first_layer: "0",
        classifier: "",
        options: OPTIONS,
        build: build_from_entry,
    }));
    entries.insert(diagram.text, entry);
    Ok(entry)
}

/// `ModelEntry::build` for diagrams: the diagram text travels in the `diagram` option.
fn build_from_entry(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let text = c.options.get("diagram").ok_or_else(|| {
        Error::config("a diagram model is built by models::build(DIAGRAM, …) or with the option diagram=DIAGRAM")
    })?;
    let diagram = Diagram::parse(text)?;
    let mut c = c.clone();
    c.options.remove("diagram");
    c.check_options("diagram", OPTIONS)?;
    Ok(Box::new(DiagramModel::new(p, &diagram, &c)?))
}

/// `spec` with its activation knob set to `activation`, for a `--activation NAME` flag: `mlp:hidden=64` →
/// `mlp:hidden=64,activation=tanh`, `lenet5` → `lenet5:activation=tanh`, a diagram → `DIAGRAM:activation=tanh` (its
/// `ACT` tokens). An unknown activation, a model without the knob, or a spec that already sets another activation is
/// an error.
pub fn with_activation(spec: &str, activation: &str) -> Result<String> {
    let act: Activation = activation.parse()?;
    let parsed = crate::util::Spec::parse(spec, "model")?;
    let entry = super::find(&parsed.source)?;
    if !entry.options.contains(&"activation") {
        let with: Vec<&str> =
            super::registry()?.iter().filter(|e| e.options.contains(&"activation")).map(|e| e.name).collect();
        return Err(Error::config(format!(
            "⟨activation⟩: model '{}' has no activation knob; these have one: {}, and diagrams with ACT",
            entry.name,
            with.join(", ")
        )));
    }
    match parsed.options.get("activation") {
        Some(v) if v.parse::<Activation>()? == act => Ok(spec.to_string()),
        Some(v) => {
            Err(Error::config(format!("⟨activation⟩ {act} contradicts activation={v} in the model spec '{spec}'")))
        }
        None => Ok(format!("{spec}{}activation={act}", if spec.contains(':') { ',' } else { ':' })),
    }
}
