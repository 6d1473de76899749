//! Where the reference values made with PyTorch, timm and transformers are, for the tests of
//! every crate: `CLCE_FIXTURES`, else `shared/fixtures` inside or beside the repository.
use std::path::PathBuf;

/// The fixtures folder (the one holding `models/` and `losses/`). Panics when there is none:
/// only tests call it, and a test without its reference values must fail, not pass.
pub fn dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CLCE_FIXTURES") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        root.join("shared/fixtures"),
        root.join("../shared/fixtures"),
    ]
    .into_iter()
    .find(|d| d.join("models").is_dir())
    .unwrap_or_else(|| {
        panic!(
            "reference fixtures not found: set CLCE_FIXTURES to the fixtures folder (the one \
             holding models/ and losses/)"
        )
    })
}
