use super::ModelConfig;

fn preset(name: &str) -> ModelConfig {
    ModelConfig::preset(name).unwrap()
}

#[test]
fn beit_tiny_flops_match_a_hand_count() {
    // 32 px, patch 8: 16 patches + cls = 17 tokens of width 64, MLP 256, 2 blocks, 10 classes,
    // projection 64 -> 64 -> 128.
    let patch_embed = 16 * 64 * (3 * 8 * 8); // 196,608
    let qkv = 17 * 64 * 192; // 208,896
    let scores_and_mix = 2 * 4 * 17 * 17 * 16; // 36,992 (4 heads of 16)
    let out_proj = 17 * 64 * 64; // 69,632
    let mlp = 2 * 17 * 64 * 256; // 557,056
    let heads = 64 * 10 + 64 * 64 + 64 * 128; // 12,928
    let macs = patch_embed + 2 * (qkv + scores_and_mix + out_proj + mlp) + heads;
    let c = preset("beit-tiny");
    assert_eq!(c.forward_flops(32), 2 * macs);
    assert_eq!(c.train_flops(256, 32), 3 * 256 * 2 * macs);
}

#[test]
fn resnet_tiny_flops_match_a_hand_count() {
    // 32 px: stem 7x7/2 -> 16x16 x 64, max pool -> 8x8. Stages of widths 8, 16, 32, 64 (x4
    // out), blocks [1, 2, 1, 1]; the first block of stages 2-4 strides by 2.
    let conv = |hw: usize, cin: usize, cout: usize, k: usize| hw * hw * cin * cout * k * k;
    let stem = conv(16, 3, 64, 7);
    let block = |hw_in: usize, hw: usize, cin: usize, w: usize, down: bool| {
        conv(hw_in, cin, w, 1)
            + conv(hw, w, w, 3)
            + conv(hw, w, 4 * w, 1)
            + if down { conv(hw, cin, 4 * w, 1) } else { 0 }
    };
    let stages = block(8, 8, 64, 8, true) // 64 -> 32 channels: a downsample, no stride
        + block(8, 4, 32, 16, true)
        + block(4, 4, 64, 16, false)
        + block(4, 2, 64, 32, true)
        + block(2, 1, 128, 64, true);
    let heads = 256 * 10 + 256 * 256 + 256 * 128;
    let c = preset("resnet-tiny");
    assert_eq!(c.forward_flops(32), 2 * (stem + stages + heads) as u64);
}

#[test]
fn full_size_flops_match_the_published_counts() {
    // timm / torchvision list multiply-adds per 224 px image: beit_base_patch16_224 17.6 G,
    // resnet101 7.8 G (with their 1000-class heads, which these presets have).
    let gmacs = |name: &str| preset(name).forward_flops(224) as f64 / 2e9;
    assert!(
        (gmacs("beit-base") - 17.6).abs() < 0.1,
        "{}",
        gmacs("beit-base")
    );
    assert!(
        (gmacs("resnet-101") - 7.8).abs() < 0.1,
        "{}",
        gmacs("resnet-101")
    );
    // A ResNet's count scales with the pixels (up to the rounding of the strides).
    let r = preset("resnet-101");
    let ratio = r.forward_flops(448) as f64 / r.forward_flops(224) as f64;
    assert!((ratio - 4.0).abs() < 0.05, "{ratio}");
}
