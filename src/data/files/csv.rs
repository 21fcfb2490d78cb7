//! CSV tables: a header row, then one sample per row. Features are the numeric columns; the label column is
//! option `label=NAME` (or a 0-based index, negative from the end), by default the last column.
//! String labels become classes in sorted order (like scikit-learn's `LabelEncoder`) with `class_names` set;
//! `task=regression` reads the label as a real number.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tch::Tensor;

use super::{bad_opt, check_options, class_count, is_regression, read_all};
use crate::data::{Dataset, Task};
use crate::error::{did_you_mean, Error, Result};

const MAX_FILE: u64 = 2 << 30;

/// A parsed table: every cell a span of the text (8 bytes a cell, however many rows), or for a quoted cell with
/// `""` escapes an index into `owned`. Rows have the header's width, checked while parsing.
struct Table<'a> {
    text: &'a str,
    header: Vec<String>,
    /// (start, end) in `text`; `start == OWNED` marks `end` as an index into `owned`.
    cells: Vec<(u32, u32)>,
    owned: Vec<String>,
    /// The file line each data row starts on.
    lines: Vec<usize>,
    /// The first row of another width than the header's (its line and width); such rows are not kept.
    ragged: Option<(usize, usize)>,
}

const OWNED: u32 = u32::MAX;

impl<'a> Table<'a> {
    fn len(&self) -> usize {
        self.lines.len()
    }
    fn cell(&self, row: usize, col: usize) -> &str {
        match self.cells[row * self.header.len() + col] {
            (OWNED, i) => &self.owned[i as usize],
            (start, end) => &self.text[start as usize..end as usize],
        }
    }
    /// The cells of one column with their rows' lines.
    fn column(&self, col: usize) -> impl Iterator<Item = (usize, &str)> + '_ {
        (0..self.len()).map(move |r| (self.lines[r], self.cell(r, col)))
    }
}

