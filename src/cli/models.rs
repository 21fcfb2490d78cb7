//! `tchzoo models`: every registered architecture with its parameter count.
use clap::Args;

use crate::error::Result;
use crate::models::{self, ModelEntry};
use crate::nn::VarStore;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only models whose name or family contains this.
    pub filter: Option<String>,
}

/// Parameters of a model built at its default classes and input, on the CPU.
pub fn count_parameters(entry: &ModelEntry) -> Result<i64> {
    let store = VarStore::new(tch::Device::Cpu);
    let config = models::ModelConfig::new(entry.default_classes, entry.default_input);
    (entry.build)(&store.root(), &config)?;
    Ok(store.num_parameters())
}

/// The registry grouped by the survey's categories (`models::CATEGORIES`), each model with its family, parameter
/// count at its default classes, smallest input and description.
pub fn run(args: ModelsArgs) -> Result<()> {
    if let Some(f) = &args.filter {
        let all = models::registry()?;
        let matches = |e: &&ModelEntry| {
            e.name.contains(f.as_str()) || e.family.contains(f.as_str()) || models::category(e).contains(f.as_str())
        };
        if !all.iter().any(|e| matches(&e)) {
            return Err(crate::error::Error::config(format!(
                "no model matches '{f}'{}; `tchzoo models` lists them all",
                crate::error::did_you_mean(f, all.iter().map(|e| e.name))
            )));
        }
    }
    println!("{:<30} {:<16} {:>14} {:<12} description", "name", "family", "parameters", "input");
    for category in models::CATEGORIES {
        let mut heading = false;
        for e in models::registry()?.iter().filter(|e| models::category(e) == *category) {
            if let Some(f) = &args.filter {
                if !e.name.contains(f.as_str()) && !e.family.contains(f.as_str()) && !category.contains(f.as_str()) {
                    continue;
                }
            }
            if !heading {
                println!("\n== {category}");
                heading = true;
            }
            let n = count_parameters(e)?;
            let input = e.default_input.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            println!(
                "{:<30} {:<16} {:>14} {:<12} {}",
                e.name,
                e.family,
                group(n),
                input,
                super::output::words(e.description)
            );
        }
    }
    Ok(())
}

/// 61706 → "61,706".
pub fn group(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}
