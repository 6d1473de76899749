use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::Error;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "clce-checkpoint-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sample() -> Checkpoint {
    let mut tensors = BTreeMap::new();
    let values = vec![0.5f32, -1.25, 3.0, 1e-3, -7.5, 0.0];
    for (name, dtype) in [
        ("a.f32", FileDType::F32),
        ("b.f16", FileDType::F16),
        ("c.bf16", FileDType::BF16),
        ("d.f64", FileDType::F64),
    ] {
        tensors.insert(
            name.to_string(),
            FileTensor {
                dtype,
                shape: vec![2, 3],
                values: Values::F32(values.clone()),
            },
        );
    }
    tensors.insert("e.i64".into(), FileTensor::i64(vec![], vec![-42]));
    let mut metadata = BTreeMap::new();
    metadata.insert("config".to_string(), "{\"x\": 1}".to_string());
    Checkpoint { tensors, metadata }
}

#[test]
fn every_dtype_round_trips_through_a_file() {
    let dir = Scratch::new("dtypes");
    let path = dir.path("x.safetensors");
    let ckpt = sample();
    ckpt.write(&path).unwrap();
    let back = Checkpoint::read(&path).unwrap();
    assert_eq!(back.metadata, ckpt.metadata);
    assert_eq!(back.tensors.len(), ckpt.tensors.len());
    for (name, t) in &ckpt.tensors {
        let b = &back.tensors[name];
        assert_eq!((b.dtype, &b.shape), (t.dtype, &t.shape), "{name}");
    }
    // The sample values are exact in every float type except 1e-3.
    let Values::F32(f16) = &back.tensors["b.f16"].values else {
        panic!("floats read as f32")
    };
    assert_eq!(f16[..3], [0.5, -1.25, 3.0]);
    assert!((f16[3] - 1e-3).abs() < 1e-6);
    let Values::F32(bf16) = &back.tensors["c.bf16"].values else {
        panic!("floats read as f32")
    };
    assert!((bf16[3] - 1e-3).abs() < 1e-5);
    assert_eq!(back.tensors["a.f32"], ckpt.tensors["a.f32"]);
    assert_eq!(back.tensors["e.i64"].values, Values::I64(vec![-42]));

    let header = read_header(&path).unwrap();
    assert_eq!(header.tensors["b.f16"], (FileDType::F16, vec![2, 3]));
}

fn format_message(result: crate::Result<Checkpoint>) -> String {
    match result {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("expected a format error, the file loaded"),
    }
}

