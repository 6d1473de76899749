//! Running the `clce-cli` binary from an end-to-end test, and showing what it did when an
//! assertion fails. Shared by the test crates that drive the command line
//! (`#[path = "../common/run.rs"] mod run;`).
use std::process::{Command, Output};

/// `clce-cli args...`, with `CLCE_DEVICE` unset so that the test picks the device.
pub fn clce(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clce-cli"))
        .args(args)
        .env_remove("CLCE_DEVICE")
        .output()
        .expect("clce-cli runs")
}

/// The exit status and both streams, for an assertion message.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
