use crate::{DType, Device, Tensor};

#[test]
fn cpu_round_trip_rounds_to_f32_once() {
    let v = [0.1, -2.5, 1e-40, 3.0e38, 1.0 / 3.0];
    let x = Tensor::from_f64_slice(&v, [5], DType::F64, &Device::Cpu).unwrap();
    let y = x.to_dtype(DType::F32).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let back = y.to_dtype(DType::F64).unwrap();
    assert_eq!(back.dtype(), DType::F64);
    let want: Vec<f64> = v.iter().map(|&x| x as f32 as f64).collect();
    assert_eq!(back.to_vec_f64().unwrap(), want);
    // f32 -> f64 -> f32 is exact.
    assert_eq!(
        back.to_dtype(DType::F32).unwrap().to_vec_f64().unwrap(),
        want
    );
}

#[test]
fn f16_on_the_cpu_is_an_error() {
    let x = Tensor::ones([2], DType::F32, &Device::Cpu).unwrap();
    let e = x.to_dtype(DType::F16).unwrap_err().to_string();
    assert!(e.contains("to_dtype") && e.contains("on the CPU"), "{e}");
    assert!(Tensor::zeros([2], DType::F16, &Device::Cpu).is_err());
}

#[test]
fn the_gradient_is_cast_back() {
    let x = Tensor::from_f64_slice(&[1.0, 2.0], [2], DType::F64, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let y = x.to_dtype(DType::F32).unwrap().mul_scalar(3.0).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.dtype(), DType::F64);
    assert_eq!(g.to_vec_f64().unwrap(), vec![3.0, 3.0]);
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

mod gpu {
    use crate::gpu::testing::{f16_test_device, test_device};
    use crate::{DType, Device, Tensor};

    /// Whether `got` is `want` rounded to one of its two nearest f16 neighbours (WGSL lets
    /// the conversion take either).
    fn is_f16_rounding(got: f32, want: f32) -> bool {
        let exact = half::f16::from_f32(got).to_f32() == got;
        exact && (got - want).abs() <= want.abs() * 2f32.powi(-10) + 6e-8
    }

    #[test]
    fn f16_round_trip_rounds_each_value_once() {
        let Some(gpu) = f16_test_device() else { return };
        for n in [1, 2, 3, 257, 1000] {
            let x = Tensor::randn([n], 10.0, n as u64, DType::F32, &gpu).unwrap();
            let h = x.to_dtype(DType::F16).unwrap();
            assert_eq!(h.dtype(), DType::F16);
            assert_eq!(h.device(), &gpu);
            let back = h.to_dtype(DType::F32).unwrap();
            assert_eq!(back.dtype(), DType::F32);
            let (want, got) = (x.to_vec_f32().unwrap(), back.to_vec_f32().unwrap());
            // Reading F16 storage back widens it on the host: the same values.
            assert_eq!(h.to_vec_f32().unwrap(), got);
            for (g, w) in got.iter().zip(&want) {
                assert!(is_f16_rounding(*g, *w), "n={n}: {w} became {g}");
            }
        }
    }

    #[test]
    fn f16_tensors_are_made_on_the_gpu_and_moved_as_f32() {
        let Some(gpu) = f16_test_device() else { return };
        let h = Tensor::from_f64_slice(&[1.0, 0.5, -3.0], [3], DType::F16, &gpu).unwrap();
        assert_eq!(h.dtype(), DType::F16);
        let cpu = h.to_device(&Device::Cpu).unwrap();
        assert_eq!(cpu.dtype(), DType::F32);
        assert_eq!(cpu.to_vec_f64().unwrap(), vec![1.0, 0.5, -3.0]);
    }

    #[test]
    fn other_ops_refuse_f16_by_name() {
        let Some(gpu) = f16_test_device() else { return };
        let h = Tensor::ones([4], DType::F16, &gpu).unwrap();
        for (op, result) in [("relu", h.relu()), ("add", h.add(&h)), ("exp", h.exp())] {
            let e = result.unwrap_err().to_string();
            assert!(
                e.starts_with(op) && e.contains(".to_dtype(DType::F32)"),
                "{op}: {e}"
            );
        }
        // After the cast back, the same ops work.
        let f = h.to_dtype(DType::F32).unwrap();
        assert_eq!(f.add(&f).unwrap().to_vec_f64().unwrap(), vec![2.0; 4]);
    }

    /// On every adapter (here lavapipe's Vulkan adapter has shader-f16 and its GL one does
    /// not), F16 works exactly where the device has the feature.
    #[test]
    fn f16_needs_shader_f16() {
        if test_device().is_none() {
            return;
        }
        for adapter in crate::gpu::adapters() {
            let gpu = match Device::gpu(adapter.index) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("gpu:{} not checked: {e}", adapter.index);
                    continue;
                }
            };
            let Device::Gpu(g) = &gpu else {
                unreachable!("Device::gpu opens a GPU")
            };
            assert_eq!(g.has_shader_f16(), adapter.shader_f16, "{g}");
            let x = Tensor::ones([3], DType::F32, &gpu).unwrap();
            let r = x.to_dtype(DType::F16);
            if g.has_shader_f16() {
                assert_eq!(r.unwrap().dtype(), DType::F16, "{g}");
            } else {
                let e = r.unwrap_err().to_string();
                assert!(e.contains("shader-f16"), "{g}: {e}");
            }
        }
    }
}
