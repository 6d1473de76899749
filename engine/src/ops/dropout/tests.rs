use super::{pcg_hash, random_bits, seed_key, SamplePlace};
use crate::{DType, Device, Tensor};

fn ones(shape: &[usize]) -> Tensor {
    Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap()
}

/// Which elements survive dropout(p, seed) of a tensor of ones.
fn kept(p: f64, seed: u64, n: usize) -> Vec<bool> {
    let y = ones(&[n]).dropout(p, seed).unwrap().to_vec_f64().unwrap();
    y.iter().map(|&v| v != 0.0).collect()
}

#[test]
fn hash_matches_the_published_pcg_hash() {
    // Reference values from a separate implementation of the paper's pcg_hash.
    assert_eq!(pcg_hash(0), 129708002);
    assert_eq!(pcg_hash(1), 2831084092);
    assert_eq!(pcg_hash(12345), 4099845390);
    assert_eq!(pcg_hash(u32::MAX), 3861530882);
}

#[test]
fn dropped_fraction_is_p_and_survivors_are_scaled() {
    let n = 100_003;
    for p in [0.1, 0.3, 0.5, 0.9] {
        let y = ones(&[n]).dropout(p, 5).unwrap().to_vec_f64().unwrap();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        // The binomial standard deviation is below 0.0016; allow six of them.
        assert!((dropped - p).abs() < 0.01, "p = {p}: dropped {dropped}");
        let scale = (1.0 / (1.0 - p)) as f32 as f64;
        assert!(y.iter().all(|&v| v == 0.0 || v == scale));
    }
}

#[test]
fn same_seed_same_mask_other_seed_independent_mask() {
    let n = 20_011;
    let a = kept(0.5, 17, n);
    assert_eq!(a, kept(0.5, 17, n));
    for other in [18, 17 + (1 << 32), u64::MAX] {
        let b = kept(0.5, other, n);
        // Independent masks agree on about half the elements.
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64;
        assert!(
            (agree - 0.5).abs() < 0.03,
            "seed {other}: agreement {agree}"
        );
    }
    assert_ne!(seed_key(1), seed_key(2));
    assert_ne!(seed_key(1), seed_key(1 << 32));
    assert_ne!(random_bits(seed_key(1), 0), random_bits(seed_key(2), 0));
}

#[test]
fn drop_path_drops_whole_samples() {
    let (n, size) = (2003, 6);
    let y = ones(&[n, 2, 3])
        .drop_path(0.25, 9)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let scale = (1.0f64 / 0.75) as f32 as f64;
    let mut dropped = 0;
    for sample in y.chunks(size) {
        assert!(
            sample.iter().all(|&v| v == 0.0) || sample.iter().all(|&v| v == scale),
            "{sample:?}"
        );
        dropped += (sample[0] == 0.0) as usize;
    }
    let frac = dropped as f64 / n as f64;
    assert!((frac - 0.25).abs() < 0.05, "dropped {frac}");
}

