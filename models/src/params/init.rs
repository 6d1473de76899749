//! Initial values for tensors a checkpoint does not provide (a new classifier head, the
//! projection head, or a model built from scratch), following timm's initialisers.
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Const(f64),
    /// Normal(0, std) redrawn outside +-2 std (timm's trunc_normal_).
    TruncNormal {
        std: f64,
    },
    /// Normal(0, sqrt(2 / fan_out)) with fan_out = out_channels * kh * kw: timm's ResNet convs
    /// (kaiming_normal_, mode fan_out, ReLU gain).
    KaimingNormalFanOut,
    /// Uniform(-bound, bound): PyTorch's default for Linear and Conv2d weights and biases,
    /// with bound = 1 / sqrt(fan_in).
    Uniform {
        bound: f64,
    },
}

impl Init {
    pub const ZEROS: Init = Init::Const(0.0);
    pub const ONES: Init = Init::Const(1.0);

    /// PyTorch's default initialisation of a layer with `fan_in` inputs per output.
    pub fn pytorch_default(fan_in: usize) -> Init {
        Init::Uniform {
            bound: 1.0 / (fan_in.max(1) as f64).sqrt(),
        }
    }

    pub fn values(&self, shape: &[usize], seed: u64) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = |rng: &mut rand::rngs::StdRng| -> f64 { StandardNormal.sample(rng) };
        match *self {
            Init::Const(c) => vec![c as f32; n],
            Init::TruncNormal { std } => (0..n)
                .map(|_| loop {
                    let z = normal(&mut rng);
                    if z.abs() <= 2.0 {
                        break (z * std) as f32;
                    }
                })
                .collect(),
            Init::KaimingNormalFanOut => {
                let fan_out: usize =
                    shape.first().copied().unwrap_or(1) * shape.iter().skip(2).product::<usize>();
                let std = (2.0 / fan_out.max(1) as f64).sqrt();
                (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
            }
            Init::Uniform { bound } => (0..n)
                .map(|_| rng.random_range(-bound..=bound) as f32)
                .collect(),
        }
    }
}

/// A seed for one named tensor: the same name and base seed always give the same values,
/// whatever order tensors are created in.
pub fn seed_for(base: u64, name: &str) -> u64 {
    // FNV-1a over the name, then a splitmix64 round to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ base.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
