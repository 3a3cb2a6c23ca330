//! The `mmgen` command line. Parsing and dispatch live in `cli`; every
//! subcommand calls into the library and only formats what it returns.

mod cli;

fn main() -> std::process::ExitCode {
    mmgen::alloc::retain_freed_pages();
    cli::main()
}
