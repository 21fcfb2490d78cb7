//! (entity, link) pairs for entity embeddings, as the seed's book project trains them: a CSV with one positive
//! pair per row (entity column, link column; more columns are ignored), indexed by sorted name, plus sampled
//! negatives: for each positive, `negatives` random (entity, link) pairs that are not positives, drawn as the
//! seed's generator draws them (both ends uniform, with replacement) from a generator seeded by the run's seed.
//! They are drawn once, when the data loads; the seed's generator draws fresh ones for every batch.
//!
//! Spec: `pairs:path=FILE[,entity=COLUMN,link=COLUMN,negatives=1,task=classification|regression]`. Targets are
//! 1/0 classes (binary cross-entropy) or ±1 reals (MSE), the seed's two tasks. The rows are shuffled (seeded), so
//! that Keras' `validation_split` (the last fraction) holds positives and negatives alike; inputs are int64 [N, 2].
//!
//! Demo data: `scripts/export_data.py` writes networkx's Les Misérables co-appearance graph
//! (`data/les_miserables.csv`, character → co-appearing character, both directions) and the Davis Southern Women
//! graph (`data/davis_southern_women.csv`, woman → event attended, bipartite like book → wikilink).
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::files::{bad_opt, check_options, parse_opt, read_all};
use super::{Dataset, Task};
use crate::error::{did_you_mean, Error, Result};

/// The options the `pairs` spec takes.
pub const OPTIONS: &[&str] = &["path", "entity", "link", "negatives", "task"];
const MAX_FILE: u64 = 1 << 30;

/// A pair table: names indexed in sorted order, and the positive pairs as indices.
#[derive(Debug, Clone)]
pub struct Pairs {
    /// Where the pairs came from, for messages.
    pub source: String,
    /// The column headers, e.g. `character` and `co_appears_with` (`tchzoo similar` labels its listing with them).
    pub entity_column: String,
    pub link_column: String,
    pub entities: Vec<String>,
    pub links: Vec<String>,
    pub pairs: Vec<(i64, i64)>,
}

impl Pairs {
    /// Reads the CSV at `path`; `entity`/`link` name the columns (default the first two).
    pub fn read(path: &Path, entity: Option<&str>, link: Option<&str>) -> Result<Pairs> {
        let name = path.display().to_string();
        let (header, rows) = read_csv(path)?;
        if header.len() < 2 {
            return Err(Error::data(&name, "a pair table needs two columns (entity, link) and a header row"));
        }
        let column = |wanted: Option<&str>, default: usize, what: &str| -> Result<usize> {
            let Some(w) = wanted else { return Ok(default) };
            header.iter().position(|h| h == w || h.eq_ignore_ascii_case(w)).ok_or_else(|| {
                Error::data(
                    &name,
                    format!(
                        "no column '{w}' for {what}={w}{}; the columns are: {}",
                        did_you_mean(w, header.iter().map(String::as_str)),
                        header.join(", ")
                    ),
                )
            })
        };
        let (ce, cl) = (column(entity, 0, "entity")?, column(link, 1, "link")?);
        if ce == cl {
            return Err(Error::data(&name, format!("entity and link are the same column '{}'", header[ce])));
        }
        let mut named = Vec::with_capacity(rows.len());
        for (line, fields) in &rows {
            let (e, l) = (fields[ce].trim(), fields[cl].trim());
            if e.is_empty() || l.is_empty() {
                return Err(Error::data(&name, format!("line {line}: an empty entity or link name; fill it in")));
            }
            named.push((e, l));
        }
        let entities: Vec<String> =
            named.iter().map(|p| p.0).collect::<BTreeSet<_>>().into_iter().map(String::from).collect();
        let links: Vec<String> =
            named.iter().map(|p| p.1).collect::<BTreeSet<_>>().into_iter().map(String::from).collect();
        let ei: BTreeMap<&str, i64> = entities.iter().enumerate().map(|(i, e)| (e.as_str(), i as i64)).collect();
        let li: BTreeMap<&str, i64> = links.iter().enumerate().map(|(i, l)| (l.as_str(), i as i64)).collect();
        let pairs = named.iter().map(|(e, l)| (ei[e], li[l])).collect();
        Ok(Pairs {
            source: name,
            entity_column: header[ce].clone(),
            link_column: header[cl].clone(),
            entities,
            links,
            pairs,
        })
    }

    /// The index of entity `name` (exact, else case-insensitive); unknown names get the closest spellings.
    pub fn entity_index(&self, name: &str) -> Result<usize> {
        find_name(&self.entities, name, &self.entity_column, &self.source)
    }
    pub fn link_index(&self, name: &str) -> Result<usize> {
        find_name(&self.links, name, &self.link_column, &self.source)
    }
}

/// `name` in `names`: exact, else the only case-insensitive match; an unknown name is an error with suggestions.
pub fn find_name(names: &[String], name: &str, what: &str, source: &str) -> Result<usize> {
    if let Some(i) = names.iter().position(|n| n == name) {
        return Ok(i);
    }
    let folded: Vec<usize> = (0..names.len()).filter(|&i| names[i].eq_ignore_ascii_case(name)).collect();
    if folded.len() == 1 {
        return Ok(folded[0]);
    }
    let mut hint = did_you_mean(name, names.iter().map(String::as_str));
    if hint.is_empty() {
        // Substring matches help with long names ("Valjean" for "Jean Valjean").
        let lower = name.to_lowercase();
        let subs: Vec<String> =
            names.iter().filter(|n| n.to_lowercase().contains(&lower)).take(3).map(|n| format!("'{n}'")).collect();
        if !subs.is_empty() {
            hint = format!(" (did you mean {}?)", subs.join(", "));
        }
    }
    Err(Error::data(source, format!("no {what} '{name}' among its {} names{hint}", names.len())))
}

