//! Loading, checking and saving checkpoint files: the tiny parity fixtures written by timm and
//! transformers, the hub's full name lists, and deliberately broken files.
mod common;

use std::collections::BTreeMap;

use clce_models::checkpoint::naming::timm_to_transformers;
use clce_models::checkpoint::{self, Checkpoint, FileDType, FileTensor, Values};
use clce_models::config::{self, Architecture};
use clce_models::{
    ArchKind, Error, LoadOptions, LoadReport, Model, ModelConfig, Naming, SaveOptions,
};
use common::{model_fixture, names_list, Scratch};

fn opts(model: Option<&str>) -> LoadOptions {
    LoadOptions {
        model: model.map(str::to_string),
        ..LoadOptions::default()
    }
}

/// The error report of a load that must fail with a mismatch.
fn mismatch_report(result: clce_models::Result<(Model, LoadReport)>) -> (String, LoadReport) {
    match result {
        Err(e @ Error::Mismatch { .. }) => {
            let msg = e.to_string();
            let Error::Mismatch { report, .. } = e else {
                unreachable!()
            };
            (msg, *report)
        }
        Err(e) => panic!("expected a mismatch report, got: {e}"),
        Ok(_) => panic!("expected a mismatch report, the file loaded"),
    }
}

fn values(t: &clce_engine::Tensor) -> Vec<f32> {
    t.to_vec_f32().unwrap()
}

#[test]
fn name_maps_turn_the_hub_transformers_files_into_the_timm_ones() {
    for (hf, timm) in [
        ("beit_base_hf.names.json", "beit_base_timm.names.json"),
        ("resnet101_hf.names.json", "resnet101_timm.names.json"),
    ] {
        let renamed = checkpoint::to_timm_names(names_list(hf)).unwrap();
        assert_eq!(renamed.naming, Naming::Transformers);
        let mut expected = names_list(timm);
        // transformers keeps BEiT's index out of its files; we build it either way.
        expected.retain(|n, _| !n.ends_with("relative_position_index"));
        assert_eq!(renamed.tensors, expected, "{hf} -> {timm}");
        // ... and every timm name says where it lives in a transformers file.
        let hf_names = names_list(hf);
        for name in expected.keys() {
            let back = timm_to_transformers(renamed.arch, name).unwrap();
            if name.ends_with("attn.qkv.weight") {
                assert!(back.ends_with("attention.attention.{query,key,value}.weight"));
            } else {
                assert!(hf_names.contains_key(&back), "{name} -> {back}");
            }
        }
    }
}

#[test]
fn configs_inferred_from_the_hub_files_are_the_presets() {
    for (list, preset) in [
        ("beit_base_timm.names.json", "beit-base"),
        ("resnet101_timm.names.json", "resnet-101"),
    ] {
        let renamed = checkpoint::to_timm_names(names_list(list)).unwrap();
        let shapes = renamed
            .tensors
            .iter()
            .map(|(n, (_, s))| (n.clone(), s.clone()))
            .collect();
        let inferred = config::infer(renamed.arch, &shapes).unwrap();
        assert_eq!(inferred.arch, ModelConfig::preset(preset).unwrap().arch);
        assert_eq!(inferred.num_classes, Some(1000));
        assert_eq!(inferred.proj_dim, None);
    }
}

#[test]
fn relative_position_index_is_timms() {
    // Hand-checked 2x2 grid: span 3, offsets 9; (0,0)->(1,1) is (0-1+1)*3 + (0-1+1) = 0.
    let index = clce_models::beit::relative_position_index(2);
    #[rustfmt::skip]
    let expected = [
        11, 9, 9, 9, 9,
        10, 4, 3, 1, 0,
        10, 5, 4, 2, 1,
        10, 7, 6, 4, 3,
        10, 8, 7, 5, 4,
    ];
    assert_eq!(index, expected);
    let ckpt = Checkpoint::read(model_fixture("beit_timm_tiny.safetensors")).unwrap();
    let Values::I64(timm) = &ckpt.tensors["blocks.0.attn.relative_position_index"].values else {
        panic!("the index is I64")
    };
    let ours = clce_models::beit::relative_position_index(4);
    assert_eq!(timm.iter().map(|&v| v as usize).collect::<Vec<_>>(), ours);
}