/// Loads a CSV (or `.tsv`) table. Options: `label`, `task=classification|regression`, `classes=N`,
/// `sep=comma|tab|semicolon|pipe`.
pub fn load(path: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let name = path.display().to_string();
    check_options(&name, options, &["label", "task", "classes", "sep"])?;
    let regression = is_regression(&name, options)?;
    let is_tsv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
    let sep = match options.get("sep").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None if is_tsv => b'\t',
        None | Some("comma") => b',',
        Some("tab") | Some("\\t") => b'\t',
        Some("semicolon") | Some(";") => b';',
        Some("pipe") | Some("|") => b'|',
        Some(v) => return Err(bad_opt(&name, "sep", v, "comma, tab, semicolon or pipe")),
    };
    let bytes = read_all(path, MAX_FILE)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::data(&name, format!("not UTF-8 text (bad byte at offset {}); save it as UTF-8 CSV", e.valid_up_to()))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Error::data(&name, "the file is empty; expected a header row and one row per sample"));
    }
    // Every field costs a parsed cell (8 bytes) however short it is, and a header field a name (a 24-byte String
    // and its text): a file of separators is a bomb.
    let cells = bytes.iter().filter(|&&b| b == sep || b == b'\n').count() as u64 + 1;
    let header_fields = text.bytes().take_while(|&b| b != b'\n').filter(|&b| b == sep).count() as u64 + 1;
    crate::util::check_memory(cells * 8 + header_fields * 32, &name)?;
    let table = parse(text, sep, &name)?;
    let header = &table.header;
    if table.len() == 0 && table.ragged.is_none() {
        return Err(Error::data(&name, "the file has a header row but no data rows"));
    }
    let n_cols = header.len();
    if n_cols < 2 {
        return Err(Error::data(
            &name,
            format!(
                "the header has one column ('{}'); expected feature columns and a label column, separated by '{}' \
                 (pass sep= for another separator)",
                show(&header[0]),
                sep as char
            ),
        ));
    }
    if let Some((line, width)) = table.ragged {
        return Err(Error::data(
            &name,
            format!(
                "line {line} has {width} fields but the header has {n_cols}; quote fields that contain '{}'",
                sep as char
            ),
        ));
    }
    let label_col = label_column(&name, header, options.get("label"))?;
    let label_name = &header[label_col];
    let shown_label = show(label_name);

    // Feature columns: every other column with numbers in it; a column with no number at all is text, skipped.
    let mut feature_cols = Vec::new();
    for col in (0..n_cols).filter(|&c| c != label_col) {
        if table.column(col).any(|(_, f)| number(f).is_some()) {
            feature_cols.push(col);
        }
    }
    // A column of numbers that are all NaN or infinite is no text column to skip quietly.
    for col in (0..n_cols).filter(|&c| c != label_col && !feature_cols.contains(&c)) {
        let filled = || table.column(col).map(|(_, f)| f.trim()).filter(|f| !f.is_empty());
        if filled().all(|f| f.parse::<f64>().is_ok()) && filled().next().is_some() {
            return Err(Error::data(
                &name,
                format!(
                    "column '{}' holds no finite number (only NaN, infinite or empty cells); fill it in or remove it",
                    show(&header[col])
                ),
            ));
        }
    }
    if feature_cols.is_empty() {
        return Err(Error::data(
            &name,
            format!("no numeric feature columns besides the label '{shown_label}'; features must be numbers"),
        ));
    }
    let n = table.len();
    let mut xs: Vec<f32> = Vec::with_capacity(n * feature_cols.len());
    for row in 0..n {
        for &col in &feature_cols {
            xs.push(cell_number(&name, table.lines[row], &header[col], table.cell(row, col))? as f32);
        }
    }
    let xs = Tensor::from_slice(&xs).reshape([n as i64, feature_cols.len() as i64]);

    if regression {
        let mut ys = Vec::with_capacity(n);
        for (line, cell) in table.column(label_col) {
            ys.push(cell_number(&name, line, label_name, cell)? as f32);
        }
        return Dataset::new(&name, xs, Tensor::from_slice(&ys), Task::Regression { n_outputs: 1 });
    }
    let labels = || table.column(label_col).map(|(line, l)| (line, l.trim()));
    if let Some((line, _)) = labels().find(|(_, l)| l.is_empty()) {
        return Err(Error::data(&name, format!("line {line}: the label '{shown_label}' is empty; fill it in")));
    }
    // Labels that all read as numbers but are not all finite: a NaN label, not a set of text classes.
    if labels().all(|(_, l)| l.parse::<f64>().is_ok()) {
        if let Some((line, l)) = labels().find(|(_, l)| number(l).is_none()) {
            return Err(Error::data(
                &name,
                format!("line {line}: the label '{shown_label}' is {}; class labels must be finite numbers", show(l)),
            ));
        }
    }
    let (ys, class_names) = if labels().all(|(_, l)| number(l).is_some()) {
        let mut ys = Vec::with_capacity(n);
        for (line, l) in labels() {
            let v = number(l).unwrap_or_default();
            if v.fract() != 0.0 || v.abs() > 1e15 {
                return Err(Error::data(
                    &name,
                    format!(
                        "line {line}, column '{shown_label}': {v} is not a class number; pass task=regression for \
                         real-valued targets"
                    ),
                ));
            }
            ys.push(v as i64);
        }
        (ys, None)
    } else {
        let classes: Vec<&str> = labels().map(|(_, l)| l).collect::<BTreeSet<_>>().into_iter().collect();
        let index: BTreeMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (*c, i as i64)).collect();
        let ys = labels().map(|(_, l)| index[l]).collect();
        (ys, Some(classes.into_iter().map(String::from).collect::<Vec<_>>()))
    };
    let ys = Tensor::from_slice(&ys);
    let n_classes = class_count(&name, options, &ys, class_names.as_ref().map(Vec::len))?;
    let mut data = Dataset::new(&name, xs, ys, Task::Classification { n_classes })?;
    data.class_names = class_names.filter(|c| c.len() == n_classes);
    Ok(data)
}

/// The label column: by header name, else by 0-based index (negative counts from the end), default the last.
fn label_column(name: &str, header: &[String], label: Option<&String>) -> Result<usize> {
    let Some(label) = label.map(|l| l.trim()) else { return Ok(header.len() - 1) };
    if let Some(i) = header.iter().position(|h| h == label) {
        return Ok(i);
    }
    if let Some(i) = header.iter().position(|h| h.eq_ignore_ascii_case(label)) {
        return Ok(i);
    }
    if let Ok(i) = label.parse::<i64>() {
        let n = header.len() as i64;
        let i = if i < 0 { n + i } else { i };
        if (0..n).contains(&i) {
            return Ok(i as usize);
        }
    }
    Err(Error::data(
        name,
        format!(
            "no column '{label}' for label={label}{}; the columns are: {}{}",
            did_you_mean(label, header.iter().map(String::as_str)),
            header.iter().take(20).map(|h| show(h)).collect::<Vec<_>>().join(", "),
            if header.len() > 20 { format!(", … ({} in all)", header.len()) } else { String::new() }
        ),
    ))
}

/// User text for a one-line message: escaped, and cut at 40 characters.
fn show(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{more}", cut.escape_debug())
}

