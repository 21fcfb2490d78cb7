//! `tchzoo similar RUN --query NAME [-k 5] [--least] [--table entity|link]`: the nearest entities of a trained
//! entity-embedding run by cosine similarity, in the seed's listing format
//! (`Book: War and Peace   Similarity: 1.0`, labelled here with the pair file's column name). A run of a text
//! model (`lstm_text` on `text:` data) lists its nearest words instead.
//!
//! The names come from the run's data spec (its `config.json`): the pair CSV indexes names in sorted order, and
//! the text loader rebuilds the same vocabulary. The vectors are the run's `model.safetensors` (or `--weights`).
use std::path::{Path, PathBuf};

use clap::Args;
use tch::Tensor;

use crate::config::RunConfig;
use crate::data::pairs::{find_name, Pairs};
use crate::data::{DataSource, Named};
use crate::error::{Error, Result};
use crate::models::embedding::nearest;

#[derive(Debug, Args)]
pub struct SimilarArgs {
    /// A run folder of `entity_embedding` on `pairs:` data (or of a text model on `text:` data).
    pub run: PathBuf,
    /// The entity (or word) to start from; an unknown name gets the closest spellings.
    #[arg(short, long)]
    pub query: String,
    /// How many to list, the query itself included (it comes first, at similarity 1.0).
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    /// List the least similar instead.
    #[arg(long)]
    pub least: bool,
    /// Which table of a pairs run: `entity` (the first column) or `link` (the second).
    #[arg(long, default_value = "entity")]
    pub table: String,
    /// Weights to read instead of the run's model.safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

/// One embedding table of a run, with the names of its rows.
#[derive(Debug)]
pub struct RunEmbeddings {
    /// What a row is (`character`, `woman`, `word`): the label of the listing.
    pub label: String,
    pub names: Vec<String>,
    /// [rows, dim] on the CPU.
    pub table: Tensor,
    /// The data the names come from, for messages.
    pub source: String,
}

fn read_config(run: &Path) -> Result<RunConfig> {
    let path = run.join("config.json");
    if !path.exists() {
        return Err(Error::config(format!("{} has no config.json: not a tchzoo run folder", run.display())));
    }
    RunConfig::from_json_file(&path)
}

/// Reads table `table` (`entity`, `link`; text runs: `embedding`) of the run in `run`, with its row names.
pub fn load_run_embeddings(run: &Path, table: &str, weights: Option<&Path>) -> Result<RunEmbeddings> {
    let config = read_config(run)?;
    let data = DataSource::parse(&config.data)?;
    let no_options = crate::util::Options::new();
    let (named, options) = match &data {
        DataSource::Named { name, options } => (Some(*name), options),
        _ => (None, &no_options),
    };
    let source = options.get("path").cloned().unwrap_or_else(|| config.data.clone());
    let (tensor_name, label, names) = match named {
        Some(Named::Pairs) => {
            let path = options.get("path").ok_or_else(|| Error::config("the run's pairs data has no path="))?;
            let pairs = Pairs::read(
                Path::new(path),
                options.get("entity").map(String::as_str),
                options.get("link").map(String::as_str),
            )?;
            match table {
                "entity" => ("entity.weight", pairs.entity_column, pairs.entities),
                "link" => ("link.weight", pairs.link_column, pairs.links),
                other => return Err(Error::config(format!("--table {other}: a pairs run has tables entity and link"))),
            }
        }
        Some(Named::Text) => {
            let text = crate::data::sequences::load_text_with_vocabulary(options)?;
            let mut names = vec!["<padding>".to_string(), "<out of vocabulary>".to_string()];
            names.extend(text.vocabulary.words);
            ("embedding.weight", "word".to_string(), names)
        }
        _ => {
            return Err(Error::config(format!(
                "{}: trained on '{}' data, which has no entity embeddings; give a run on pairs: data (entity_embedding) or \
                 text: data",
                run.display(),
                data.name()
            )))
        }
    };
    let weights = match weights {
        Some(w) => w.to_path_buf(),
        None => {
            let st = run.join("model.safetensors");
            if st.exists() {
                st
            } else {
                run.join("model.pt")
            }
        }
    };
    let tensors = crate::checkpoint::read_state_dict(&weights)?;
    let table = tensors.into_iter().find(|(k, _)| k == tensor_name).map(|(_, t)| t).ok_or_else(|| {
        Error::config(format!("{}: no tensor '{tensor_name}' (is it an embedding model's run?)", weights.display()))
    })?;
    let rows = table.size().first().copied().unwrap_or(0);
    // A corpus with fewer words than `vocab`, or a graph with fewer entities or links than the model's `entities`
    // and `links` (1000 by default), leaves the last rows of the table unused: no index of the data reaches them.
    let table = if rows > names.len() as i64 { table.narrow(0, 0, names.len() as i64) } else { table };
    if table.size().first().copied() != Some(names.len() as i64) {
        return Err(Error::config(format!(
            "{tensor_name} in {} has {} rows but the data has {} names; the data changed since training?",
            weights.display(),
            rows,
            names.len()
        )));
    }
    Ok(RunEmbeddings { label, names, table: table.to_device(tch::Device::Cpu), source })
}

/// Python's `round(x, 2)` as printed: 1.0, 0.79, 0.8, -0.5.
fn two_places(x: f64) -> String {
    let r = (x * 100.0).round() / 100.0;
    let r = if r == 0.0 { 0.0 } else { r };
    if r.fract() == 0.0 {
        format!("{r:.1}")
    } else {
        format!("{r}")
    }
}

fn title_case(label: &str) -> String {
    let label = label.replace('_', " ");
    let mut c = label.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => "Entity".to_string(),
    }
}