#[test]
fn gradient_is_the_same_mask() {
    let x = Tensor::randn([3, 41], 1.0, 1, DType::F64, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let y = x.dropout(0.4, 123).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    let (xv, yv) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    let g = x.grad().unwrap().to_vec_f64().unwrap();
    for ((x, y), g) in xv.iter().zip(&yv).zip(&g) {
        let expected = if *y == 0.0 { 0.0 } else { 1.0 / 0.6 };
        assert!((g - expected).abs() < 1e-12 && (y - x * expected).abs() < 1e-12);
    }
}

/// A batch in slices draws the masks of the whole batch: slice [a, b) of drop_path(x) is
/// drop_path_from of x's slice [a, b) started at a.
fn assert_slices_draw_the_whole_batch_mask(device: &Device) {
    let n = 37;
    let x = Tensor::randn([n, 3, 5], 1.0, 8, DType::F32, device).unwrap();
    let whole = x.drop_path(0.5, 21).unwrap().to_vec_f32().unwrap();
    let mut start = 0;
    for len in [1, 2, 3, 5, 7, 11, 8] {
        let slice = x.narrow(0, start, len).unwrap();
        let y = slice.drop_path_from(0.5, 21, start).unwrap();
        assert_eq!(
            y.to_vec_f32().unwrap(),
            whole[start * 15..(start + len) * 15]
        );
        start += len;
    }
    assert_eq!(start, n);
}

/// A data-parallel rank's share of a batch of 2B views (its images' first views, then their
/// second views) draws the whole batch's masks for those rows, for every rank of R, and so do
/// micro-batches of that share.
fn assert_rank_shares_draw_the_whole_batch_mask(device: &Device) {
    let (images, ranks) = (12, 3);
    let b = images / ranks;
    let x = Tensor::randn([2 * images, 2, 3], 1.0, 9, DType::F32, device).unwrap();
    let whole = x.drop_path(0.5, 5).unwrap().to_vec_f32().unwrap();
    let rows = |r: &[usize]| -> Vec<f32> {
        r.iter()
            .flat_map(|&i| whole[i * 6..(i + 1) * 6].to_vec())
            .collect()
    };
    for rank in 0..ranks {
        let mine: Vec<usize> = (rank * b..(rank + 1) * b)
            .chain(images + rank * b..images + (rank + 1) * b)
            .collect();
        let place = SamplePlace {
            first: rank * b,
            split: b,
            second: images + rank * b,
        };
        let share = x.index_select(0, &mine).unwrap();
        let y = share.drop_path_at(0.5, 5, place).unwrap();
        assert_eq!(y.to_vec_f32().unwrap(), rows(&mine), "rank {rank}");
        // Micro-batches of 3 views of the share, one of them across the split.
        for start in (0..2 * b).step_by(3) {
            let len = 3.min(2 * b - start);
            let part = share.narrow(0, start, len).unwrap();
            let y = part.drop_path_at(0.5, 5, place.from_sample(start)).unwrap();
            assert_eq!(y.to_vec_f32().unwrap(), rows(&mine[start..start + len]));
        }
    }
}

#[test]
fn slices_of_a_batch_draw_the_whole_batch_mask() {
    assert_slices_draw_the_whole_batch_mask(&Device::Cpu);
    assert_rank_shares_draw_the_whole_batch_mask(&Device::Cpu);
}

#[test]
fn p_zero_is_identity_and_bad_p_is_an_error() {
    let x = ones(&[4]);
    assert!(x.dropout(0.0, 1).unwrap().same_storage(&x));
    assert!(x.drop_path(0.0, 1).unwrap().same_storage(&x));
    for p in [1.0, -0.1, 1.5, f64::NAN] {
        assert!(x.dropout(p, 1).is_err());
        assert!(x.drop_path(p, 1).is_err());
    }
    let scalar = Tensor::scalar(1.0, DType::F32, &Device::Cpu).unwrap();
    assert!(scalar.drop_path(0.5, 1).is_err());
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

mod gpu {
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;

    /// The mask is a function of (seed, index) on both devices: outputs agree exactly.
    fn awkward_cases() -> Vec<Case> {
        vec![
            Case::new("dropout", &[&[3, 1001]], |x| x[0].dropout(0.25, 1234)),
            Case::new("dropout", &[&[257]], |x| x[0].dropout(0.9, u64::MAX)),
            Case::new("drop_path", &[&[33, 2, 5]], |x| x[0].drop_path(0.5, 99)),
            Case::new("drop_path", &[&[13, 3]], |x| {
                x[0].drop_path_from(0.5, 99, 17)
            }),
            Case::new("drop_path", &[&[11, 5]], |x| {
                let place = super::SamplePlace {
                    first: 3,
                    split: 7,
                    second: 29,
                };
                x[0].drop_path_at(0.5, 99, place)
            }),
        ]
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-6);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-6);
        super::assert_slices_draw_the_whole_batch_mask(&gpu);
        super::assert_rank_shares_draw_the_whole_batch_mask(&gpu);
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
    }
}
