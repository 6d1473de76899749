//! Full-size BEiT-base and ResNet-101: parameter counts of the presets, and loading files with
//! every name, dtype and shape of the hub's checkpoints (values are random, stored as F16 to
//! keep the files at half size).
mod common;

use clce_engine::Device;
use clce_models::{LoadOptions, Model, ModelConfig, Naming};
use common::{checkpoint_from_list, names_list, Scratch};

#[test]
fn preset_parameter_counts_match_timm() {
    // timm's counts (MODELS.md), without our projection head; the head adds
    // d*d + d + d*128 + 128.
    for (preset, timm_count, proj_count) in [
        ("beit-base", 86_530_984, 768 * 768 + 768 + 768 * 128 + 128),
        (
            "resnet-101",
            44_549_160,
            2048 * 2048 + 2048 + 2048 * 128 + 128,
        ),
    ] {
        let model = Model::new(ModelConfig::preset(preset).unwrap(), &Device::Cpu, 0).unwrap();
        assert_eq!(model.num_params(), timm_count, "{preset}");
        assert_eq!(model.num_proj_params(), proj_count, "{preset}");
    }
}

#[test]
fn full_size_hub_files_load_in_both_namings() {
    let dir = Scratch::new("full-size");
    let path = dir.path("full.safetensors");
    for (list, preset, naming, timm_count) in [
        (
            "beit_base_timm.names.json",
            "beit-base",
            Naming::Timm,
            86_530_984,
        ),
        (
            "beit_base_hf.names.json",
            "beit-base",
            Naming::Transformers,
            86_530_984,
        ),
        (
            "resnet101_timm.names.json",
            "resnet-101",
            Naming::Timm,
            44_549_160,
        ),
        (
            "resnet101_hf.names.json",
            "resnet-101",
            Naming::Transformers,
            44_549_160,
        ),
    ] {
        let names = names_list(list);
        checkpoint_from_list(&names, clce_models::FileDType::F16)
            .write(&path)
            .unwrap();
        let opts = LoadOptions {
            model: Some(preset.to_string()),
            ..LoadOptions::default()
        };
        let (model, report) = Model::load(&path, &opts).unwrap();
        assert!(report.is_ok(), "{list}: {report}");
        assert_eq!(report.naming, naming, "{list}");
        // transformers' three q/k/v weights per block become one qkv weight.
        let fused = if naming == Naming::Transformers && preset == "beit-base" {
            2 * 12
        } else {
            0
        };
        assert_eq!(report.loaded, names.len() - fused, "{list}");
        assert_eq!(model.num_params(), timm_count, "{list}");
        assert_eq!(model.config(), &ModelConfig::preset(preset).unwrap());
    }
}
