//! Tests of the backend itself; each op family tests its kernels in its own `tests.rs`.
use super::testing::test_device;
use crate::{DType, Device, Tensor};

#[test]
fn adapters_are_ranked_and_indexed() {
    let list = super::adapters();
    for (i, a) in list.iter().enumerate() {
        assert_eq!(a.index, i);
        assert!(a.max_storage_binding_size > 0, "{a:?}");
    }
    // Software adapters come after every hardware one.
    let first_software = list
        .iter()
        .position(|a| a.is_software)
        .unwrap_or(list.len());
    assert!(list[first_software..].iter().all(|a| a.is_software));
}

#[test]
fn values_survive_a_round_trip() {
    let Some(gpu) = test_device() else { return };
    for n in [0usize, 1, 7, 1000, 65_537] {
        let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
        let cpu = Tensor::from_vec(values.clone(), [n], &Device::Cpu).unwrap();
        let on_gpu = cpu.to_device(&gpu).unwrap();
        assert_eq!(on_gpu.device(), &gpu);
        assert_eq!(on_gpu.to_vec_f32().unwrap(), values);
        let back = on_gpu.to_device(&Device::Cpu).unwrap();
        assert!(back.device().is_cpu());
        assert_eq!(back.to_vec_f32().unwrap(), values);
    }
}

#[test]
fn devices_are_shared_handles_equal_by_identity() {
    let Some(gpu) = test_device() else { return };
    assert_eq!(Device::gpu(0).unwrap(), gpu);
    assert_ne!(gpu, Device::Cpu);
    let text = gpu.to_string();
    assert!(text.starts_with("gpu:0 ("), "{text}");
}

#[test]
fn f64_cannot_move_to_the_gpu() {
    let Some(gpu) = test_device() else { return };
    let x = Tensor::ones([3], DType::F64, &Device::Cpu).unwrap();
    let err = x.to_device(&gpu).unwrap_err().to_string();
    assert!(err.contains("F64") && err.contains("f32"), "{err}");
    assert!(Tensor::ones([3], DType::F64, &gpu).is_err());
    let y = Tensor::ones([3], DType::F32, &gpu).unwrap();
    assert!(y.to_dtype(DType::F64).is_err());
    assert_eq!(
        y.to_dtype(DType::F32).unwrap().to_vec_f32().unwrap(),
        [1.0; 3]
    );
}

#[test]
fn assign_replaces_values_in_place() {
    let Some(gpu) = test_device() else { return };
    let a = Tensor::zeros([2, 3], DType::F32, &gpu).unwrap();
    let view = a.reshape([6]).unwrap();
    let b = Tensor::full(2.5, [2, 3], DType::F32, &gpu).unwrap();
    a.assign(&b).unwrap();
    assert_eq!(view.to_vec_f32().unwrap(), [2.5; 6]);
    let cpu = Tensor::zeros([2, 3], DType::F32, &Device::Cpu).unwrap();
    assert!(a.assign(&cpu).unwrap_err().to_string().contains("devices"));
}

#[test]
fn freed_buffers_are_reused_and_counted() {
    let Some(Device::Gpu(gpu)) = test_device() else {
        return;
    };
    // Tests share the device; an odd size keeps this size class to this test.
    let bytes = 4 * 123_457;
    let first = gpu.alloc(bytes, "a test buffer").unwrap();
    let stats = gpu.memory_stats();
    assert!(stats.live_bytes >= bytes && stats.peak_live_bytes >= stats.live_bytes);
    let raw = first.raw().clone();
    drop(first);
    let second = gpu.alloc(bytes - 8, "a test buffer").unwrap();
    assert_eq!(
        second.raw(),
        &raw,
        "a freed buffer of the same size class is reused"
    );
}

#[test]
fn oversized_tensors_name_the_size_and_the_limit() {
    let Some(Device::Gpu(gpu)) = test_device() else {
        return;
    };
    let limit = gpu.limits().max_storage_buffer_binding_size;
    let err = gpu
        .alloc(limit + 4, "a test tensor")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&(limit + 4).to_string()) && err.contains(&limit.to_string()),
        "{err}"
    );
}

/// Records binary.wgsl with a 16-byte parameter block where the shader expects 112: a
/// validation error found when the batch is submitted.
fn broken_launch(gpu: &super::GpuDevice) -> crate::Result<super::GpuStorage> {
    let x = super::GpuStorage::from_slice(gpu, &[1.0, 2.0, 3.0])?;
    let out = super::GpuStorage::alloc(gpu, 3, "test")?;
    gpu.launch(super::Launch {
        shader: &super::shaders::BINARY,
        entry: "same_shape",
        constants: &[("OP", 0.0)],
        params: super::Params::new().u32(3),
        reads: &[x.buffer(), x.buffer()],
        writes: &[out.buffer()],
        workgroups: [1, 1, 1],
    })?;
    Ok(out)
}

#[test]
fn a_failing_kernel_is_an_error_and_the_device_recovers() {
    if test_device().is_none() {
        return;
    }
    // Devices of their own: the errors must not reach tests sharing gpu:0.
    let batched = super::GpuDevice::create_with(0, false).unwrap();
    let out = broken_launch(&batched).unwrap();
    let err = out.to_vec().unwrap_err().to_string();
    assert!(
        err.contains("validation error") && err.contains("CLCE_GPU_CHECK"),
        "{err}"
    );
    let y = super::GpuStorage::from_slice(&batched, &[4.0, 5.0]).unwrap();
    assert_eq!(y.to_vec().unwrap(), [4.0, 5.0]);

    let checked = super::GpuDevice::create_with(0, true).unwrap();
    let err = broken_launch(&checked).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("binary.wgsl:same_shape"), "{err}");
}

#[test]
fn counters_count_dispatches_submissions_readbacks_creations_and_bytes() {
    let Some(gpu) = super::testing::private_test_device() else {
        return;
    };
    let counters = || gpu.gpu_counters().expect("a GPU counts");
    let start = counters();
    let a = Tensor::from_vec(vec![1f32; 1000], [1000], &gpu).unwrap();
    let b = Tensor::from_vec(vec![2f32; 1000], [1000], &gpu).unwrap();
    let after_upload = counters().since(&start);
    assert_eq!(after_upload.bytes_uploaded, 8000);
    assert_eq!(after_upload.buffer_creations, 2);
    assert_eq!(after_upload.dispatches, 0);
    assert_eq!(after_upload.readbacks, 0);

    let recorded = counters();
    let sum = a.add(&b).unwrap();
    let c = counters().since(&recorded);
    assert_eq!((c.dispatches, c.buffer_creations, c.readbacks), (1, 1, 0));
    assert_eq!(c.submissions, 0, "launches are only recorded");

    let read = counters();
    assert_eq!(sum.to_vec_f32().unwrap(), vec![3f32; 1000]);
    let c = counters().since(&read);
    assert_eq!(
        (c.readbacks, c.bytes_downloaded, c.submissions),
        (1, 4000, 1)
    );

    // Freed buffers are reused: the same op again creates nothing.
    drop(sum);
    let warm = counters();
    let again = a.add(&b).unwrap();
    let c = counters().since(&warm);
    assert_eq!((c.dispatches, c.buffer_creations), (1, 0));
    gpu.synchronize().unwrap();
    assert_eq!(counters().since(&warm).submissions, 1);
    assert_eq!(
        counters().since(&warm).readbacks,
        0,
        "waiting is not a readback"
    );
    drop(again);
}
