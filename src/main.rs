//! The `tchzoo` binary: errors print as one line and exit with code 2.
fn main() {
    tchzoo::util::install_panic_hook();
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