/// For each positive, `per_positive` random pairs (entity and link uniform) that are not positives.
pub fn sample_negatives(
    positives: &[(i64, i64)],
    n_entities: i64,
    n_links: i64,
    per_positive: usize,
    seed: u64,
) -> Result<Vec<(i64, i64)>> {
    let set: HashSet<(i64, i64)> = positives.iter().copied().collect();
    let wanted = positives.len() * per_positive;
    if wanted == 0 {
        return Ok(vec![]);
    }
    let free = (n_entities * n_links) as usize - set.len();
    if free == 0 {
        return Err(Error::config("every (entity, link) pair is a positive: there is no negative to sample"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(wanted);
    let mut tries = 0usize;
    while out.len() < wanted {
        tries += 1;
        if tries > 1000 * wanted + 10_000 {
            return Err(Error::config(format!(
                "could not sample {wanted} negatives: only {free} pairs are not positives; lower negatives="
            )));
        }
        let pair = (rng.gen_range(0..n_entities), rng.gen_range(0..n_links));
        if !set.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

/// The `pairs` data spec.
pub fn load(options: &BTreeMap<String, String>, seed: u64) -> Result<Dataset> {
    check_options("pairs", options, OPTIONS)?;
    let path = options.get("path").ok_or_else(|| {
        Error::data("pairs", "give the pair CSV as path=FILE, e.g. pairs:path=data/les_miserables.csv")
    })?;
    let source = path.as_str();
    let negatives: usize = parse_opt(source, options, "negatives", 1, "a whole number of negatives per positive")?;
    if negatives > 100 {
        return Err(bad_opt(source, "negatives", &negatives.to_string(), "at most 100 negatives per positive"));
    }
    let regression = super::files::is_regression(source, options)?;
    let pairs = Pairs::read(
        Path::new(path),
        options.get("entity").map(String::as_str),
        options.get("link").map(String::as_str),
    )?;
    let (ne, nl) = (pairs.entities.len() as i64, pairs.links.len() as i64);
    let neg = sample_negatives(&pairs.pairs, ne, nl, negatives, seed)?;
    let mut rows: Vec<(i64, i64, bool)> = pairs.pairs.iter().map(|&(e, l)| (e, l, true)).collect();
    rows.extend(neg.iter().map(|&(e, l)| (e, l, false)));
    // Seeded, and on another stream than the negatives.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    rand::seq::SliceRandom::shuffle(rows.as_mut_slice(), &mut rng);
    let flat: Vec<i64> = rows.iter().flat_map(|r| [r.0, r.1]).collect();
    let xs = Tensor::from_slice(&flat).reshape([rows.len() as i64, 2]);
    let mut data = if regression {
        let ys: Vec<f32> = rows.iter().map(|r| if r.2 { 1.0 } else { -1.0 }).collect();
        Dataset::new(source, xs.shallow_clone(), Tensor::from_slice(&ys), Task::Regression { n_outputs: 1 })?
    } else {
        let ys: Vec<i64> = rows.iter().map(|r| i64::from(r.2)).collect();
        let mut d =
            Dataset::new(source, xs.shallow_clone(), Tensor::from_slice(&ys), Task::Classification { n_classes: 2 })?;
        d.class_names = Some(vec!["negative".into(), "positive".into()]);
        d
    };
    // Indices stay int64 (Dataset::new makes features float).
    data.xs = xs;
    Ok(data)
}

/// Records of a CSV: each with the 1-based line it starts on.
pub(crate) type Records = Vec<(usize, Vec<String>)>;

/// A CSV's header and records (RFC 4180 quoting, blank lines skipped), each with its 1-based line number; every
/// record must have as many fields as the header.
pub(crate) fn read_csv(path: &Path) -> Result<(Vec<String>, Records)> {
    let name = path.display().to_string();
    let bytes = read_all(path, MAX_FILE)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::data(
            &name,
            format!("not UTF-8 text (bad byte at offset {}); save it as UTF-8", e.utf8_error().valid_up_to()),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut records = parse_records(text, &name)?.into_iter();
    let (_, header) = records.next().ok_or_else(|| Error::data(&name, "the file is empty; expected a header row"))?;
    let header: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
    let rows: Records = records.collect();
    if rows.is_empty() {
        return Err(Error::data(&name, "the file has a header row but no data rows"));
    }
    for (line, fields) in &rows {
        if fields.len() != header.len() {
            return Err(Error::data(
                &name,
                format!(
                    "line {line} has {} fields but the header has {}; quote fields with commas",
                    fields.len(),
                    header.len()
                ),
            ));
        }
    }
    Ok((header, rows))
}

fn parse_records(text: &str, name: &str) -> Result<Records> {
    let mut out = vec![];
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = vec![];
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    if quoted {
                        return Err(Error::data(name, format!("line {start}: a quoted field is never closed")));
                    }
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if quoted => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                }
                Some('"') if field.trim().is_empty() => {
                    field.clear();
                    quoted = true;
                }
                Some('\n') if !quoted => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(',') if !quoted => fields.push(std::mem::take(&mut field)),
                Some('\r') if !quoted => {}
                Some(c) => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
        }
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        out.push((start, fields));
    }
    Ok(out)
}
