//! Keras' `get_weights` / `set_weights`, on a whole model (its store) or on one layer (a path prefix such as
//! `lstm` or `features.1`): a list of tensors in registration order, parameters and buffers alike, as Keras lists
//! trainable and non-trainable weights. `set_weights` checks the count and every shape first and names the layer
//! and the tensor on a mismatch; nothing is copied unless everything fits.
use tch::Tensor;

use super::VarStore;
use crate::error::{Error, Result};

/// The layer a tensor name belongs to: `lstm.weight_ih_l0` → `lstm`, `features.1.bias` → `features.1`.
pub fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(layer, _)| layer)
}

/// The layers of a store, in order of their first tensor.
pub fn layer_names(store: &VarStore) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for (name, _) in store.state_dict() {
        let layer = layer_of(&name).to_string();
        if !out.contains(&layer) {
            out.push(layer);
        }
    }
    out
}

fn entries(store: &VarStore, layer: Option<&str>) -> Result<Vec<(String, Tensor)>> {
    let all = store.state_dict();
    let Some(layer) = layer else { return Ok(all) };
    let picked: Vec<(String, Tensor)> = all.into_iter().filter(|(k, _)| layer_of(k) == layer).collect();
    if picked.is_empty() {
        let names = layer_names(store);
        return Err(Error::config(format!(
            "no layer '{layer}'{}; the layers: {}",
            crate::error::did_you_mean(layer, names.iter().map(String::as_str)),
            names.join(", ")
        )));
    }
    Ok(picked)
}

/// Copies of every tensor of the model, in order (Keras' `model.get_weights()`).
pub fn get_weights(store: &VarStore) -> Vec<Tensor> {
    store.state_dict().into_iter().map(|(_, t)| t.detach().copy()).collect()
}

/// Copies of one layer's tensors, in order (Keras' `model.layers[i].get_weights()`).
pub fn get_layer_weights(store: &VarStore, layer: &str) -> Result<Vec<Tensor>> {
    Ok(entries(store, Some(layer))?.into_iter().map(|(_, t)| t.detach().copy()).collect())
}

/// Sets every tensor of the model from `values`, in the order `get_weights` gives.
pub fn set_weights(store: &VarStore, values: &[Tensor]) -> Result<()> {
    assign(&entries(store, None)?, values, None)
}

/// Sets one layer's tensors from `values`, in the order `get_layer_weights` gives.
pub fn set_layer_weights(store: &VarStore, layer: &str, values: &[Tensor]) -> Result<()> {
    assign(&entries(store, Some(layer))?, values, Some(layer))
}

fn assign(targets: &[(String, Tensor)], values: &[Tensor], layer: Option<&str>) -> Result<()> {
    let scope = match layer {
        Some(l) => format!("layer '{l}'"),
        None => "the model".to_string(),
    };
    if targets.len() != values.len() {
        let names: Vec<&str> = targets.iter().map(|(k, _)| k.as_str()).collect();
        return Err(Error::invalid(format!(
            "set_weights: {scope} has {} tensors ({}), got {}",
            targets.len(),
            names.join(", "),
            values.len()
        )));
    }
    for (i, ((name, t), v)) in targets.iter().zip(values).enumerate() {
        if t.size() != v.size() {
            let owner = layer.unwrap_or_else(|| layer_of(name));
            return Err(Error::invalid(format!(
                "set_weights: layer '{owner}', tensor {i} ({name}) has shape {:?}, got {:?}",
                t.size(),
                v.size()
            )));
        }
    }
    tch::no_grad(|| -> Result<()> {
        for ((_, t), v) in targets.iter().zip(values) {
            t.shallow_clone().f_copy_(&v.to_device(t.device()).to_kind(t.kind()))?;
        }
        Ok(())
    })
}
