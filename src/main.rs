//! The `dualrouter` binary: every subcommand lives in [`dualrouter::cli`].

fn main() -> std::process::ExitCode {
    dualrouter::cli::main()
}
