pub mod analyze;
pub mod embed;
mod features_args;
pub mod fewshot;
pub mod gradcheck;
mod model_features;
pub mod plot;

/// What a command returns: an exit code, or an error printed as `error: ...` with exit 1.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error>>;