/// A number finite in float32 (the type the values are trained in), or `None`.
fn number(cell: &str) -> Option<f64> {
    cell.trim().parse::<f64>().ok().filter(|v| v.is_finite() && v.abs() <= f32::MAX as f64)
}

fn cell_number(name: &str, line: usize, column: &str, cell: &str) -> Result<f64> {
    let cell = cell.trim();
    number(cell).ok_or_else(|| {
        let what = if cell.is_empty() {
            "is empty; fill in the missing value".to_string()
        } else if cell.parse::<f64>().is_ok() {
            format!("'{}' is not finite in float32 (|value| ≤ 3.4e38, no NaN or inf); fix the cell", show(cell))
        } else {
            format!("'{}' is not a number; fix the cell", show(cell))
        };
        Error::data(name, format!("line {line}, column '{}': {what}", show(column)))
    })
}

/// Splits `text` into a header and rows of cells (RFC 4180 quoting: `"a,b"`, `""` for a quote, newlines inside
/// quotes); blank lines are skipped, and the first row of another width than the header's is noted.
fn parse<'a>(text: &'a str, sep: u8, name: &str) -> Result<Table<'a>> {
    let b = text.as_bytes();
    if b.len() >= OWNED as usize {
        return Err(Error::data(name, "the file is 4 GiB or more; split it, or save the table as .npy"));
    }
    let mut i = 0;
    let mut line = 1;
    let mut table = Table { text, header: vec![], cells: vec![], owned: vec![], lines: vec![], ragged: None };
    let mut fields: Vec<(u32, u32)> = Vec::new();
    while i < b.len() {
        let start_line = line;
        fields.clear();
        loop {
            // Leading spaces before a quote are allowed.
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                i = j + 1;
                let mut s = String::new();
                let mut seg = i;
                loop {
                    if i >= b.len() {
                        return Err(Error::data(
                            name,
                            format!("line {start_line}: a quoted field is never closed; add the closing \""),
                        ));
                    }
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            s.push_str(&text[seg..=i]);
                            i += 2;
                            seg = i;
                            continue;
                        }
                        s.push_str(&text[seg..i]);
                        i += 1;
                        break;
                    }
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                while i < b.len() && (b[i] == b' ' || b[i] == b'\r') {
                    i += 1;
                }
                if i < b.len() && b[i] != sep && b[i] != b'\n' {
                    return Err(Error::data(
                        name,
                        format!("line {line}: text after a closing quote; quote the whole field or escape \" as \"\""),
                    ));
                }
                fields.push((OWNED, table.owned.len() as u32));
                table.owned.push(s);
            } else {
                let start = i;
                while i < b.len() && b[i] != sep && b[i] != b'\n' {
                    i += 1;
                }
                let end = if i > start && b[i - 1] == b'\r' { i - 1 } else { i };
                fields.push((start as u32, end as u32));
            }
            if i < b.len() && b[i] == sep {
                i += 1;
                continue;
            }
            if i < b.len() && b[i] == b'\n' {
                i += 1;
                line += 1;
            }
            break;
        }
        let cell = |&(start, end): &(u32, u32)| -> String {
            match start {
                OWNED => table.owned[end as usize].clone(),
                _ => text[start as usize..end as usize].to_string(),
            }
        };
        if fields.len() == 1 && cell(&fields[0]).trim().is_empty() {
            continue;
        }
        if table.header.is_empty() {
            table.header = fields.iter().map(|f| cell(f).trim().to_string()).collect();
            continue;
        }
        if fields.len() != table.header.len() {
            table.ragged = table.ragged.or(Some((start_line, fields.len())));
            continue;
        }
        table.cells.extend_from_slice(&fields);
        table.lines.push(start_line);
    }
    if table.header.is_empty() {
        return Err(Error::data(name, "the file is empty"));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let t = parse("a,b\n\"x, y\",\"say \"\"hi\"\"\"\r\n\n1,2", b',', "t").unwrap();
        assert_eq!(t.header, vec!["a", "b"]);
        assert_eq!(t.len(), 2);
        assert_eq!((t.cell(0, 0), t.cell(0, 1)), ("x, y", "say \"hi\""));
        assert_eq!((t.cell(1, 0), t.cell(1, 1)), ("1", "2"));
        assert_eq!(t.lines, vec![2, 4]);
        assert!(parse("a\n\"open", b',', "t").is_err());
        let ragged = parse("a,b\n1,2\n3\n4,5,6\n", b',', "t").unwrap();
        assert_eq!((ragged.len(), ragged.ragged), (1, Some((3, 1))));
    }
}