impl RunEmbeddings {
    pub fn find(&self, name: &str) -> Result<usize> {
        find_name(&self.names, name, &self.label, &self.source)
    }

    /// The seed's listing: a header line, then `Label: name   Similarity: s` per row.
    pub fn listing(&self, query: &str, k: usize, least: bool) -> Result<String> {
        let q = self.find(query)?;
        let rows = nearest(&self.table, q as i64, k.max(1), least)?;
        let label = title_case(&self.label);
        let width = rows.iter().map(|(i, _)| self.names[*i].chars().count()).max().unwrap_or(0);
        let which = if least { "Least similar to" } else { "Closest to" };
        let mut out =
            format!("{which} {} by cosine similarity ({} embeddings):\n", self.names[q], self.label.replace('_', " "));
        for (i, s) in rows {
            let name = &self.names[i];
            let pad = " ".repeat(width - name.chars().count() + 3);
            out.push_str(&format!("{label}: {name}{pad}Similarity: {}\n", two_places(s)));
        }
        Ok(out)
    }

    /// Writes the PCA scatter of the table to `path`, with `query` and its `k − 1` nearest highlighted.
    pub fn plot(&self, query: Option<&str>, k: usize, path: &Path) -> Result<()> {
        let highlight = match query {
            Some(q) => {
                let qi = self.find(q)?;
                let near = nearest(&self.table, qi as i64, k.max(1), false)?;
                Some((qi, near.into_iter().map(|(i, _)| i).filter(|&i| i != qi).collect()))
            }
            None => None,
        };
        let title = match &highlight {
            Some((q, _)) => format!("{} embeddings (PCA): {} and its nearest", title_case(&self.label), self.names[*q]),
            None => format!("{} embeddings (PCA)", title_case(&self.label)),
        };
        let figure = crate::plot::embeddings::EmbeddingFigure::new(&title, &self.names, &self.table, highlight)?;
        crate::plot::embeddings::plot_embeddings(&figure, path)
    }
}

/// `tchzoo plot RUN --embeddings [--query NAME]`: writes `embeddings.png` in the run folder (or `output`).
/// `k` counts the query, as `tchzoo similar -k`: the map highlights the same `k − 1` neighbours the listing gives.
pub fn plot_run(run: &Path, query: Option<&str>, k: usize, output: Option<PathBuf>) -> Result<PathBuf> {
    let emb = load_run_embeddings(run, "entity", None)?;
    let out = output.unwrap_or_else(|| run.join("embeddings.png"));
    emb.plot(query, k, &out)?;
    Ok(out)
}

pub fn run(args: SimilarArgs) -> Result<()> {
    let emb = load_run_embeddings(&args.run, &args.table, args.weights.as_deref())?;
    print!("{}", emb.listing(&args.query, args.k, args.least)?);
    Ok(())
}
