//! The words of what the library says (`report::Message`): epoch, callback and summary lines on stdout, notes and
//! warnings on stderr. `-q` gives the library a silent `Output`, which passes on only the warnings.
use crate::report::{Message, Reporter};

pub struct Printer;

impl Reporter for Printer {
    fn report(&self, message: &Message) {
        match message {
            Message::Note(text) => eprintln!("{text}"),
            Message::SkippedImages { count, first } => {
                eprintln!("warning: skipped {count} image(s) that did not decode this epoch (first: {first})")
            }
            Message::Callback(line) | Message::Epoch(line) | Message::Summary(line) => println!("{line}"),
        }
    }
}

/// The CLI's output at a verbosity.
pub fn printer(verbosity: crate::report::Verbosity) -> crate::report::Output {
    crate::report::Output::new(verbosity, std::sync::Arc::new(Printer))
}
