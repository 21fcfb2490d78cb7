//! The `tchzoo` binary: errors print as one line and exit with code 2.
fn main() {
    // A panic prints one line (no backtrace), nothing inside `catch_torch`, which makes it an error.
    std::panic::set_hook(Box::new(|info| {
        if tchzoo::util::panics_are_caught() {
            return;
        }
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown error".into());
        eprintln!("error: internal error: {} (please report this)", tchzoo::util::first_line(&text));
    }));
    // A reader that closes the pipe early (`tchzoo models | head -2`) ends the output normally, as `ls | head`:
    // Rust ignores SIGPIPE, so `println!` panics on EPIPE; that panic is the one place it shows, and exits 0 here.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if text.is_some_and(|t| t.starts_with("failed printing to stdout") && t.contains("Broken pipe")) {
            std::process::exit(0);
        }
        hook(info)
    }));
    tchzoo::optim::keep_freed_memory();
    if let Err(e) = tchzoo::cli::run(std::env::args_os()) {
        let line = tchzoo::cli::output::error_words(&e);
        if let tchzoo::Error::Interrupted(_) = &e {
            eprintln!("{line}");
            std::process::exit(130);
        }
        eprintln!("error: {line}");
        std::process::exit(2);
    }
}
