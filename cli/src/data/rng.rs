//! Random streams keyed by what they are for, so that every random decision depends only on
//! (seed, purpose, epoch, image index, ...) and never on which thread or batch got there first.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is used for; keeps e.g. the shuffle of epoch 3 apart from the views of image 3.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    Shuffle = 1,
    Augment = 2,
    SyntheticTrain = 3,
    SyntheticTest = 4,
    /// The classes and images of one few-shot episode.
    Episode = 5,
    /// Subsampling and initialisation of the embedding analysis (t-SNE).
    Analysis = 6,
}

/// A generator seeded from `seed`, the purpose and a list of indices.
pub(crate) fn stream(seed: u64, purpose: Purpose, indices: &[u64]) -> ChaCha8Rng {
    let mut state = splitmix64(seed ^ splitmix64(purpose as u64));
    for &i in indices {
        state = splitmix64(state ^ splitmix64(i.wrapping_add(0x5851_f42d_4c95_7f2d)));
    }
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        state = splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Steele, Lea & Flood's SplitMix64 finaliser: a cheap bijective mixer of 64-bit words.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn first(seed: u64, purpose: Purpose, idx: &[u64]) -> u64 {
        stream(seed, purpose, idx).random()
    }

    #[test]
    fn streams_repeat_and_differ_by_every_key_part() {
        let base = first(7, Purpose::Augment, &[1, 2, 0]);
        assert_eq!(base, first(7, Purpose::Augment, &[1, 2, 0]));
        assert_ne!(base, first(8, Purpose::Augment, &[1, 2, 0]));
        assert_ne!(base, first(7, Purpose::Shuffle, &[1, 2, 0]));
        assert_ne!(base, first(7, Purpose::Augment, &[2, 1, 0]));
        assert_ne!(base, first(7, Purpose::Augment, &[1, 2, 1]));
        assert_ne!(base, first(7, Purpose::Augment, &[1, 2]));
    }
}
