//! NaN propagation through every op, on the CPU (f32 and f64) and the GPU, as in PyTorch: a
//! NaN in an input makes every output that depends on it NaN. Max-style operations (relu,
//! max pooling, max reductions, the row maximum of softmax, the eps floor of l2_normalize,
//! clamps) are where it is easily lost, since IEEE max(NaN, x) = x: a NaN weight would then
//! give finite logits and a silently wrong model.
use crate::loss::{objective, LossConfig, LossKind};
use crate::ops::attention::attention;
use crate::{DType, Device, Result, Tensor};

type Op = fn(&[Tensor]) -> Result<Tensor>;

/// Which outputs must be NaN.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exactly the outputs at these indices (elementwise ops: where the NaN was planted).
    Only(&'static [usize]),
    /// Every output: each case is shaped so that all outputs depend on the NaN.
    All,
}

struct Case {
    name: &'static str,
    /// Input shapes; the NaN goes into input 0 at `at`.
    shapes: &'static [&'static [usize]],
    at: usize,
    op: Op,
    expect: Expect,
}

const fn case(
    name: &'static str,
    shapes: &'static [&'static [usize]],
    at: usize,
    op: Op,
    expect: Expect,
) -> Case {
    Case {
        name,
        shapes,
        at,
        op,
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    const V7: &[&[usize]] = &[&[7]];
    vec![
        case("exp", V7, 3, |x| x[0].exp(), Only(&[3])),
        case("log", V7, 3, |x| x[0].mul(&x[0])?.log(), Only(&[3])),
        case("sqrt", V7, 3, |x| x[0].mul(&x[0])?.sqrt(), Only(&[3])),
        case("neg", V7, 3, |x| x[0].neg(), Only(&[3])),
        case("relu", V7, 3, |x| x[0].relu(), Only(&[3])),
        case("gelu", V7, 3, |x| x[0].gelu(), Only(&[3])),
        case("tanh", V7, 3, |x| x[0].tanh(), Only(&[3])),
        case("sigmoid", V7, 3, |x| x[0].sigmoid(), Only(&[3])),
        case("powf", V7, 3, |x| x[0].mul(&x[0])?.powf(1.5), Only(&[3])),
        case("add_scalar", V7, 3, |x| x[0].add_scalar(2.0), Only(&[3])),
        case("mul_scalar", V7, 3, |x| x[0].mul_scalar(0.0), Only(&[3])),
        case("add", &[&[7], &[7]], 3, |x| x[0].add(&x[1]), Only(&[3])),
        case(
            "add_relu",
            &[&[7], &[7]],
            3,
            |x| x[0].add_relu(&x[1]),
            Only(&[3]),
        ),
        case(
            "bias_gelu",
            &[&[2, 7], &[7]],
            3,
            |x| x[0].bias_gelu(&x[1]),
            Only(&[3]),
        ),
        case("mul", &[&[7], &[7]], 3, |x| x[0].mul(&x[1]), Only(&[3])),
        case("div", &[&[7], &[7]], 3, |x| x[0].div(&x[1]), Only(&[3])),
        // Data movement and masking carry the NaN to where its element goes.
        case(
            "permute",
            &[&[2, 3]],
            1,
            |x| x[0].permute(&[1, 0]),
            Only(&[2]),
        ),
        case("concat", &[&[3], &[2]], 1, concat, Only(&[1])),
        case("index_select", &[&[4, 2]], 3, select_rows, Only(&[1, 3])),
        case("dropout", V7, 3, |x| x[0].dropout(0.5, 1), Only(&[3])),
        // The NaN in the branch, its sample dropped or not: 0 · NaN stays NaN.
        case(
            "add_residual",
            &[&[4, 3], &[4, 3], &[3]],
            7,
            |x| x[1].add_residual(&x[0], Some(&x[2]), drop_path()),
            Only(&[7]),
        ),
        case("sum", &[&[5, 3]], 4, |x| x[0].sum(0, false), Only(&[1])),
        case("mean", &[&[5, 3]], 4, |x| x[0].mean(0, false), Only(&[1])),
        // The NaN is not the first element of its column, where the running max starts.
        case("max", &[&[5, 3]], 4, |x| x[0].max(0, false), Only(&[1])),
        case(
            "max_last",
            &[&[3, 5]],
            9,
            |x| x[0].max(1, false),
            Only(&[1]),
        ),
        case(
            "matmul",
            &[&[1, 5], &[5, 4]],
            2,
            |x| x[0].matmul(&x[1]),
            All,
        ),
        case("conv2d", &[&[1, 2, 3, 3], &[1, 2, 3, 3]], 8, conv, All),
        case(
            "conv2d_weight",
            &[&[1, 2, 3, 3], &[1, 2, 3, 3]],
            0,
            conv_weight_nan,
            All,
        ),
        case(
            "max_pool2d",
            &[&[1, 1, 3, 3]],
            4,
            |x| x[0].max_pool2d(3, 1, 0),
            All,
        ),
        case(
            "max_pool2d_pad",
            &[&[1, 1, 2, 2]],
            3,
            |x| x[0].max_pool2d(3, 2, 1),
            All,
        ),
        case(
            "avg_pool2d",
            &[&[1, 1, 2, 2]],
            1,
            |x| x[0].avg_pool2d(2, 2, 0),
            All,
        ),
        case(
            "global_avg_pool",
            &[&[1, 1, 2, 3]],
            1,
            |x| x[0].global_avg_pool2d(),
            All,
        ),
        case("softmax", &[&[1, 9]], 5, |x| x[0].softmax(-1), All),
        case("log_softmax", &[&[1, 9]], 5, |x| x[0].log_softmax(-1), All),
        case("softmax_axis0", &[&[9, 1]], 5, |x| x[0].softmax(0), All),
        case(
            "layer_norm",
            &[&[1, 6]],
            2,
            |x| x[0].layer_norm(None, None, 1e-5),
            All,
        ),
        case("batch_norm", &[&[3, 1, 2, 2]], 5, batch_norm, All),
        case(
            "l2_normalize",
            &[&[1, 6]],
            2,
            |x| x[0].l2_normalize(-1, 1e-12),
            All,
        ),
        case(
            "cross_entropy",
            &[&[3, 4]],
            5,
            |x| x[0].cross_entropy(&[0, 1, 2], 0.1),
            All,
        ),
        case(
            "attention",
            &[&[1, 1, 3, 4], &[1, 1, 3, 4], &[1, 1, 3, 4]],
            5,
            attend,
            All,
        ),
        case(
            "attention_q",
            &[&[1, 2, 1, 4], &[1, 2, 1, 4], &[1, 2, 1, 4]],
            1,
            attend,
            Only(&[0, 1, 2, 3]),
        ),
        case(
            "ce_objective",
            &[&[4, 3], &[4, 5]],
            0,
            |x| loss(LossKind::Ce, x),
            All,
        ),
        case(
            "clce_features",
            &[&[4, 3], &[4, 5]],
            4,
            |x| loss(LossKind::Clce, x),
            All,
        ),
        case(
            "supcon",
            &[&[4, 3], &[4, 5]],
            7,
            |x| loss(LossKind::SupCon, x),
            All,
        ),
        case(
            "hscl",
            &[&[4, 3], &[4, 5]],
            2,
            |x| loss(LossKind::Hscl, x),
            All,
        ),
    ]
}

fn drop_path() -> Option<crate::ops::residual::DropPath> {
    Some(crate::ops::residual::DropPath {
        p: 0.5,
        seed: 1,
        place: crate::SamplePlace::from(0),
    })
}

fn concat(x: &[Tensor]) -> Result<Tensor> {
    Tensor::concat(&[x[0].clone(), x[1].clone()], 0)
}

/// Rows 1, 1, 0 of a [4, 2] matrix: its element 3 (row 1) lands at 1 and 3.
fn select_rows(x: &[Tensor]) -> Result<Tensor> {
    x[0].index_select(0, &[1, 1, 0])
}

fn conv(x: &[Tensor]) -> Result<Tensor> {
    x[0].conv2d(&x[1], None, 1, 0)
}

/// The NaN in the weight rather than the image: a corrupt checkpoint.
fn conv_weight_nan(x: &[Tensor]) -> Result<Tensor> {
    x[1].conv2d(&x[0], None, 1, 0)
}

fn batch_norm(x: &[Tensor]) -> Result<Tensor> {
    let (d, dt) = (x[0].device(), x[0].dtype());
    let ones = Tensor::ones([1], dt, d)?;
    let zeros = Tensor::zeros([1], dt, d)?;
    x[0].batch_norm(
        &ones,
        &zeros,
        &zeros.zeros_like()?,
        &ones.ones_like()?,
        true,
        0.1,
        1e-5,
    )
}

fn attend(x: &[Tensor]) -> Result<Tensor> {
    // q carries the NaN in "attention_q" (one token, two heads: only the first head's output
    // depends on it); in "attention" it is k (so every query sees it).
    if x[0].dims()[2] == 1 {
        attention(&x[0], &x[1], &x[2], None, 0.5)
    } else {
        attention(&x[1], &x[0], &x[2], None, 0.5)
    }
}

/// The training objective with the NaN in the features (or, for `ce`, in the logits).
fn loss(kind: LossKind, x: &[Tensor]) -> Result<Tensor> {
    let labels = [0, 1, 0, 1];
    let (features, logits) = if kind == LossKind::Ce {
        (&x[1], &x[0])
    } else {
        (&x[0], &x[1])
    };
    objective(
        kind,
        &LossConfig::default(),
        features,
        &labels,
        Some(logits),
    )
}

/// Values in [0.5, 1.5] with alternating signs (so relu and max see both sides of 0, and
/// log / sqrt get squares of them).
fn values(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let v = 0.5 + ((i * 7 + seed * 3) % 11) as f64 / 10.0;
            if i % 2 == 0 {
                v
            } else {
                -v
            }
        })
        .collect()
}

