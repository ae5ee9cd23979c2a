//! The `cargo xtask` binary: everything is in the library (xtask/src/lib.rs), which
//! `xtask-release` shares.

fn main() -> std::process::ExitCode {
    xtask::main()
}
