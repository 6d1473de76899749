pub mod gradcheck;
pub mod loss;

/// What a command returns: an exit code, or an error printed as `error: ...` with exit 1.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error>>;