fn run(case: &Case, dtype: DType, device: &Device) -> Vec<f64> {
    let inputs: Vec<Tensor> = case
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = values(s.iter().product(), i);
            if i == 0 {
                v[case.at] = f64::NAN;
            }
            Tensor::from_f64_slice(&v, *s, dtype, device).unwrap()
        })
        .collect();
    let y = (case.op)(&inputs).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    y.to_vec_f64().unwrap()
}

/// Where `case` lets the NaN through as it must, None; else what is wrong.
fn wrong(case: &Case, got: &[f64], on: &str) -> Option<String> {
    let nan: Vec<usize> = (0..got.len()).filter(|&i| got[i].is_nan()).collect();
    let want: Vec<usize> = match case.expect {
        Expect::Only(at) => at.to_vec(),
        Expect::All => (0..got.len()).collect(),
    };
    (nan != want).then(|| {
        format!(
            "{} on {on}: NaN at {nan:?}, want {want:?} (output {got:?})",
            case.name
        )
    })
}

/// Runs every case on `device` in each of `dtypes`; fails listing every case that drops a NaN.
fn assert_nan_propagates(device: &Device, dtypes: &[DType]) {
    let failures: Vec<String> = cases()
        .iter()
        .flat_map(|case| {
            dtypes.iter().filter_map(move |&dtype| {
                let on = format!("{device} {dtype:?}");
                wrong(case, &run(case, dtype, device), &on)
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn nan_propagates_on_the_cpu() {
    assert_nan_propagates(&Device::Cpu, &[DType::F64, DType::F32]);
}

#[test]
fn nan_propagates_on_the_gpu() {
    let Some(gpu) = crate::gpu::testing::test_device() else {
        return;
    };
    assert_nan_propagates(&gpu, &[DType::F32]);
}

/// The other half of the contract: finite inputs stay finite (no op here makes a NaN of its
/// own from the values used above), so the tests above see the planted NaN and nothing else.
#[test]
fn finite_inputs_give_finite_outputs() {
    for case in cases() {
        let inputs: Vec<Tensor> = case
            .shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let v = values(s.iter().product(), i);
                Tensor::from_f64_slice(&v, *s, DType::F64, &Device::Cpu).unwrap()
            })
            .collect();
        let y = (case.op)(&inputs).unwrap().to_vec_f64().unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{}: {y:?}", case.name);
    }
}
