//! The `dualrouter` binary: every subcommand lives in [`dualrouter::cli`].

/// mimalloc rather than glibc's malloc: under sustained overload (issue #11, result 3) the
/// proxy's resident memory kept growing with glibc's and levelled off with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dualrouter::cli::main()
}
