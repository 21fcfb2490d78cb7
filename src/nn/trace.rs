//! Records each leaf layer's output shape during one forward pass, for `tchzoo summary`.
use std::cell::RefCell;

use tch::Tensor;

#[derive(Debug, Clone)]
pub struct LayerTrace {
    pub name: String,
    pub kind: String,
    pub output_shape: Vec<i64>,
    pub params: i64,
}

thread_local! {
    static TRACE: RefCell<Option<Vec<LayerTrace>>> = const { RefCell::new(None) };
}

/// Runs `f` with tracing on and returns what the layers recorded.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<LayerTrace>) {
    TRACE.with(|t| *t.borrow_mut() = Some(Vec::new()));
    let out = f();
    let rows = TRACE.with(|t| t.borrow_mut().take()).unwrap_or_default();
    (out, rows)
}

/// Called by layers after their forward pass; costs nothing when no trace is being captured.
pub fn record(name: &str, kind: &str, output: &Tensor, params: i64) {
    TRACE.with(|t| {
        if let Some(rows) = t.borrow_mut().as_mut() {
            rows.push(LayerTrace {
                name: name.to_string(),
                kind: kind.to_string(),
                output_shape: output.size(),
                params,
            });
        }
    });
}
