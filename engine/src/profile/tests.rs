use std::time::Instant;

use super::{start, stop, Family, Phase, Profile};
use crate::{DType, Device, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape.to_vec(), 1.0, seed, DType::F32, &Device::Cpu).unwrap()
}

/// A small layer (matmul -> LayerNorm -> GELU -> sum), its backward and a hand-written SGD
/// update, profiled and timed around.
fn profiled_step() -> (Profile, f64) {
    let w = randn(&[64, 64], 1).set_requires_grad(true);
    let x = randn(&[256, 64], 2);
    let started = Instant::now();
    start();
    let y = x.matmul(&w).unwrap().layer_norm(None, None, 1e-5).unwrap();
    let loss = y.gelu().unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    let g = w.grad().unwrap();
    let _update = w.sub(&g.mul_scalar(0.1).unwrap()).unwrap();
    let profile = stop();
    (profile, started.elapsed().as_secs_f64())
}

#[test]
fn families_add_up_to_the_step_and_land_where_the_ops_ran() {
    let (p, wall) = profiled_step();
    // Every lap charges the time since the previous one, so the table covers the whole
    // profiled stretch: its total is the wall time up to the two Instant reads outside it.
    assert!(p.total() <= wall, "{} > {wall}", p.total());
    assert!(p.total() >= 0.9 * wall, "{} of {wall}", p.total());
    for (phase, family) in [
        (Phase::Forward, Family::Matmul),
        (Phase::Forward, Family::Norm),
        (Phase::Forward, Family::Elementwise),
        (Phase::Forward, Family::Tape),
        (Phase::Backward, Family::Matmul),
        (Phase::Backward, Family::Norm),
        (Phase::Backward, Family::Elementwise),
        (Phase::Backward, Family::Tape),
        (Phase::Update, Family::Optimiser),
    ] {
        assert!(
            p.get(phase, family) > 0.0,
            "nothing in {phase:?} {family:?}: {p:?}"
        );
    }
    // Nothing here is a convolution or attention; the update is all optimiser.
    for phase in Phase::ALL {
        assert_eq!(p.get(phase, Family::Conv), 0.0);
        assert_eq!(p.get(phase, Family::Attention), 0.0);
    }
    assert_eq!(
        p.phase_total(Phase::Update),
        p.get(Phase::Update, Family::Optimiser)
    );
}

#[test]
fn nothing_is_recorded_without_start() {
    let w = randn(&[8, 8], 3).set_requires_grad(true);
    w.matmul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(stop(), Profile::default());
}

#[test]
fn ops_map_to_their_families() {
    assert_eq!(Family::of_op("conv2d"), Family::Conv);
    assert_eq!(Family::of_op("attention"), Family::Attention);
    assert_eq!(Family::of_op("lacln"), Family::Loss);
    assert_eq!(Family::of_op("permute"), Family::Layout);
    assert_eq!(Family::of_op("no such op"), Family::Other);
}
