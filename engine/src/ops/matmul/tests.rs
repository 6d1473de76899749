use std::cell::RefCell;

use super::MatmulDims;
use crate::autograd::{backward_with_grad, no_grad};
use crate::{DType, Device, Tensor};

thread_local! {
    /// The sizes of every `matmul_t` this thread runs, to see which products a pass made.
    pub(super) static PRODUCTS: RefCell<Vec<MatmulDims>> = const { RefCell::new(Vec::new()) };
}

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

/// Textbook triple loop, the reference for random sizes.
fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn forward_matches_hand_values() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    assert_eq!(
        a.matmul(&b).unwrap().to_vec_f64().unwrap(),
        vec![58.0, 64.0, 139.0, 154.0]
    );
    // Aᵀ·Aᵀ-shaped product through the flags: (3x2)ᵀ... A is [2,3]; Aᵀ [3,2] · Bᵀ [2,3].
    let c = a.matmul_t(&b, true, true).unwrap();
    assert_eq!(c.dims(), &[3, 3]);
    assert_eq!(c.to_vec_f64().unwrap()[0], 1.0 * 7.0 + 4.0 * 8.0);
}

#[test]
fn awkward_sizes_match_the_naive_product_in_f32() {
    for (m, k, n) in [
        (1, 1, 1),
        (1, 17, 3),
        (13, 1, 7),
        (31, 37, 29),
        (64, 67, 65),
        (130, 33, 97),
    ] {
        let a = Tensor::randn([m, k], 1.0, 1, DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::randn([k, n], 1.0, 2, DType::F32, &Device::Cpu).unwrap();
        let got = a.matmul(&b).unwrap().to_vec_f64().unwrap();
        let want = naive(&a.to_vec_f64().unwrap(), &b.to_vec_f64().unwrap(), m, k, n);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1e-4 * (1.0 + w.abs()) * (k as f64).sqrt(),
                "{m}x{k}x{n}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let a = t(&[1.0; 6], &[2, 3]);
    assert!(a
        .matmul(&a)
        .unwrap_err()
        .to_string()
        .contains("inner dimensions"));
    assert!(a.matmul(&t(&[1.0; 3], &[3])).is_err());
    let b1 = t(&[1.0; 12], &[2, 2, 3]);
    let b2 = t(&[1.0; 27], &[3, 3, 3]);
    assert!(b1.matmul(&b2).unwrap_err().to_string().contains("batch"));
    assert!(a.matmul_t(&a, false, true).is_ok());
}

#[test]
fn a_shared_weight_gets_its_gradient_from_one_2d_product() {
    let randn = |shape: &[usize], seed| Tensor::randn(shape, 1.0, seed, DType::F64, &Device::Cpu);
    for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
        // x [2, 3, 4, 5] (or its transpose [2, 3, 5, 4]) times a shared W: 6 batch entries.
        let x = randn(
            if trans_a {
                &[2, 3, 5, 4]
            } else {
                &[2, 3, 4, 5]
            },
            1,
        )
        .unwrap()
        .set_requires_grad(true);
        let w = randn(if trans_b { &[7, 5] } else { &[5, 7] }, 2)
            .unwrap()
            .set_requires_grad(true);
        let y = x.matmul_t(&w, trans_a, trans_b).unwrap();
        let g = randn(&[2, 3, 4, 7], 3).unwrap();
        PRODUCTS.take();
        backward_with_grad(&y, &g).unwrap();
        let products = PRODUCTS.take();
        // The old dW: a product batched on both sides, writing a [6, 5, 7] temporary.
        let batched_both = |d: &&MatmulDims| d.a_batched && d.b_batched;
        let label = format!("trans_a {trans_a}, trans_b {trans_b}: {products:?}");
        if trans_a {
            // The fallback keeps it (see shared_rhs_grad).
            assert!(products.iter().any(|d| batched_both(&d)), "{label}");
        } else {
            // One product over the 24 stacked rows instead.
            assert!(!products.iter().any(|d| batched_both(&d)), "{label}");
            assert!(
                products.iter().any(|d| d.batch == 1 && d.k == 24),
                "{label}"
            );
        }
        // The old formulation: the batched product summed back to W's shape.
        let _g = no_grad();
        let want = if trans_b {
            g.matmul_t(&x, true, trans_a)
        } else {
            x.matmul_t(&g, !trans_a, false)
        }
        .unwrap()
        .sum_to(w.shape())
        .unwrap()
        .to_vec_f64()
        .unwrap();
        let got = w.grad().unwrap().to_vec_f64().unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-12 * (1.0 + b.abs()),
                "{label}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

mod gpu {
    use super::super::gpu::{matmul_with_tiles, vec4_aligned, Tiles};
    use super::super::matmul_dims;
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;
    use crate::{DType, Device, Storage, Tensor};

    fn awkward_cases() -> Vec<Case> {
        let mut cases = Vec::new();
        for (m, k, n) in [
            (1, 1, 1),
            (1, 17, 3),
            (13, 1, 7),
            (31, 37, 29),
            (64, 67, 65),
            (130, 33, 97),
        ] {
            cases.push(Case::new("matmul", &[&[m, k], &[k, n]], |x| {
                x[0].matmul(&x[1])
            }));
        }
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa: &[usize] = if ta { &[2, 33, 65] } else { &[2, 65, 33] };
            let sb: &[usize] = if tb { &[70, 33] } else { &[33, 70] };
            cases.push(Case::new("matmul_t", &[sa, sb], move |x| {
                x[0].matmul_t(&x[1], ta, tb)
            }));
        }
        cases.push(Case::new("matmul", &[&[5, 3, 4], &[5, 4, 2]], |x| {
            x[0].matmul(&x[1])
        }));
        cases.push(Case::new("matmul", &[&[3, 0], &[0, 4]], |x| {
            x[0].matmul(&x[1])
        }));
        cases
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-5);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
    }

    /// Products whose contiguous dimensions are multiples of 4 take the vec4 entry point,
    /// the others the scalar one; both must give the CPU's product and gradients, for every
    /// transpose, batched or not, at sizes that are not multiples of the 64 x 64 tile.
    #[test]
    fn vec4_and_scalar_staging_match_cpu() {
        let Some(gpu) = test_device() else { return };
        let (mut vec4, mut scalar) = (0, 0);
        for (m, k, n) in [
            (4, 4, 4),
            (68, 36, 132),
            (8, 20, 12),
            (1, 1, 1),
            (7, 13, 11),
            (65, 64, 67),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for batch in [None, Some(3)] {
                    let mut sa = if ta { vec![k, m] } else { vec![m, k] };
                    let sb = if tb { vec![n, k] } else { vec![k, n] };
                    if let Some(b) = batch {
                        sa.insert(0, b);
                    }
                    let shapes = [sa.as_slice(), sb.as_slice()];
                    let dims_of =
                        |s: &[&[usize]]| matmul_dims(&s[0].into(), &s[1].into(), ta, tb).unwrap().0;
                    if vec4_aligned(&dims_of(&shapes), Tiles::DEFAULT) {
                        vec4 += 1;
                    } else {
                        scalar += 1;
                    }
                    let case =
                        Case::new("matmul_t", &shapes, move |x| x[0].matmul_t(&x[1], ta, tb));
                    assert_gpu_agrees(&gpu, &[case], 1e-5);
                }
            }
        }
        // (4,4,4), (68,36,132) and (8,20,12) are aligned under every transpose; (65,64,67)
        // only as A·Bᵀ, where both contiguous dimensions are k = 64.
        assert_eq!(
            (vec4, scalar),
            (26, 22),
            "cases taking the vec4 and scalar paths"
        );
    }

    #[test]
    fn other_tile_shapes_give_the_same_product() {
        let Some(gpu) = test_device() else { return };
        // The first pair is staged by scalars, the second (multiples of 4) by vectors.
        for (sa, sb) in [([2, 45, 29], [29, 51]), ([2, 44, 28], [28, 52])] {
            let a = Tensor::randn(sa, 1.0, 1, DType::F32, &Device::Cpu).unwrap();
            let b = Tensor::randn(sb, 1.0, 2, DType::F32, &Device::Cpu).unwrap();
            let want = a.matmul(&b).unwrap().to_vec_f32().unwrap();
            let (dims, _) = matmul_dims(a.shape(), b.shape(), false, false).unwrap();
            let (ga, gb) = (a.to_device(&gpu).unwrap(), b.to_device(&gpu).unwrap());
            let (Storage::Gpu(sa), Storage::Gpu(sb)) = (&*ga.storage(), &*gb.storage()) else {
                unreachable!("moved to the GPU above")
            };
            for tiles in [
                Tiles {
                    bk: 8,
                    wg_x: 8,
                    wg_y: 8,
                    ..Tiles::DEFAULT
                },
                Tiles {
                    bk: 4,
                    wg_x: 16,
                    wg_y: 4,
                    ..Tiles::DEFAULT
                },
                Tiles {
                    bk: 32,
                    wg_x: 8,
                    wg_y: 16,
                    ..Tiles::DEFAULT
                },
                Tiles {
                    bk: 6,
                    wg_x: 4,
                    wg_y: 8,
                    ..Tiles::DEFAULT
                },
                // Double-buffered, with 4 x 4 and 8 x 8 blocks.
                Tiles {
                    bk: 4,
                    wg_x: 4,
                    wg_y: 8,
                    block: 4,
                    stages: 2,
                },
                Tiles {
                    bk: 8,
                    wg_x: 4,
                    wg_y: 4,
                    block: 8,
                    stages: 2,
                },
                Tiles::WIDE,
            ] {
                let got = matmul_with_tiles(sa, sb, &dims, tiles)
                    .unwrap()
                    .to_vec()
                    .unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{tiles:?}: {g} vs {w}"
                    );
                }
            }
        }
    }
    /// The 8 x 8, double-buffered tiles (`Tiles::WIDE` and a smaller one of the same kind,
    /// which lavapipe runs quickly) against the CPU for every transpose, batched or not, with
    /// sizes of 1, primes and non-multiples of the tile, through both staging kinds.
    #[test]
    fn wide_double_buffered_tiles_match_cpu() {
        let Some(gpu) = test_device() else { return };
        let small_wide = Tiles {
            bk: 4,
            wg_x: 4,
            wg_y: 4,
            block: 8,
            stages: 2,
        };
        for (m, k, n) in [
            (1, 1, 1),
            (37, 41, 33),
            (36, 40, 44),
            (129, 17, 131),
            (3, 72, 5),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for batch in [None, Some(2)] {
                    let mut sa = if ta { vec![k, m] } else { vec![m, k] };
                    let sb = if tb { vec![n, k] } else { vec![k, n] };
                    if let Some(b) = batch {
                        sa.insert(0, b);
                    }
                    let a = Tensor::randn(sa, 1.0, 1, DType::F32, &Device::Cpu).unwrap();
                    let b = Tensor::randn(sb, 1.0, 2, DType::F32, &Device::Cpu).unwrap();
                    let want = a.matmul_t(&b, ta, tb).unwrap().to_vec_f32().unwrap();
                    let (dims, _) = matmul_dims(a.shape(), b.shape(), ta, tb).unwrap();
                    let (ga, gb) = (a.to_device(&gpu).unwrap(), b.to_device(&gpu).unwrap());
                    let (Storage::Gpu(sa), Storage::Gpu(sb)) = (&*ga.storage(), &*gb.storage())
                    else {
                        unreachable!("moved to the GPU above")
                    };
                    for tiles in [small_wide, Tiles::WIDE] {
                        let got = matmul_with_tiles(sa, sb, &dims, tiles)
                            .unwrap()
                            .to_vec()
                            .unwrap();
                        assert_eq!(got.len(), want.len());
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                                "{m}x{k}x{n} {ta} {tb} {batch:?} {tiles:?}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}

mod f16 {
    use super::naive;
    use crate::autograd::backward_with_grad;
    use crate::gpu::testing::f16_test_device;
    use crate::{DType, Device, Tensor};

    /// A random [rows, cols] (stored transposed when `trans`) on `gpu`, as F16, and its
    /// values after rounding, as a CPU f64 matrix in op() orientation.
    fn operand(
        rows: usize,
        cols: usize,
        trans: bool,
        seed: u64,
        gpu: &Device,
    ) -> (Tensor, Vec<f64>) {
        let shape = if trans { [cols, rows] } else { [rows, cols] };
        let h = Tensor::randn(shape, 1.0, seed, DType::F32, gpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let stored = h.to_vec_f64().unwrap();
        let at = |r: usize, c: usize| {
            if trans {
                stored[c * rows + r]
            } else {
                stored[r * cols + c]
            }
        };
        let op = (0..rows * cols).map(|i| at(i / cols, i % cols)).collect();
        (h, op)
    }

    /// The f16 kernels with 8 x 8 double-buffered tiles, as `f16_storage_matches_...`.
    #[test]
    fn f16_storage_with_wide_tiles_matches_the_rounded_product() {
        use super::super::gpu::{matmul_with_tiles, Tiles};
        use super::super::matmul_dims;
        use crate::Storage;
        let Some(gpu) = f16_test_device() else { return };
        let small_wide = Tiles {
            bk: 4,
            wg_x: 4,
            wg_y: 4,
            block: 8,
            stages: 2,
        };
        for (m, k, n) in [(1, 1, 1), (37, 41, 33), (36, 40, 44)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (a, av) = operand(m, k, ta, 1, &gpu);
                let (b, bv) = operand(k, n, tb, 2, &gpu);
                let (dims, _) = matmul_dims(a.shape(), b.shape(), ta, tb).unwrap();
                let want = naive(&av, &bv, m, k, n);
                let (Storage::Gpu(sa), Storage::Gpu(sb)) = (&*a.storage(), &*b.storage()) else {
                    unreachable!("made on the GPU")
                };
                for tiles in [small_wide, Tiles::WIDE] {
                    let got = matmul_with_tiles(sa, sb, &dims, tiles)
                        .unwrap()
                        .to_vec()
                        .unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        let g = *g as f64;
                        assert!(
                            (g - w).abs() < 1e-5 * (1.0 + w.abs()) * (k as f64).sqrt(),
                            "{m}x{k}x{n} t{ta}{tb} {tiles:?}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The f16 kernels (vec4 and scalar staging) against the f64 product of the same
    /// f16-rounded inputs: only f32 accumulation separates them. Either operand or both in
    /// f16 (one f16 and one f32: the saved activations of `--precision f16` meeting a
    /// gradient), through each f16 module.
    #[test]
    fn f16_storage_matches_the_product_of_the_rounded_inputs() {
        let Some(gpu) = f16_test_device() else { return };
        let shapes = [
            (1, 1, 1),
            (7, 13, 11),
            (68, 36, 132),
            (65, 64, 67),
            (131, 64, 67),
        ];
        for (m, k, n) in shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for (a_half, b_half) in [(true, true), (true, false), (false, true)] {
                    let f32_unless = |(t, v): (Tensor, Vec<f64>), half: bool| {
                        (
                            if half {
                                t
                            } else {
                                t.to_dtype(DType::F32).unwrap()
                            },
                            v,
                        )
                    };
                    let (a, av) = f32_unless(operand(m, k, ta, 1, &gpu), a_half);
                    let (b, bv) = f32_unless(operand(k, n, tb, 2, &gpu), b_half);
                    let c = a.matmul_t(&b, ta, tb).unwrap();
                    assert_eq!(c.dtype(), DType::F32);
                    let want = naive(&av, &bv, m, k, n);
                    for (g, w) in c.to_vec_f64().unwrap().iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-5 * (1.0 + w.abs()) * (k as f64).sqrt(),
                            "{m}x{k}x{n} t{ta}{tb} f16 {a_half}{b_half}: {g} vs {w}"
                        );
                    }
                }
            }
        }
        // Batched A, shared B.
        let a = Tensor::randn([3, 8, 12], 1.0, 3, DType::F32, &gpu).unwrap();
        let b = Tensor::randn([12, 4], 1.0, 4, DType::F32, &gpu).unwrap();
        let (ah, bh) = (
            a.to_dtype(DType::F16).unwrap(),
            b.to_dtype(DType::F16).unwrap(),
        );
        let got = ah.matmul(&bh).unwrap().to_vec_f64().unwrap();
        let want = ah
            .to_dtype(DType::F32)
            .unwrap()
            .matmul(&bh.to_dtype(DType::F32).unwrap())
            .unwrap()
            .to_vec_f64()
            .unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    /// y = x16 · w16 with x16, w16 casts of f32 leaves: dx = dy · w16ᵀ and dw = x16ᵀ · dy
    /// in f32, through the f16 matmul's backward and the cast's.
    #[test]
    fn gradients_reach_the_f32_leaves_through_the_casts() {
        let Some(gpu) = f16_test_device() else { return };
        let (m, k, n) = (5, 12, 8);
        let leaf = |shape: [usize; 2], seed| {
            Tensor::randn(shape, 1.0, seed, DType::F32, &gpu)
                .unwrap()
                .set_requires_grad(true)
        };
        let (x, w) = (leaf([m, k], 1), leaf([k, n], 2));
        let (xh, wh) = (
            x.to_dtype(DType::F16).unwrap(),
            w.to_dtype(DType::F16).unwrap(),
        );
        let y = xh.matmul(&wh).unwrap();
        let dy = Tensor::randn([m, n], 1.0, 3, DType::F32, &gpu).unwrap();
        backward_with_grad(&y, &dy).unwrap();
        let (xv, wv, dyv) = (
            xh.to_vec_f64().unwrap(),
            wh.to_vec_f64().unwrap(),
            dy.to_vec_f64().unwrap(),
        );
        let transpose = |v: &[f64], r: usize, c: usize| -> Vec<f64> {
            (0..r * c).map(|i| v[(i % r) * c + i / r]).collect()
        };
        let want_dx = naive(&dyv, &transpose(&wv, k, n), m, n, k);
        let want_dw = naive(&transpose(&xv, m, k), &dyv, k, m, n);
        for (t, want) in [(&x, want_dx), (&w, want_dw)] {
            let g = t.grad().expect("the leaf records a gradient");
            assert_eq!(g.dtype(), DType::F32);
            for (g, w) in g.to_vec_f64().unwrap().iter().zip(&want) {
                assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
    }
}

/// F16 operands on the CPU: only the tape makes them (the saved activations of
/// `--precision f16`, handed to matmul's rule), so these build the storage directly.
mod f16_cpu {
    use super::naive;
    use crate::ops::matmul::{cpu, matmul_dims};
    use crate::storage::narrow;
    use crate::{CpuStorage, DType, Device, Shape, Tensor};

    /// A random matrix of `shape` as F16 storage, and its values (after rounding) in f64.
    fn half(shape: &[usize], seed: u64) -> (CpuStorage, Vec<f64>) {
        let v = Tensor::randn(shape, 1.0, seed, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let h = narrow(&v);
        let rounded = h.iter().map(|x| x.to_f64()).collect();
        (CpuStorage::F16(h), rounded)
    }

    fn full(shape: &[usize], seed: u64) -> (CpuStorage, Vec<f64>) {
        let v = Tensor::randn(shape, 1.0, seed, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let wide = v.iter().map(|&x| x as f64).collect();
        (CpuStorage::F32(v), wide)
    }

    /// Entry `i` of a stored [batch.., r, c] operand (or the shared one), in op() orientation.
    fn op_entry(
        v: &[f64],
        i: usize,
        batched: bool,
        (r, c): (usize, usize),
        trans: bool,
    ) -> Vec<f64> {
        let at = if batched { i * r * c } else { 0 };
        let (rows, cols) = if trans { (c, r) } else { (r, c) };
        (0..rows * cols)
            .map(|e| {
                let (i, j) = (e / cols, e % cols);
                if trans {
                    v[at + j * c + i]
                } else {
                    v[at + i * c + j]
                }
            })
            .collect()
    }

    /// `with_f16` with a block of `block` values: every way the rows of a blocked operand can
    /// run (m, k, n), blocks that do and do not divide the rows, shared and batched operands,
    /// both operands f16, against the f64 product of the rounded values.
    #[test]
    fn products_with_f16_operands_match_the_rounded_inputs_block_by_block() {
        let shapes: &[(&[usize], &[usize])] = &[
            (&[1, 1], &[1, 1]),
            (&[7, 13], &[13, 11]),
            (&[37, 29], &[29, 5]),
            (&[3, 9, 17], &[17, 6]),
            (&[2, 9, 17], &[2, 17, 6]),
            (&[9, 17], &[3, 17, 6]),
        ];
        for &(sa, sb) in shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let swap = |s: &[usize], t: bool| {
                    let mut s = s.to_vec();
                    let r = s.len();
                    if t {
                        s.swap(r - 2, r - 1);
                    }
                    s
                };
                let (sa, sb) = (swap(sa, ta), swap(sb, tb));
                let (d, out) =
                    matmul_dims(&Shape::from(sa.clone()), &Shape::from(sb.clone()), ta, tb)
                        .unwrap();
                for (a_half, b_half) in [(true, false), (false, true), (true, true)] {
                    let (a, av) = if a_half { half(&sa, 1) } else { full(&sa, 1) };
                    let (b, bv) = if b_half { half(&sb, 2) } else { full(&sb, 2) };
                    let a_stored = if ta { (d.k, d.m) } else { (d.m, d.k) };
                    let b_stored = if tb { (d.n, d.k) } else { (d.k, d.n) };
                    let want: Vec<f64> = (0..d.batch)
                        .flat_map(|i| {
                            let a = op_entry(&av, i, d.a_batched, a_stored, ta);
                            let b = op_entry(&bv, i, d.b_batched, b_stored, tb);
                            naive(&a, &b, d.m, d.k, d.n)
                        })
                        .collect();
                    for block in [1, 7, 40, 1 << 21] {
                        let got = cpu::with_f16(&a, &b, &d, block);
                        assert_eq!(got.len(), out.numel());
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (*g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()) * (d.k as f64).sqrt(),
                                "{sa:?} x {sb:?} t{ta}{tb} f16 {a_half}{b_half} block {block}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
