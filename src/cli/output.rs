//! The words of what the library says (`report::Message`): epoch, callback and summary lines on stdout, notes and
//! warnings on stderr, and on a terminal the epoch's progress bar drawn from the progress messages. `-q` gives the
//! library a silent `Output`, which passes on only the warnings.
//!
//! The library names settings by their config key (`⟨lr_mult⟩`, see `report::name_settings`); here each is worded as
//! the flag that sets it, `--lr-mult`: clap derives every flag from its field's name, and the library's keys are those
//! field names (`tests` checks each key the library uses against the flags clap knows).
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Error;
use crate::report::{name_settings, Message, Reporter};

/// The flag that sets the setting `key`.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// A text of the library in the CLI's words.
pub fn words(text: &str) -> String {
    name_settings(text, flag)
}

/// An error as the CLI prints it, its settings worded as flags.
pub fn error_words(e: &Error) -> String {
    e.words(flag)
}

/// Prints the library's messages; on a terminal it draws the epoch's progress bar (indicatif, on stderr) from the
/// progress messages.
#[derive(Default)]
pub struct Printer {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Printer {
    /// Runs `print` with the bar, if one is drawn, hidden meanwhile; `finish` ends the bar first.
    fn with_bar(&self, finish: Option<fn(&ProgressBar)>, print: impl FnOnce()) {
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match (finish, bar.as_ref()) {
            (Some(end), Some(b)) => {
                end(b);
                *bar = None;
                print()
            }
            (None, Some(b)) => b.suspend(print),
            (_, None) => print(),
        }
    }
}

impl Reporter for Printer {
    fn report(&self, message: &Message) {
        match message {
            Message::Note(text) => self.with_bar(None, || eprintln!("{}", words(text))),
            Message::SkippedImages { count, first } => self.with_bar(None, || {
                eprintln!("warning: skipped {count} image(s) that did not decode this epoch (first: {first})")
            }),
            Message::Epoch(line) => self.with_bar(Some(ProgressBar::finish_and_clear), || println!("{}", words(line))),
            Message::Callback(line) | Message::Summary(line) => self.with_bar(None, || println!("{}", words(line))),
            Message::EpochBegin { epoch, epochs, batches } => {
                let b = ProgressBar::new(*batches as u64);
                let style = ProgressStyle::with_template("Epoch {prefix} [{bar:30}] {pos}/{len} - ETA {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                b.set_style(style);
                b.set_prefix(format!("{}/{}", epoch + 1, epochs));
                if let Some(old) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).replace(b) {
                    old.finish_and_clear();
                }
            }
            Message::Batch { done, loss, grad_norm, lr, data_wait } => {
                if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    b.set_position(*done as u64);
                    b.set_message(progress_figures(*loss, *grad_norm, *lr, *data_wait));
                }
            }
            Message::EpochAbandoned => self.with_bar(Some(ProgressBar::abandon), || {}),
        }
    }
    fn wants_progress(&self) -> bool {
        std::io::stderr().is_terminal()
    }
}

/// The bar's figures: `- loss: 0.4120 - grad_norm: 1.2000 - lr: 0.0100 - data 3%`.
pub fn progress_figures(loss: f64, grad_norm: Option<f64>, lr: Option<f64>, data_wait: Option<f64>) -> String {
    let mut msg = format!("- loss: {loss:.4}");
    if let Some(n) = grad_norm {
        msg.push_str(&format!(" - grad_norm: {n:.4}"));
    }
    if let Some(lr) = lr {
        msg.push_str(&format!(" - lr: {}", crate::train::progress::format_lr(lr)));
    }
    if let Some(share) = data_wait {
        msg.push_str(&format!(" - data {:.0}%", share * 100.0));
    }
    msg
}

/// The CLI's output at a verbosity.
pub fn printer(verbosity: crate::report::Verbosity) -> crate::report::Output {
    crate::report::Output::new(verbosity, std::sync::Arc::new(Printer::default()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use clap::CommandFactory;

    /// Every long flag of every subcommand.
    fn flags() -> BTreeSet<String> {
        fn walk(c: &clap::Command, out: &mut BTreeSet<String>) {
            out.extend(c.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")));
            for s in c.get_subcommands() {
                walk(s, out);
            }
        }
        let mut out = BTreeSet::new();
        walk(&super::super::Cli::command(), &mut out);
        out
    }

    /// The code lines (comments left out) of every library source file: `src/` but the CLI and the binaries.
    fn library_lines() -> Vec<(PathBuf, usize, String)> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out)
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p)
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let front_end = [src.join("cli"), src.join("main.rs"), src.join("bin")];
        files.retain(|f| !front_end.iter().any(|x| f.starts_with(x)));
        assert!(files.len() > 50, "{files:?}");
        let mut out = Vec::new();
        for f in files {
            for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
                if !line.trim_start().starts_with("//") {
                    out.push((f.clone(), i + 1, line.to_string()));
                }
            }
        }
        out
    }

    /// The `--name` words of a line (`--` not inside a word, then lowercase letters, digits and `-`).
    fn dashed_words(line: &str) -> Vec<String> {
        let b = line.as_bytes();
        let mut out = Vec::new();
        for i in 0..b.len().saturating_sub(2) {
            let starts = b[i] == b'-' && b[i + 1] == b'-' && b[i + 2].is_ascii_lowercase();
            if starts && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-')) {
                let end =
                    (i + 2..b.len()).find(|&j| !(b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'-'));
                out.push(line[i..end.unwrap_or(b.len())].to_string());
            }
        }
        out
    }

    #[test]
    fn every_setting_the_library_names_is_a_flag_of_the_cli() {
        let flags = flags();
        assert!(flags.contains("--lr-mult") && flags.contains("--run") && flags.contains("--shard-size"), "{flags:?}");
        let mut named = 0;
        let mut unknown = Vec::new();
        for (file, n, line) in library_lines() {
            for key in crate::report::settings_named(&line) {
                named += 1;
                if !flags.contains(&super::flag(&key)) {
                    unknown.push(format!("{}:{n}: ⟨{key}⟩", file.display()));
                }
            }
        }
        assert!(named > 100, "{named}");
        assert!(unknown.is_empty(), "settings the CLI has no flag for: {unknown:#?}");
    }

    #[test]
    fn the_library_spells_no_flag() {
        let flags = flags();
        let spelled: Vec<String> = library_lines()
            .into_iter()
            .flat_map(|(file, n, line)| {
                dashed_words(&line)
                    .into_iter()
                    .filter(|w| flags.contains(w))
                    .map(move |w| format!("{}:{n}: {w}", file.display()))
            })
            .collect();
        assert!(spelled.is_empty(), "library text that names a CLI flag (write ⟨key⟩ instead): {spelled:#?}");
        // The scan sees a flag where one is written.
        assert_eq!(dashed_words(r#"use --lr-mult x, not a--b or ---"#), ["--lr-mult"]);
    }

    #[test]
    fn errors_and_messages_are_worded_with_the_flags() {
        let e =
            crate::Error::config(format!("{} 0: give at least 1", crate::report::setting("accumulate_grad_batches")));
        assert_eq!(super::error_words(&e), "config: --accumulate-grad-batches 0: give at least 1");
        assert_eq!(e.to_string(), "config: `accumulate_grad_batches` 0: give at least 1");
        assert_eq!(format!("{e:#}"), "config: ⟨accumulate_grad_batches⟩ 0: give at least 1");
    }
}