#[test]
fn truncated_and_corrupt_files_are_clear_errors() {
    let dir = Scratch::new("corrupt");
    let good = dir.path("good.safetensors");
    sample().write(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let cut = dir.path("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let msg = format_message(Checkpoint::read(&cut));
    assert!(msg.contains("truncated"), "{msg}");

    let header_cut = dir.path("header_cut.safetensors");
    std::fs::write(&header_cut, &bytes[..20]).unwrap();
    let msg = format_message(Checkpoint::read(&header_cut));
    assert!(msg.contains("truncated or corrupt"), "{msg}");

    let tiny = dir.path("tiny.safetensors");
    std::fs::write(&tiny, b"abc").unwrap();
    let msg = format_message(Checkpoint::read(&tiny));
    assert!(msg.contains("only 3 bytes"), "{msg}");

    let mut garbled = bytes.clone();
    garbled[8] = b'#';
    let garbled_path = dir.path("garbled.safetensors");
    std::fs::write(&garbled_path, &garbled).unwrap();
    let msg = format_message(Checkpoint::read(&garbled_path));
    assert!(msg.contains("unreadable header"), "{msg}");

    let mut longer = bytes.clone();
    longer.extend([0u8; 4]);
    let longer_path = dir.path("longer.safetensors");
    std::fs::write(&longer_path, &longer).unwrap();
    let msg = format_message(Checkpoint::read(&longer_path));
    assert!(msg.contains("trailing bytes"), "{msg}");

    let missing = Checkpoint::read(dir.path("nope.safetensors"));
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[test]
fn unsupported_dtypes_are_named() {
    let dir = Scratch::new("dtype");
    let path = dir.path("u8.safetensors");
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![2], &[1, 2]).unwrap();
    safetensors::serialize_to_file([("mask", view)], None, &path).unwrap();
    let msg = format_message(Checkpoint::read(&path));
    assert!(msg.contains("mask") && msg.contains("U8"), "{msg}");
}

fn shape_only(entries: &[(&str, &[usize])]) -> BTreeMap<String, (FileDType, Vec<usize>)> {
    entries
        .iter()
        .map(|(n, s)| (n.to_string(), (FileDType::F32, s.to_vec())))
        .collect()
}

#[test]
fn transformers_qkv_is_fused_in_query_key_value_order() {
    let p = "beit.encoder.layer.0.attention.attention";
    let mut tensors = BTreeMap::new();
    for (i, part) in ["query", "key", "value"].iter().enumerate() {
        tensors.insert(
            format!("{p}.{part}.weight"),
            FileTensor::f32(vec![1, 2], vec![i as f32, 10.0 + i as f32]),
        );
    }
    tensors.insert(
        "beit.pooler.layernorm.weight".into(),
        FileTensor::f32(vec![2], vec![1.0, 1.0]),
    );
    let r = to_timm_names(tensors).unwrap();
    assert_eq!((r.arch, r.naming), (ArchKind::Beit, Naming::Transformers));
    let qkv = &r.tensors["blocks.0.attn.qkv.weight"];
    assert_eq!(qkv.shape, vec![3, 2]);
    assert_eq!(
        qkv.values,
        Values::F32(vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0])
    );
    assert!(r.tensors.contains_key("fc_norm.weight"));
    assert!(r.origins["blocks.0.attn.qkv.weight"].contains("key.weight"));
}

#[test]
fn qkv_parts_that_cannot_be_fused_keep_their_names() {
    let p = "beit.encoder.layer.3.attention.attention";
    let r = to_timm_names(shape_only(&[
        (&format!("{p}.query.weight"), &[4, 4]),
        (&format!("{p}.value.weight"), &[4, 4]),
        ("beit.unknown.thing", &[1]),
    ]))
    .unwrap();
    let names: Vec<&str> = r.tensors.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "beit.encoder.layer.3.attention.attention.query.weight",
            "beit.encoder.layer.3.attention.attention.value.weight",
            "beit.unknown.thing",
        ]
    );
}

#[test]
fn unknown_names_say_what_was_expected() {
    let err = to_timm_names(shape_only(&[("encoder.weight", &[3])]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot tell the architecture") && err.contains("encoder.weight"));
}

#[test]
fn resnet_names_map_both_ways() {
    use naming::{timm_to_transformers, transformers_to_timm, TimmName};
    let cases = [
        (
            "resnet.embedder.embedder.convolution.weight",
            "conv1.weight",
        ),
        (
            "resnet.embedder.embedder.normalization.running_var",
            "bn1.running_var",
        ),
        (
            "resnet.encoder.stages.2.layers.17.layer.1.convolution.weight",
            "layer3.17.conv2.weight",
        ),
        (
            "resnet.encoder.stages.0.layers.0.layer.2.normalization.num_batches_tracked",
            "layer1.0.bn3.num_batches_tracked",
        ),
        (
            "resnet.encoder.stages.3.layers.0.shortcut.convolution.weight",
            "layer4.0.downsample.0.weight",
        ),
        (
            "resnet.encoder.stages.1.layers.0.shortcut.normalization.bias",
            "layer2.0.downsample.1.bias",
        ),
        ("classifier.1.weight", "fc.weight"),
    ];
    for (hf, timm) in cases {
        assert_eq!(
            transformers_to_timm(ArchKind::ResNet, hf),
            Some(TimmName::Is(timm.to_string()))
        );
        assert_eq!(
            timm_to_transformers(ArchKind::ResNet, timm).as_deref(),
            Some(hf)
        );
    }
    assert_eq!(
        transformers_to_timm(
            ArchKind::ResNet,
            "resnet.encoder.stages.0.layers.0.layer.0.foo"
        ),
        None
    );
}
