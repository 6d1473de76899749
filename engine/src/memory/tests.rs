use super::meta::{AllocatorModel, Category};
use crate::{DType, Device, MetaDevice, Shape, Tensor};

fn meta(model: AllocatorModel) -> (MetaDevice, Device) {
    let m = MetaDevice::new(model);
    (m.clone(), Device::Meta(m))
}

#[test]
fn meta_tensors_have_shapes_count_their_bytes_and_free_them() {
    let (m, device) = meta(AllocatorModel::Cpu);
    let a = Tensor::randn([3, 5], 1.0, 0, DType::F32, &device).unwrap();
    let b = Tensor::randn([5, 7], 1.0, 1, DType::F32, &device).unwrap();
    assert_eq!(m.memory_stats().live_bytes, 4 * (15 + 35));
    let c = a.matmul(&b).unwrap().relu().unwrap();
    assert_eq!(c.dims(), [3, 7]);
    // matmul's product and relu's output, the product still held by nobody but the tape
    // (a and b do not require grad: nothing is recorded, so the product is gone).
    assert_eq!(m.memory_stats().live_bytes, 4 * (15 + 35 + 21));
    assert_eq!(m.memory_stats().peak_live_bytes, 4 * (15 + 35 + 21 + 21));
    drop((a, b, c));
    assert_eq!(m.memory_stats().live_bytes, 0);
    // Values read back as zeros, so code that looks at a loss runs on.
    let s = Tensor::ones([2], DType::F32, &device)
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(s.to_scalar().unwrap(), 0.0);
}

#[test]
fn a_gpu_plan_rounds_to_the_pool_size_classes_and_finds_the_largest_buffer() {
    let (m, device) = meta(AllocatorModel::Gpu {
        binding_limit: 1 << 20,
        shader_f16: true,
    });
    let x = Tensor::zeros([257], DType::F32, &device).unwrap();
    // 1028 bytes fall in the 1280-byte class.
    assert_eq!(m.memory_stats().live_bytes, 1280);
    let big = x
        .reshape([1, 257])
        .unwrap()
        .broadcast_to(&Shape::from([1000, 257]))
        .unwrap();
    assert_eq!(m.largest_buffer().bytes, 4 * 257 * 1000);
    assert_eq!(m.largest_buffer().op, "broadcast_to");
    drop(big);
}

#[test]
fn backward_on_the_meta_device_counts_gradients_as_gradients() {
    let (m, device) = meta(AllocatorModel::Cpu);
    m.set_category(Category::Weights);
    let w = Tensor::zeros([4, 3], DType::F32, &device)
        .unwrap()
        .set_requires_grad(true);
    m.set_category(Category::Activations);
    let x = Tensor::zeros([2, 4], DType::F32, &device).unwrap();
    let loss = x.matmul(&w).unwrap().relu().unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    assert_eq!(w.grad().unwrap().dims(), [4, 3]);
    m.reset_peak_memory();
    let at = m.breakdown_at_peak();
    assert_eq!(at[0], 48, "weights");
    assert_eq!(at[2], 48, "the gradient of w");
}

#[test]
fn cpu_accounting_follows_tensor_storage() {
    // Other tests allocate concurrently, so compare with a margin far below the sizes here.
    let before = Device::Cpu.memory_stats().live_bytes;
    let t = Tensor::zeros([1 << 20], DType::F32, &Device::Cpu).unwrap();
    let during = Device::Cpu.memory_stats();
    assert!(
        during.live_bytes >= before + (4 << 20) - (1 << 20),
        "{during:?}"
    );
    assert!(during.peak_live_bytes >= during.live_bytes);
    let view = t.reshape([1024, 1024]).unwrap();
    drop(t);
    // The view shares the storage: still counted once, still live.
    let shared = Device::Cpu.memory_stats().live_bytes;
    assert!(shared + (1 << 20) >= during.live_bytes, "{shared}");
    drop(view);
}
