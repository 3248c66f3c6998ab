//! Thin entry point: parse, run, print the error chain, map it to an exit code.
fn main() {
    std::process::exit(upgrade_recovery::cli::main());
}
