//! The `tchzoo` binary: errors print as one line and exit with code 2.
fn main() {
    tchzoo::util::install_panic_hook();
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
        if let tchzoo::Error::Interrupted(msg) = &e {
            eprintln!("{msg}");
            std::process::exit(130);
        }
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
