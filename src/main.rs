//! The `ipcbench` command line: hands over to [`cli::main`].

#[cfg(not(loom))]
mod cli;

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    cli::main()
}
