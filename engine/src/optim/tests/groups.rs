use super::{param, set_grad, values};
use crate::optim::{skips_weight_decay, AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd};
use crate::{Error, Shape, Tensor};

fn adamw(groups: Vec<ParamGroup>) -> crate::Result<AdamW> {
    AdamW::new(groups, AdamWConfig::default())
}

#[test]
fn parameters_must_be_trainable_leaves_listed_once() {
    let w = param(&[1.0, 2.0]);
    let err = |groups| adamw(groups).err().expect("an error").to_string();

    let frozen = w.detach();
    let msg = err(vec![ParamGroup::new(1.0, 0.0).with("frozen", &frozen)]);
    assert!(
        msg.contains("\"frozen\"") && msg.contains("set_requires_grad(true)"),
        "{msg}"
    );

    let computed = w.mul_scalar(2.0).unwrap();
    let msg = err(vec![ParamGroup::new(1.0, 0.0).with("computed", &computed)]);
    assert!(msg.contains("not a leaf"), "{msg}");

    // The same storage twice, here across groups, would be updated twice per step.
    let msg = err(vec![
        ParamGroup::new(1.0, 0.0).with("w", &w),
        ParamGroup::new(0.5, 0.0).with("w_again", &w.set_requires_grad(true)),
    ]);
    assert!(
        msg.contains("parameter 1") && msg.contains("shares its storage"),
        "{msg}"
    );

    assert!(adamw(vec![ParamGroup::new(-1.0, 0.0).with("w", &w)]).is_err());
    assert!(adamw(vec![ParamGroup::new(1.0, f64::INFINITY).with("w", &w)]).is_err());
    assert!(Sgd::new(
        vec![ParamGroup::new(1.0, 0.0).with("f", &frozen)],
        Default::default()
    )
    .is_err());
}

#[test]
fn a_bad_gradient_fails_the_step_before_any_parameter_changes() {
    let a = param(&[1.0, 2.0]);
    let b = param(&[3.0, 4.0]);
    let mut opt = adamw(vec![ParamGroup::new(1.0, 0.1).with("a", &a).with("b", &b)]).unwrap();
    set_grad(&a, &[1.0, 1.0]);
    b.set_grad(Some(param(&[1.0, 2.0, 3.0]).detach()));
    let err = opt.step(0.1).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert_eq!(values(&a), vec![1.0, 2.0]);
    assert_eq!(values(&b), vec![3.0, 4.0]);
}

#[test]
fn zero_grad_and_params_cover_every_group() {
    let a = param(&[1.0]);
    let b = param(&[2.0]);
    let opt = adamw(vec![
        ParamGroup::new(1.0, 0.1).with("a", &a),
        ParamGroup::new(0.5, 0.0).with("", &b),
    ])
    .unwrap();
    let ids: Vec<_> = opt.params().iter().map(Tensor::id).collect();
    assert_eq!(ids, vec![a.id(), b.id()]);
    set_grad(&a, &[1.0]);
    set_grad(&b, &[1.0]);
    opt.zero_grad();
    assert!(a.grad().is_none() && b.grad().is_none());
}

#[test]
fn weight_decay_skips_vectors_tokens_and_position_tables() {
    let decays = |name: &str, dims: &[usize]| !skips_weight_decay(name, &Shape::from(dims));
    // timm naming
    assert!(decays("blocks.0.attn.qkv.weight", &[2304, 768]));
    assert!(decays("patch_embed.proj.weight", &[768, 3, 16, 16]));
    assert!(!decays("blocks.0.attn.q_bias", &[768]));
    assert!(!decays("blocks.0.norm1.weight", &[768]));
    assert!(!decays("blocks.0.gamma_1", &[768]));
    assert!(!decays("cls_token", &[1, 1, 768]));
    assert!(!decays(
        "blocks.0.attn.relative_position_bias_table",
        &[732, 12]
    ));
    // transformers naming
    assert!(decays(
        "beit.encoder.layer.0.attention.attention.query.weight",
        &[768, 768]
    ));
    assert!(!decays("beit.embeddings.cls_token", &[1, 1, 768]));
    assert!(!decays(
        "beit.encoder.layer.0.attention.attention.relative_position_bias.relative_position_bias_table",
        &[732, 12]
    ));
    assert!(!decays("beit.encoder.layer.0.lambda_1", &[768]));
    // ResNet
    assert!(decays("layer1.0.conv1.weight", &[64, 64, 1, 1]));
    assert!(!decays("layer1.0.bn1.weight", &[64]));
    assert!(!decays("fc.bias", &[1000]));
}
