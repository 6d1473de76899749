use crate::autograd::backward_with_grad;
use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// A direct-convolution geometry for the references below.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Geom {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }
    /// Calls f(y index, x index, w index) for every multiply-add of the convolution whose
    /// kernel tap lands inside the input.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = self.out();
        for n in 0..self.n {
            for o in 0..self.o {
                for oy in 0..ho {
                    for ox in 0..wo {
                        for c in 0..self.c {
                            for i in 0..self.k {
                                for j in 0..self.k {
                                    let iy = (oy * self.stride + i) as isize - self.pad as isize;
                                    let ix = (ox * self.stride + j) as isize - self.pad as isize;
                                    if iy < 0 || ix < 0 {
                                        continue;
                                    }
                                    let (iy, ix) = (iy as usize, ix as usize);
                                    if iy >= self.h || ix >= self.w {
                                        continue;
                                    }
                                    let yi = ((n * self.o + o) * ho + oy) * wo + ox;
                                    let xi = ((n * self.c + c) * self.h + iy) * self.w + ix;
                                    let wi = ((o * self.c + c) * self.k + i) * self.k + j;
                                    f(yi, xi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    fn naive_forward(&self, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
        let (ho, wo) = self.out();
        let mut y = vec![0.0; self.n * self.o * ho * wo];
        for (yi, v) in y.iter_mut().enumerate() {
            *v = b[yi / (ho * wo) % self.o];
        }
        self.for_each_tap(|yi, xi, wi| y[yi] += x[xi] * w[wi]);
        y
    }
    /// (dx, dw, db) for output gradient g, straight from y = Σ x·w + b.
    fn naive_backward(&self, x: &[f64], w: &[f64], g: &[f64]) -> [Vec<f64>; 3] {
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; self.o]);
        self.for_each_tap(|yi, xi, wi| {
            dx[xi] += g[yi] * w[wi];
            dw[wi] += g[yi] * x[xi];
        });
        let (ho, wo) = self.out();
        for (yi, &v) in g.iter().enumerate() {
            db[yi / (ho * wo) % self.o] += v;
        }
        [dx, dw, db]
    }
}

// Awkward sizes: batch 1, primes, stride 2 on odd sizes, padding wider than the kernel
// reaches, a 7x7/2/3 stem and a 4x4/4 patch embedding in miniature, 1x1 at stride 1 (no
// im2col) and 2, and one big enough to run one rayon task per sample.
// Each row: [n, c, h, w, out channels, kernel, stride, padding].
const GEOMS: [[usize; 8]; 10] = [
    [1, 1, 1, 1, 1, 1, 1, 0],
    [2, 3, 5, 7, 4, 3, 1, 1],
    [1, 5, 11, 13, 3, 3, 2, 1],
    [3, 2, 7, 5, 5, 3, 2, 0],
    [1, 3, 2, 3, 2, 1, 1, 2],
    [2, 3, 17, 13, 5, 7, 2, 3],
    [2, 3, 12, 8, 7, 4, 4, 0],
    [3, 7, 5, 9, 11, 1, 1, 0],
    [2, 7, 9, 5, 3, 1, 2, 0],
    [4, 8, 17, 19, 9, 3, 1, 1],
];

fn geoms() -> impl Iterator<Item = Geom> {
    GEOMS
        .into_iter()
        .map(|[n, c, h, w, o, k, stride, pad]| Geom {
            n,
            c,
            h,
            w,
            o,
            k,
            stride,
            pad,
        })
}

fn random_inputs(g: &Geom, dtype: DType) -> (Tensor, Tensor, Tensor) {
    let cpu = &Device::Cpu;
    let x = Tensor::randn([g.n, g.c, g.h, g.w], 1.0, 1, dtype, cpu).unwrap();
    let w = Tensor::randn([g.o, g.c, g.k, g.k], 1.0, 2, dtype, cpu).unwrap();
    let b = Tensor::randn([g.o], 1.0, 3, dtype, cpu).unwrap();
    (x, w, b)
}

#[test]
fn forward_matches_hand_values() {
    let x = t(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]);
    // x = 1 2 3   kernel 1 2   top-left window 1·1 + 2·2 + 4·3 + 5·4 = 37; sliding right
    //     4 5 6          3 4   2+6+15+24 = 47, down 4+10+21+32 = 67, both 5+12+24+36 = 77.
    //     7 8 9
    let k = t(&[1., 2., 3., 4.], &[1, 1, 2, 2]);
    assert_eq!(
        values(&x.conv2d(&k, None, 1, 0).unwrap()),
        [37., 47., 67., 77.]
    );

    // A 3x3 box filter with padding 1 at stride 2 sums the 2x2 corners of x (the rest of each
    // window is padding): 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28; + bias 0.5.
    let ones = t(&[1.0; 9], &[1, 1, 3, 3]);
    let y = x.conv2d(&ones, Some(&t(&[0.5], &[1])), 2, 1).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(values(&y), [12.5, 16.5, 24.5, 28.5]);

    // 1x1 kernels mix channels per pixel: channels (1 2) and (3 4), weights (1 1) and (1 -1)
    // give sums (4 6) and differences (-2 -2).
    let x2 = t(&[1., 2., 3., 4.], &[1, 2, 1, 2]);
    let w2 = t(&[1., 1., 1., -1.], &[2, 2, 1, 1]);
    assert_eq!(
        values(&x2.conv2d(&w2, None, 1, 0).unwrap()),
        [4., 6., -2., -2.]
    );
}

#[test]
fn backward_matches_hand_values() {
    let x = t(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]).set_requires_grad(true);
    let k = t(&[1., 2., 3., 4.], &[1, 1, 2, 2]).set_requires_grad(true);
    let b = t(&[0.0], &[1]).set_requires_grad(true);
    x.conv2d(&k, Some(&b), 1, 0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // With dy = 1 everywhere, dW(i,j) sums the input under tap (i,j) over the four windows:
    // the four 2x2 corners of x, as in the forward test.
    assert_eq!(values(&k.grad().unwrap()), [12., 16., 24., 28.]);
    // dx counts each kernel entry once per window covering the pixel: the centre is under all
    // four taps (1+2+3+4), corners under one, edges under two.
    assert_eq!(
        values(&x.grad().unwrap()),
        [1., 3., 2., 4., 10., 6., 3., 7., 4.]
    );
    assert_eq!(values(&b.grad().unwrap()), [4.0]);
}

#[test]
fn forward_matches_direct_convolution() {
    for g in geoms() {
        for dtype in [DType::F64, DType::F32] {
            let (x, w, b) = random_inputs(&g, dtype);
            let want = g.naive_forward(&values(&x), &values(&w), &values(&b));
            let y = x.conv2d(&w, Some(&b), g.stride, g.pad).unwrap();
            let (ho, wo) = g.out();
            assert_eq!(y.dims(), &[g.n, g.o, ho, wo]);
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_close(&values(&y), &want, tol, &format!("{g:?} {dtype:?}"));
            let zero = vec![0.0; g.o];
            let y = x.conv2d(&w, None, g.stride, g.pad).unwrap();
            let want = g.naive_forward(&values(&x), &values(&w), &zero);
            assert_close(&values(&y), &want, tol, &format!("{g:?} {dtype:?} no bias"));
        }
    }
}

#[test]
fn backward_matches_direct_convolution() {
    for g in geoms() {
        let (x, w, b) = random_inputs(&g, DType::F64);
        let y_grad = Tensor::randn(
            [g.n, g.o, g.out().0, g.out().1],
            1.0,
            4,
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        let [dx, dw, db] = g.naive_backward(&values(&x), &values(&w), &values(&y_grad));
        let (xg, wg, bg) = (
            x.set_requires_grad(true),
            w.set_requires_grad(true),
            b.set_requires_grad(true),
        );
        let y = xg.conv2d(&wg, Some(&bg), g.stride, g.pad).unwrap();
        backward_with_grad(&y, &y_grad).unwrap();
        let what = format!("{g:?}");
        assert_close(&values(&xg.grad().unwrap()), &dx, 1e-12, &what);
        assert_close(&values(&wg.grad().unwrap()), &dw, 1e-12, &what);
        assert_close(&values(&bg.grad().unwrap()), &db, 1e-12, &what);

        // Only the weight trainable (a frozen input image): the same dW, nothing else.
        let wg = w.set_requires_grad(true);
        let y = x.conv2d(&wg, None, g.stride, g.pad).unwrap();
        backward_with_grad(&y, &y_grad).unwrap();
        assert_close(&values(&wg.grad().unwrap()), &dw, 1e-12, &what);
        assert!(x.grad().is_none());
    }
}

#[test]
fn bad_arguments_are_errors() {
    let x = t(&[0.0; 2 * 3 * 4 * 4], &[2, 3, 4, 4]);
    let w = t(&[0.0; 5 * 3 * 3 * 3], &[5, 3, 3, 3]);
    let err = |r: crate::Result<Tensor>| r.unwrap_err().to_string();
    assert!(err(x.reshape([6, 4, 4]).unwrap().conv2d(&w, None, 1, 0)).contains("[N,C,H,W]"));
    assert!(err(x.conv2d(&w.reshape([5, 27]).unwrap(), None, 1, 0)).contains("[O,C,kh,kw]"));
    let w4 = t(&[0.0; 5 * 4 * 9], &[5, 4, 3, 3]);
    assert!(err(x.conv2d(&w4, None, 1, 0)).contains("3 channels"));
    assert!(err(x.conv2d(&w, None, 0, 0)).contains("stride"));
    let big = t(&[0.0; 5 * 3 * 49], &[5, 3, 7, 7]);
    assert!(err(x.conv2d(&big, None, 1, 1)).contains("larger than the padded input"));
    assert!(x.conv2d(&big, None, 1, 2).is_ok());
    assert!(err(x.conv2d(&w, Some(&t(&[0.0; 4], &[4])), 1, 0)).contains("bias"));
    let w32 = w.to_dtype(DType::F32).unwrap();
    assert!(err(x.conv2d(&w32, None, 1, 0)).contains("dtype"));
    let empty = t(&[], &[2, 3, 0, 4]);
    assert!(err(empty.conv2d(&w, None, 1, 2)).contains("zero-sized"));
    let no_batch = t(&[], &[0, 3, 4, 4]);
    assert_eq!(
        no_batch.conv2d(&w, None, 1, 1).unwrap().dims(),
        &[0, 5, 4, 4]
    );
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

mod gpu {
    use super::super::gpu::{backward_in_chunks, forward_in_chunks};
    use super::super::{Conv2dDims, Wanted};
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;
    use crate::{DType, Device, Storage, Tensor};

    fn awkward_cases() -> Vec<Case> {
        let mut cases = Vec::new();
        // (x shape, kernel, out channels, stride, padding)
        for (xs, k, o, s, p) in [
            ([2, 3, 9, 7], 3, 5, 2, 1),
            ([3, 4, 5, 5], 5, 2, 1, 2),
            ([2, 7, 4, 3], 1, 3, 1, 0),
            ([1, 2, 11, 13], 7, 3, 2, 3),
            ([0, 2, 4, 4], 3, 2, 1, 1),
        ] {
            let ws = [o, xs[1], k, k];
            cases.push(Case::new("conv2d", &[&xs, &ws, &[o]], move |t| {
                t[0].conv2d(&t[1], Some(&t[2]), s, p)
            }));
        }
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

    /// Batches too big for one binding run in chunks of samples; one sample per chunk must
    /// give what the whole batch at once gives.
    #[test]
    fn chunks_of_samples_give_the_whole_batch_result() {
        let Some(gpu) = test_device() else { return };
        let on_gpu = |s: &[usize], seed| {
            Tensor::randn(s, 1.0, seed, DType::F32, &Device::Cpu)
                .unwrap()
                .to_device(&gpu)
                .unwrap()
        };
        for (pointwise, stride) in [(false, 2), (true, 1)] {
            let k = if pointwise { 1 } else { 3 };
            let (x, w, b) = (
                on_gpu(&[3, 2, 7, 6], 1),
                on_gpu(&[4, 2, k, k], 2),
                on_gpu(&[4], 3),
            );
            let d = Conv2dDims::new(x.shape(), w.shape(), stride, if pointwise { 0 } else { 1 })
                .unwrap();
            let g = on_gpu(&[3, 4, d.ho, d.wo], 4);
            let (Storage::Gpu(xs), Storage::Gpu(ws), Storage::Gpu(bs), Storage::Gpu(gs)) =
                (&*x.storage(), &*w.storage(), &*b.storage(), &*g.storage())
            else {
                unreachable!("moved to the GPU above")
            };
            let all = Wanted {
                input: true,
                weight: true,
                bias: true,
            };
            let whole = forward_in_chunks(xs, ws, Some(bs), &d, 3)
                .unwrap()
                .to_vec()
                .unwrap();
            let split = forward_in_chunks(xs, ws, Some(bs), &d, 1)
                .unwrap()
                .to_vec()
                .unwrap();
            assert_eq!(whole, split);
            let whole = backward_in_chunks(xs, ws, gs, &d, all, 3).unwrap();
            let split = backward_in_chunks(xs, ws, gs, &d, all, 1).unwrap();
            for (a, b) in [
                (whole.input, split.input),
                (whole.weight, split.weight),
                (whole.bias, split.bias),
            ] {
                let (a, b) = (a.unwrap().to_vec().unwrap(), b.unwrap().to_vec().unwrap());
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
                }
            }
        }
    }

    /// The GPU's im2col of an f16 input (`im2col_f16`, the saved input of `--precision
    /// f16`) against the CPU's sample-by-sample widening, on every reference geometry.
    #[test]
    fn f16_input_backward_matches_the_cpu() {
        use super::super::cpu;
        use crate::ops::cast::gpu::f32_to_f16_storage;
        let Some(gpu) = test_device() else { return };
        for g in super::geoms() {
            let (x, w, _) = super::random_inputs(&g, DType::F32);
            let d = Conv2dDims::new(x.shape(), w.shape(), g.stride, g.pad).unwrap();
            let dy =
                Tensor::randn([g.n, g.o, d.ho, d.wo], 1.0, 4, DType::F32, &Device::Cpu).unwrap();
            let all = Wanted {
                input: true,
                weight: true,
                bias: true,
            };
            let half = crate::CpuStorage::F16(crate::storage::narrow(&x.to_vec_f32().unwrap()));
            let want = cpu::backward(
                &half,
                &w.to_cpu_storage().unwrap(),
                &dy.to_cpu_storage().unwrap(),
                &d,
                all,
            );
            let on_gpu = |t: &Tensor| t.to_device(&gpu).unwrap();
            let (xg, wg, gg) = (on_gpu(&x), on_gpu(&w), on_gpu(&dy));
            let (Storage::Gpu(xs), Storage::Gpu(ws), Storage::Gpu(gs)) =
                (&*xg.storage(), &*wg.storage(), &*gg.storage())
            else {
                unreachable!("moved to the GPU above")
            };
            let xh = f32_to_f16_storage(xs, "test").unwrap();
            let got = backward_in_chunks(&xh, ws, gs, &d, all, 2).unwrap();
            for (got, want) in [(got.input, want.input), (got.weight, want.weight)] {
                let (got, want) = (got.unwrap().to_vec().unwrap(), want.unwrap().to_f32_vec());
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{g:?}: {a} vs {b}");
                }
            }
        }
    }
}

/// The saved input in f16 (`--precision f16`): the CPU backward widens it a sample at a
/// time and gives exactly the gradients of the widened input, batch-parallel or not.
#[test]
fn f16_input_backward_is_the_backward_of_the_rounded_input() {
    use super::cpu;
    use super::{Conv2dDims, Wanted};
    use crate::storage::{narrow, widen};
    use crate::CpuStorage;
    for g in geoms() {
        let (x, w, _) = random_inputs(&g, DType::F32);
        let d = Conv2dDims::new(x.shape(), w.shape(), g.stride, g.pad).unwrap();
        let dy = Tensor::randn([g.n, g.o, d.ho, d.wo], 1.0, 4, DType::F32, &Device::Cpu).unwrap();
        let half = narrow(&x.to_vec_f32().unwrap());
        let all = Wanted {
            input: true,
            weight: true,
            bias: true,
        };
        let (w, dy) = (w.to_cpu_storage().unwrap(), dy.to_cpu_storage().unwrap());
        let rounded = cpu::backward(&CpuStorage::F32(widen(&half)), &w, &dy, &d, all);
        let from_half = cpu::backward(&CpuStorage::F16(half), &w, &dy, &d, all);
        for (a, b) in [
            (from_half.input, rounded.input),
            (from_half.weight, rounded.weight),
            (from_half.bias, rounded.bias),
        ] {
            assert_eq!(a.unwrap().to_f32_vec(), b.unwrap().to_f32_vec(), "{g:?}");
        }
    }
}