#[test]
fn tiny_fixtures_load_with_and_without_a_preset() {
    for (file, preset, naming) in [
        ("beit_timm_tiny.safetensors", "beit-tiny", Naming::Timm),
        (
            "beit_hf_tiny.safetensors",
            "beit-tiny",
            Naming::Transformers,
        ),
        ("resnet_timm_tiny.safetensors", "resnet-tiny", Naming::Timm),
    ] {
        let path = model_fixture(file);
        let (with_preset, report) = Model::load(&path, &opts(Some(preset))).unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.naming, naming);
        assert_eq!(
            report.initialised,
            [
                "proj.0.weight",
                "proj.0.bias",
                "proj.2.weight",
                "proj.2.bias"
            ]
        );
        let (inferred, _) = Model::load(&path, &opts(None)).unwrap();
        let kind = inferred.config().kind().name();
        let (by_kind, _) = Model::load(&path, &opts(Some(kind))).unwrap();
        let preset_config = ModelConfig::preset(preset).unwrap();
        assert_eq!(with_preset.config(), &preset_config);
        assert_eq!(inferred.config(), &preset_config);
        assert_eq!(by_kind.config(), &preset_config);
        for (name, t) in with_preset.parameters() {
            assert_eq!(
                values(t),
                values(inferred.store().get(name).unwrap()),
                "{name}"
            );
        }
    }
}

#[test]
fn the_transformers_and_timm_beit_fixtures_hold_the_same_weights() {
    let (hf, hf_report) =
        Model::load(model_fixture("beit_hf_tiny.safetensors"), &opts(None)).unwrap();
    let (timm, timm_report) =
        Model::load(model_fixture("beit_timm_tiny.safetensors"), &opts(None)).unwrap();
    // The timm file also carries the two index tables.
    assert_eq!(hf_report.loaded + 2, timm_report.loaded);
    for (name, t) in timm.parameters().filter(|(n, _)| !n.starts_with("proj.")) {
        assert_eq!(values(t), values(hf.store().get(name).unwrap()), "{name}");
    }
}

/// The tiny timm BEiT fixture, edited by `edit` and written to a scratch file.
fn edited_beit(dir: &Scratch, edit: impl FnOnce(&mut Checkpoint)) -> std::path::PathBuf {
    let mut ckpt = Checkpoint::read(model_fixture("beit_timm_tiny.safetensors")).unwrap();
    edit(&mut ckpt);
    let path = dir.path("edited.safetensors");
    ckpt.write(&path).unwrap();
    path
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let dir = Scratch::new("wrong-shape");
    let path = edited_beit(&dir, |c| {
        let t = c.tensors.get_mut("blocks.1.mlp.fc1.weight").unwrap();
        t.shape = vec![128, 128];
    });
    let (msg, report) = mismatch_report(Model::load(&path, &opts(Some("beit-tiny"))));
    assert_eq!(report.mismatched.len(), 1);
    let m = &report.mismatched[0];
    assert_eq!(
        (m.name.as_str(), &m.expected[..], &m.found[..]),
        ("blocks.1.mlp.fc1.weight", &[256, 64][..], &[128, 128][..])
    );
    assert!(
        msg.contains("blocks.1.mlp.fc1.weight: model [256, 64], file [128, 128]"),
        "{msg}"
    );
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
}

#[test]
fn a_dropped_tensor_is_missing_and_an_extra_one_unexpected() {
    let dir = Scratch::new("dropped");
    let path = edited_beit(&dir, |c| {
        c.tensors.remove("blocks.0.norm2.bias");
        c.tensors.insert(
            "blocks.0.extra".into(),
            FileTensor::f32(vec![2], vec![1.0, 2.0]),
        );
    });
    let (msg, report) = mismatch_report(Model::load(&path, &opts(None)));
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].name, "blocks.0.norm2.bias");
    assert_eq!(report.unexpected, [("blocks.0.extra".to_string(), vec![2])]);
    assert!(
        msg.contains("missing from the file (1):\n  blocks.0.norm2.bias [64]"),
        "{msg}"
    );
    assert!(msg.contains("blocks.0.extra [2]"), "{msg}");
}

