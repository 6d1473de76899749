//! ResNet and BEiT on the clce engine, loaded from and saved to the checkpoint files users
//! have (timm, torchvision and transformers naming; F32, F16 and BF16).
//!
//! Where to look:
//! - `model.rs`: [`Model`]: encoder + classifier head + contrastive projection head, loading
//!   ([`Model::load`], with a [`LoadReport`]) and saving ([`Model::save`]);
//! - `beit.rs`, `resnet.rs`: the two encoders; `layers.rs`: the layers they share;
//! - `checkpoint/`: safetensors files, naming detection and the transformers -> timm map;
//! - `config/`: presets and configuration inference from a file's shapes;
//! - `params/`: the parameter store (timm names -> tensors) and how tensors are initialised.
pub mod beit;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod layers;
pub mod mode;
pub mod model;
pub mod params;
pub mod resnet;

pub use checkpoint::{ArchKind, Checkpoint, FileDType, LoadReport, Naming};
pub use config::{Architecture, BeitConfig, ModelConfig, ResNetConfig};
pub use error::{Error, Result};
pub use mode::Mode;
pub use model::{LoadOptions, Model, Output, SaveOptions};
pub use params::{ParamStore, Role};
