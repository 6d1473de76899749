pub mod analyze;
pub mod bench;
pub mod convert;
pub mod devices;
pub mod embed;
pub mod eval;
mod features_args;
pub mod fewshot;
pub mod finetune;
pub mod forward;
pub mod gradcheck;
pub mod inspect;
pub mod loss;
mod model_features;
pub mod plan;
pub mod plot;

/// What a command returns: an exit code, or an error printed as `error: ...` with exit 1.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error>>;

/// The projection size of a checkpoint's `proj.*` head, None when it has none.
pub fn file_proj_dim(path: &std::path::Path) -> Result<Option<usize>, clce_models::Error> {
    let header = clce_models::model::read_header_with_head(path)?;
    let renamed = clce_models::checkpoint::to_timm_names(header.tensors)?;
    Ok(renamed
        .tensors
        .get("proj.2.weight")
        .and_then(|(_, shape)| shape.first().copied()))
}