#[test]
fn a_wrong_relative_position_index_is_refused() {
    let dir = Scratch::new("index");
    let path = edited_beit(&dir, |c| {
        let t = c
            .tensors
            .get_mut("blocks.1.attn.relative_position_index")
            .unwrap();
        if let Values::I64(v) = &mut t.values {
            v.swap(3, 40);
        }
    });
    let (msg, report) = mismatch_report(Model::load(&path, &opts(None)));
    assert_eq!(report.invalid.len(), 1);
    assert!(
        msg.contains("blocks.1.attn.relative_position_index"),
        "{msg}"
    );
}

#[test]
fn a_transformers_file_without_a_key_weight_names_both_namings() {
    let dir = Scratch::new("no-key");
    let mut ckpt = Checkpoint::read(model_fixture("beit_hf_tiny.safetensors")).unwrap();
    ckpt.tensors
        .remove("beit.encoder.layer.1.attention.attention.key.weight");
    let path = dir.path("no-key.safetensors");
    ckpt.write(&path).unwrap();
    let (msg, report) = mismatch_report(Model::load(&path, &opts(Some("beit-tiny"))));
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].name, "blocks.1.attn.qkv.weight");
    assert_eq!(
        report.unexpected.len(),
        2,
        "query and value keep their names"
    );
    assert!(
        msg.contains("beit.encoder.layer.1.attention.attention.{query,key,value}.weight"),
        "{msg}"
    );
}

#[test]
fn a_preset_checks_every_shape_and_the_architecture() {
    let path = model_fixture("beit_timm_tiny.safetensors");
    let (_, report) = mismatch_report(Model::load(&path, &opts(Some("beit-base"))));
    // Every block-0/1 weight differs in width, and beit-base has ten more blocks.
    assert!(report.mismatched.iter().any(|m| m.name == "cls_token"));
    assert!(report
        .missing
        .iter()
        .any(|m| m.name.starts_with("blocks.11.")));
    let err = Model::load(&path, &opts(Some("resnet-101"))).err().unwrap();
    assert!(
        err.to_string().contains("holds a beit, not a resnet-101"),
        "{err}"
    );
    let err = Model::load(&path, &opts(Some("resnet"))).err().unwrap();
    assert!(
        err.to_string().contains("holds a beit, not a resnet"),
        "{err}"
    );
}

#[test]
fn a_new_class_count_reinitialises_only_the_head() {
    let path = model_fixture("resnet_timm_tiny.safetensors");
    let file = Checkpoint::read(&path).unwrap();
    let load = LoadOptions {
        num_classes: Some(7),
        proj_dim: Some(0),
        ..opts(Some("resnet-tiny"))
    };
    let (model, report) = Model::load(&path, &load).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.initialised, ["fc.weight", "fc.bias"]);
    assert!(report.notes[0].contains("file's has 10 classes, the model 7"));
    assert_eq!(model.store().get("fc.weight").unwrap().dims(), &[7, 256]);
    for (name, t) in model.parameters().filter(|(n, _)| !n.starts_with("fc.")) {
        let Values::F32(v) = &file.tensors[name].values else {
            panic!("{name} is float")
        };
        assert_eq!(&values(t), v, "{name}");
    }
}

/// Every tensor of the two models, bit for bit.
fn assert_same_tensors(a: &Model, b: &Model) {
    let names = |m: &Model| m.store().iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for e in a.store().iter() {
        assert_eq!(
            values(&e.tensor),
            values(b.store().get(&e.name).unwrap()),
            "{}",
            e.name
        );
    }
}

#[test]
fn save_then_load_is_exact() {
    let dir = Scratch::new("round-trip");
    for (file, arch) in [
        ("resnet_timm_tiny.safetensors", "resnet"),
        ("beit_hf_tiny.safetensors", "beit"),
    ] {
        let (mut model, _) = Model::load(model_fixture(file), &opts(None)).unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
        model.set_class_names(names.clone()).unwrap();
        let path = dir.path("saved.safetensors");
        model.save(&path, &SaveOptions::default()).unwrap();

        let saved = Checkpoint::read(&path).unwrap();
        assert_eq!(saved.metadata["architecture"], arch);
        assert_eq!(saved.metadata["num_classes"], "10");
        assert_eq!(
            ModelConfig::from_json(&saved.metadata["config"]).unwrap(),
            *model.config()
        );
        // timm's own names and integer buffers, so that timm loads it.
        let counters: Vec<_> = saved
            .tensors
            .iter()
            .filter(|(_, t)| !t.dtype.is_float())
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(counters
            .iter()
            .all(|n| n.ends_with("num_batches_tracked") || n.ends_with("relative_position_index")));
        assert!(!counters.is_empty());

        let (back, report) = Model::load(&path, &opts(None)).unwrap();
        assert!(report.initialised.is_empty(), "{report}");
        assert_eq!(back.config(), model.config());
        assert_eq!(back.class_names(), Some(&names[..]));
        assert_same_tensors(&model, &back);
    }
}

