//! The parameter store as the optimiser sees it: stable order, trainable tensors separate from
//! buffers, weight-decay and layer-wise lr-decay groups.
use clce_engine::Device;
use clce_models::{Model, ModelConfig, Role};

fn tiny(preset: &str) -> Model {
    Model::new(ModelConfig::preset(preset).unwrap(), &Device::Cpu, 3).unwrap()
}

#[test]
fn beit_layer_ids_follow_the_blocks() {
    let m = tiny("beit-tiny");
    assert_eq!(m.num_layer_ids(), 4);
    for (name, id) in [
        ("cls_token", 0),
        ("patch_embed.proj.weight", 0),
        ("blocks.0.attn.relative_position_bias_table", 1),
        ("blocks.1.gamma_2", 2),
        ("fc_norm.weight", 3),
        ("head.bias", 3),
        ("proj.2.weight", 3),
    ] {
        assert_eq!(m.layer_id(name), id, "{name}");
    }
}

#[test]
fn param_groups_split_decay_and_scale_lr_by_layer() {
    let m = tiny("beit-tiny");
    let groups = m.param_groups(0.05, Some(0.5));
    let find = |name: &str| {
        groups
            .iter()
            .find(|g| g.params.iter().any(|p| p.name == name))
            .unwrap_or_else(|| panic!("{name} in no group"))
    };
    for (name, lr_scale, decay) in [
        ("cls_token", 0.125, 0.0),
        ("patch_embed.proj.weight", 0.125, 0.05),
        ("blocks.0.attn.qkv.weight", 0.25, 0.05),
        ("blocks.0.attn.q_bias", 0.25, 0.0),
        ("blocks.0.attn.relative_position_bias_table", 0.25, 0.0),
        ("blocks.1.gamma_1", 0.5, 0.0),
        ("blocks.1.mlp.fc2.weight", 0.5, 0.05),
        ("head.weight", 1.0, 0.05),
        ("fc_norm.bias", 1.0, 0.0),
    ] {
        let g = find(name);
        assert_eq!((g.lr_scale, g.weight_decay), (lr_scale, decay), "{name}");
    }
    let grouped: usize = groups.iter().map(|g| g.params.len()).sum();
    assert_eq!(grouped, m.parameters().count());
    assert!(groups
        .iter()
        .all(|g| g.params.iter().all(|p| p.tensor.requires_grad())));
    // Without layer decay every group has the full lr.
    assert!(m.param_groups(0.05, None).iter().all(|g| g.lr_scale == 1.0));
}

#[test]
fn buffers_are_kept_apart_in_a_stable_order() {
    let m = tiny("resnet-tiny");
    let names: Vec<&str> = m.store().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names[..7],
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "layer1.0.conv1.weight",
        ]
    );
    let again = tiny("resnet-tiny");
    let again: Vec<&str> = again.store().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, again);
    for (name, t) in m.buffers() {
        assert!(!t.requires_grad(), "{name}");
        let role = m.store().entry(name).unwrap().role;
        assert!(matches!(role, Role::Buffer | Role::Counter), "{name}");
    }
    assert!(m
        .parameters()
        .all(|(_, t)| t.requires_grad() && t.is_leaf()));
    // stem + 5 blocks x 3 + 4 shortcuts = 20 BatchNorms, 3 buffers each.
    assert_eq!(m.buffers().count(), 3 * 20);
}

#[test]
fn initialisation_is_seeded_per_name() {
    let a = tiny("beit-tiny");
    let b = tiny("beit-tiny");
    let c = Model::new(ModelConfig::preset("beit-tiny").unwrap(), &Device::Cpu, 4).unwrap();
    let w = |m: &Model| {
        m.store()
            .get("blocks.1.attn.qkv.weight")
            .unwrap()
            .to_vec_f32()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b));
    assert_ne!(w(&a), w(&c));
}
