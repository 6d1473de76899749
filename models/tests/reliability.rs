//! What keeps a model file trustworthy: the projection head kept beside a timm-loadable
//! model file, non-finite weights refused by name, a misshapen head reported once, and the
//! f64 copy the gradient check compares with.
mod common;

use clce_engine::{DType, Device, Tensor};
use clce_models::checkpoint::{Checkpoint, Values};
use clce_models::model::proj_head_path;
use clce_models::{Error, LoadOptions, Mode, Model, ModelConfig, SaveOptions};
use common::Scratch;

fn tiny(name: &str) -> Model {
    Model::new(ModelConfig::preset(name).unwrap(), &Device::Cpu, 7).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec_f32().unwrap()
}

#[test]
fn the_projection_head_is_kept_beside_the_model_file() {
    let dir = Scratch::new("split");
    for preset in ["resnet-tiny", "beit-tiny"] {
        let model = tiny(preset);
        let path = dir.path(&format!("{preset}.safetensors"));
        let head = proj_head_path(&path);
        assert_eq!(
            head.file_name().unwrap().to_str().unwrap(),
            format!("{preset}.proj_head.safetensors")
        );
        model
            .save_with_head(&path, &head, &SaveOptions::default())
            .unwrap();
        let file = Checkpoint::read(&path).unwrap();
        assert!(file.tensors.keys().all(|n| !n.starts_with("proj.")));
        let head_file = Checkpoint::read(&head).unwrap();
        let names: Vec<&str> = head_file.tensors.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "proj.0.bias",
                "proj.0.weight",
                "proj.2.bias",
                "proj.2.weight"
            ]
        );

        let (back, report) = Model::load(&path, &LoadOptions::default()).unwrap();
        assert!(report.initialised.is_empty(), "{report}");
        assert!(report
            .to_string()
            .contains("projection head (4 tensors) read from"));
        for e in model.store().iter() {
            let got = back.store().get(&e.name).unwrap();
            assert_eq!(values(&e.tensor), values(got), "{}", e.name);
        }

        // Without the head file the model still loads, with a fresh head, and says so.
        std::fs::remove_file(&head).unwrap();
        let (_, report) = Model::load(&path, &LoadOptions::default()).unwrap();
        assert!(!report.initialised.is_empty(), "{report}");

        // A single file of an earlier version (head inside) loads its own head, even with
        // a head file beside it.
        let single = dir.path(&format!("{preset}-single.safetensors"));
        model.save(&single, &SaveOptions::default()).unwrap();
        tiny(preset)
            .save_with_head(
                dir.path("other.safetensors"),
                proj_head_path(&single),
                &SaveOptions::default(),
            )
            .unwrap();
        let (back, report) = Model::load(&single, &LoadOptions::default()).unwrap();
        assert!(report.initialised.is_empty(), "{report}");
        let w = "proj.2.weight";
        assert_eq!(
            values(back.store().get(w).unwrap()),
            values(model.store().get(w).unwrap())
        );
    }
}

#[test]
fn non_finite_weights_are_refused_by_name_and_count() {
    let dir = Scratch::new("non-finite");
    let path = dir.path("bad.safetensors");
    tiny("resnet-tiny")
        .save(&path, &SaveOptions::default())
        .unwrap();
    let mut file = Checkpoint::read(&path).unwrap();
    let mut sizes = Vec::new();
    for (name, bad) in [
        ("fc.weight", [f32::NAN, f32::NAN].as_slice()),
        ("layer1.0.bn1.running_var", [f32::NEG_INFINITY].as_slice()),
    ] {
        let Values::F32(v) = &mut file.tensors.get_mut(name).unwrap().values else {
            panic!("{name} is a float tensor")
        };
        v[..bad.len()].copy_from_slice(bad);
        sizes.push(v.len());
    }
    file.write(&path).unwrap();
    let err = match Model::load(&path, &LoadOptions::default()) {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("NaN weights loaded"),
    };
    let fc = format!(
        "fc.weight: 2 of {} values are not finite (2 NaN, 0 infinite)",
        sizes[0]
    );
    assert!(err.contains(&fc), "{err}");
    let bn = format!(
        "layer1.0.bn1.running_var: 1 of {} values are not finite (0 NaN, 1 infinite)",
        sizes[1]
    );
    assert!(err.contains(&bn), "{err}");
}

#[test]
fn a_head_weight_that_is_not_a_matrix_is_one_problem() {
    let dir = Scratch::new("scalar-head");
    let path = dir.path("scalar.safetensors");
    tiny("resnet-tiny")
        .save(&path, &SaveOptions::default())
        .unwrap();
    let mut file = Checkpoint::read(&path).unwrap();
    let fc = file.tensors.get_mut("fc.weight").unwrap();
    fc.shape = vec![];
    fc.values = Values::F32(vec![1.5]);
    file.write(&path).unwrap();
    let msg = match Model::load(&path, &LoadOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a 0-d head loaded"),
    };
    assert!(msg.contains("fc.weight"), "{msg}");
    assert!(!msg.contains("no classifier head"), "{msg}");
    // Without the file's config (or a preset) to say the class count, the error says why.
    file.metadata.clear();
    file.write(&path).unwrap();
    let opts = LoadOptions {
        model: Some("resnet".into()),
        ..LoadOptions::default()
    };
    let msg = match Model::load(&path, &opts) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a 0-d head loaded"),
    };
    assert!(msg.contains("has shape []"), "{msg}");
}

/// The gradient check's reference: every float tensor in f64 on the CPU, the same values,
/// and the same outputs to f32 rounding.
#[test]
fn an_f64_copy_computes_what_the_model_computes() {
    for preset in ["resnet-tiny", "beit-tiny"] {
        let model = tiny(preset);
        let wide = model.converted(&Device::Cpu, DType::F64).unwrap();
        for e in wide.store().iter().filter(|e| !e.role.is_integer()) {
            assert_eq!(e.tensor.dtype(), DType::F64, "{}", e.name);
            let narrow = model.store().get(&e.name).unwrap();
            assert_eq!(values(&e.tensor), values(narrow), "{}", e.name);
        }
        let side = model.config().image_size();
        let x = Tensor::randn([2, 3, side, side], 1.0, 5, DType::F32, &Device::Cpu).unwrap();
        let a = model
            .forward(&x, Mode::Eval)
            .unwrap()
            .logits
            .to_vec_f64()
            .unwrap();
        let x64 = x.to_dtype(DType::F64).unwrap();
        let b = wide
            .forward(&x64, Mode::Eval)
            .unwrap()
            .logits
            .to_vec_f64()
            .unwrap();
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-4 * scale, "{preset}: {a} vs {b}");
        }
    }
}
