//! The GPU updates against the CPU ones: same f32 parameters and gradients, a few steps.
use super::set_grad;
use crate::gpu::testing::test_device;
use crate::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use crate::{DType, Device, Tensor};

/// Shapes of awkward sizes (1, primes, a multiple of the workgroup and one past it), more of
/// them than one AdamW dispatch takes, so that dispatches split parameters and groups.
fn shapes() -> Vec<Vec<usize>> {
    vec![
        vec![5, 67],
        vec![3],
        vec![1],
        vec![256],
        vec![257],
        vec![7, 1],
        vec![2, 3, 5],
        vec![1],
        vec![13],
        vec![31, 9],
        vec![2],
    ]
}

/// Parameters of `shapes()` on `device`, with the values every run starts from.
fn params(device: &Device) -> Vec<Tensor> {
    shapes()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Tensor::randn(s, 1.0, 10 + i as u64, DType::F32, &Device::Cpu)
                .unwrap()
                .to_device(device)
                .unwrap()
                .set_requires_grad(true)
        })
        .collect()
}

/// Three steps with fixed gradients; returns the parameters and the optimiser state.
fn run(device: &Device, make: &dyn Fn(Vec<ParamGroup>) -> Box<dyn Optimizer>) -> Vec<Vec<f64>> {
    let ps = params(device);
    // Three groups of different lr scale and decay; the last parameter gets no gradient in
    // the second step, so the parameters' step counts differ.
    let mut groups = vec![
        ParamGroup::new(1.0, 0.05),
        ParamGroup::new(0.5, 0.0),
        ParamGroup::new(0.25, 0.1),
    ];
    for (i, p) in ps.iter().enumerate() {
        groups[i % 3].push(format!("p{i}"), p);
    }
    let mut opt = make(groups);
    // A view taken before the steps must see every update.
    let view = ps[0].reshape([5 * 67]).unwrap();
    for step in 0..3u64 {
        for (i, p) in ps.iter().enumerate() {
            if step == 1 && i + 1 == ps.len() {
                p.zero_grad();
                continue;
            }
            let g = Tensor::randn(
                p.shape().clone(),
                1.0,
                100 * step + i as u64,
                DType::F64,
                &Device::Cpu,
            )
            .unwrap()
            .to_vec_f64()
            .unwrap();
            set_grad(p, &g);
        }
        opt.step(0.01).unwrap();
    }
    assert_eq!(view.to_vec_f64().unwrap(), ps[0].to_vec_f64().unwrap());
    let mut out: Vec<Vec<f64>> = ps.iter().map(|p| p.to_vec_f64().unwrap()).collect();
    for (_, t) in opt.state_dict().unwrap() {
        assert!(t.device().is_cpu(), "state_dict holds CPU copies");
        out.push(t.to_vec_f64().unwrap());
    }
    out
}

fn assert_same_on_gpu(make: &dyn Fn(Vec<ParamGroup>) -> Box<dyn Optimizer>) {
    let Some(gpu) = test_device() else { return };
    let want = run(&Device::Cpu, make);
    let got = run(&gpu, make);
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(&got) {
        for (a, b) in w.iter().zip(g) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn adamw_matches_the_cpu() {
    assert_same_on_gpu(&|groups| Box::new(AdamW::new(groups, AdamWConfig::default()).unwrap()));
}

#[test]
fn sgd_matches_the_cpu() {
    for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
        let config = SgdConfig { momentum, nesterov };
        assert_same_on_gpu(&|groups| Box::new(Sgd::new(groups, config).unwrap()));
    }
}

#[test]
fn adamw_updates_several_parameters_per_dispatch() {
    // A device of its own: GPU tests running at the same time would add to a shared one's
    // dispatch count.
    let Some(device) = crate::gpu::testing::private_test_device() else {
        return;
    };
    let Device::Gpu(gpu) = &device else { return };
    let ps = params(&device);
    let mut group = ParamGroup::new(1.0, 0.05);
    for (i, p) in ps.iter().enumerate() {
        group.push(format!("p{i}"), p);
        set_grad(p, &vec![0.5; p.numel()]);
    }
    let mut opt = AdamW::new(vec![group], AdamWConfig::default()).unwrap();
    opt.step(0.01).unwrap();
    let before = device.gpu_counters().unwrap();
    opt.step(0.01).unwrap();
    let dispatches = device.gpu_counters().unwrap().since(&before).dispatches;
    let per_launch = crate::optim::gpu::adamw_slots_per_launch(gpu);
    assert_eq!(dispatches as usize, ps.len().div_ceil(per_launch));
    eprintln!("{} parameters: {dispatches} AdamW dispatches", ps.len());
}