#[test]
fn half_precision_saves_round_weights() {
    let dir = Scratch::new("half");
    let (model, _) = Model::load(model_fixture("beit_timm_tiny.safetensors"), &opts(None)).unwrap();
    let w = values(model.store().get("blocks.0.attn.qkv.weight").unwrap());
    type Round = fn(f32) -> f32;
    let rounders: [(FileDType, Round); 2] = [
        (FileDType::F16, |x| half::f16::from_f32(x).to_f32()),
        (FileDType::BF16, |x| half::bf16::from_f32(x).to_f32()),
    ];
    for (dtype, round) in rounders {
        let path = dir.path("half.safetensors");
        let save = SaveOptions {
            dtype,
            projection_head: false,
        };
        model.save(&path, &save).unwrap();
        let header = checkpoint::read_header(&path).unwrap();
        assert_eq!(header.tensors["blocks.0.attn.qkv.weight"].0, dtype);
        assert!(!header.tensors.keys().any(|n| n.starts_with("proj.")));
        let (back, report) = Model::load(&path, &opts(None)).unwrap();
        assert_eq!(
            report.initialised.len(),
            4,
            "the projection head was not saved"
        );
        let rounded: Vec<f32> = w.iter().map(|&x| round(x)).collect();
        assert_eq!(
            values(back.store().get("blocks.0.attn.qkv.weight").unwrap()),
            rounded
        );
    }
}

#[test]
fn a_truncated_checkpoint_is_an_error_not_a_panic() {
    let dir = Scratch::new("truncated");
    let bytes = std::fs::read(model_fixture("resnet_timm_tiny.safetensors")).unwrap();
    let path = dir.path("cut.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Model::load(&path, &opts(None)).err().unwrap();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn presets_and_inference_agree_on_the_tiny_files() {
    for (file, preset) in [
        ("beit_timm_tiny.safetensors", "beit-tiny"),
        ("resnet_timm_tiny.safetensors", "resnet-tiny"),
    ] {
        let header = checkpoint::read_header(&model_fixture(file)).unwrap();
        let shapes: BTreeMap<_, _> = header
            .tensors
            .into_iter()
            .map(|(n, (_, s))| (n, s))
            .collect();
        let arch = match ModelConfig::preset(preset).unwrap().arch {
            Architecture::Beit(_) => ArchKind::Beit,
            Architecture::ResNet(_) => ArchKind::ResNet,
        };
        let inferred = config::infer(arch, &shapes).unwrap();
        assert_eq!(inferred.arch, ModelConfig::preset(preset).unwrap().arch);
        assert_eq!(inferred.num_classes, Some(10));
    }
}

#[test]
fn what_we_save_is_what_timm_saved() {
    // The transformers BEiT written in timm's naming, and the timm ResNet written back, hold
    // exactly the tensors timm itself wrote: names, dtypes, shapes, values, integer buffers.
    for (source, timm_file) in [
        ("beit_hf_tiny.safetensors", "beit_timm_tiny.safetensors"),
        (
            "resnet_timm_tiny.safetensors",
            "resnet_timm_tiny.safetensors",
        ),
    ] {
        let load = LoadOptions {
            proj_dim: Some(0),
            ..opts(None)
        };
        let (model, _) = Model::load(model_fixture(source), &load).unwrap();
        let ours = model.to_checkpoint(&SaveOptions::default()).unwrap();
        let timm = Checkpoint::read(model_fixture(timm_file)).unwrap();
        assert_eq!(ours.tensors, timm.tensors, "{source} vs {timm_file}");
    }
}
