//! The published class splits of the two few-shot benchmarks built from CIFAR-100.
//!
//! **CIFAR-FS** (Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable
//! closed-form solvers", ICLR 2019, arXiv 1805.08136): the 100 fine classes split at random
//! into 64 train, 16 validation and 20 test classes; every class keeps all its 600 images
//! (CIFAR-100's train and test images together). The lists below, in their order, are those
//! of Arnout Devos' `get_cifarfs.py` (ArnoutDevos/maml-cifar-fs), which builds CIFAR-FS
//! "according to split specifications in Bertinetto et al. '18". The authors' own split files
//! could not be read here; the membership of every split was checked against two further
//! independent copies that agree with it: torchmeta's
//! `torchmeta/datasets/assets/cifar100/cifar-fs/{train,val,test}.json`
//! (tristandeleu/pytorch-meta) and the base/val/novel lists of another few-shot code base.
//!
//! **FC100** (Oreshkin, Rodríguez López & Lacoste, "TADAM: Task dependent adaptive metric for
//! improved few-shot learning", NeurIPS 2018, arXiv 1805.10123): split by CIFAR-100's 20
//! superclasses, 12 train / 4 validation / 4 test, each superclass bringing its 5 fine classes
//! with all their 600 images. Superclass indices {1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19} /
//! {8, 11, 13, 16} / {0, 7, 12, 14}: the `class_split` of the CIFAR-100 few-shot dataset
//! script that ships with TADAM-derived code (one copy labelled "class split from Oreshkin et
//! al. (2018) https://github.com/ElementAI/TADAM"), and the same superclasses by name in
//! torchmeta's `cifar100/fc100/{train,test}.json` (val being the remaining four).
//!
//! Names are those of CIFAR-100's `meta` file (`fine_label_names`, `coarse_label_names`).

/// Which benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Benchmark {
    CifarFs,
    Fc100,
}

/// Which of a benchmark's three class splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FewShotSplit {
    Train,
    Val,
    Test,
}

impl std::fmt::Display for FewShotSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FewShotSplit::Train => "train",
            FewShotSplit::Val => "val",
            FewShotSplit::Test => "test",
        })
    }
}

impl Benchmark {
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::CifarFs => "CIFAR-FS",
            Benchmark::Fc100 => "FC100",
        }
    }

    /// CIFAR-FS: fine class names. FC100: superclass (coarse) names.
    pub fn classes(self, split: FewShotSplit) -> &'static [&'static str] {
        match (self, split) {
            (Benchmark::CifarFs, FewShotSplit::Train) => CIFAR_FS_TRAIN,
            (Benchmark::CifarFs, FewShotSplit::Val) => CIFAR_FS_VAL,
            (Benchmark::CifarFs, FewShotSplit::Test) => CIFAR_FS_TEST,
            (Benchmark::Fc100, FewShotSplit::Train) => FC100_TRAIN,
            (Benchmark::Fc100, FewShotSplit::Val) => FC100_VAL,
            (Benchmark::Fc100, FewShotSplit::Test) => FC100_TEST,
        }
    }
}

pub const CIFAR_FS_TRAIN: &[&str] = &[
    "train",
    "skyscraper",
    "turtle",
    "raccoon",
    "spider",
    "orange",
    "castle",
    "keyboard",
    "clock",
    "pear",
    "girl",
    "seal",
    "elephant",
    "apple",
    "aquarium_fish",
    "bus",
    "mushroom",
    "possum",
    "squirrel",
    "chair",
    "tank",
    "plate",
    "wolf",
    "road",
    "mouse",
    "boy",
    "shrew",
    "couch",
    "sunflower",
    "tiger",
    "caterpillar",
    "lion",
    "streetcar",
    "lawn_mower",
    "tulip",
    "forest",
    "dolphin",
    "cockroach",
    "bear",
    "porcupine",
    "bee",
    "hamster",
    "lobster",
    "bowl",
    "can",
    "bottle",
    "trout",
    "snake",
    "bridge",
    "pine_tree",
    "skunk",
    "lizard",
    "cup",
    "kangaroo",
    "oak_tree",
    "dinosaur",
    "rabbit",
    "orchid",
    "willow_tree",
    "ray",
    "palm_tree",
    "mountain",
    "house",
    "cloud",
];

pub const CIFAR_FS_VAL: &[&str] = &[
    "otter",
    "motorcycle",
    "television",
    "lamp",
    "crocodile",
    "shark",
    "butterfly",
    "beaver",
    "beetle",
    "tractor",
    "flatfish",
    "maple_tree",
    "camel",
    "crab",
    "sea",
    "cattle",
];

pub const CIFAR_FS_TEST: &[&str] = &[
    "baby",
    "bed",
    "bicycle",
    "chimpanzee",
    "fox",
    "leopard",
    "man",
    "pickup_truck",
    "plain",
    "poppy",
    "rocket",
    "rose",
    "snail",
    "sweet_pepper",
    "table",
    "telephone",
    "wardrobe",
    "whale",
    "woman",
    "worm",
];

/// Superclasses 1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19.
pub const FC100_TRAIN: &[&str] = &[
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "reptiles",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// Superclasses 8, 11, 13, 16.
pub const FC100_VAL: &[&str] = &[
    "large_carnivores",
    "large_omnivores_and_herbivores",
    "non-insect_invertebrates",
    "small_mammals",
];

/// Superclasses 0, 7, 12, 14.
pub const FC100_TEST: &[&str] = &["aquatic_mammals", "insects", "medium_mammals", "people"];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// CIFAR-100's `coarse_label_names`, in label order.
    const COARSE: [&str; 20] = [
        "aquatic_mammals",
        "fish",
        "flowers",
        "food_containers",
        "fruit_and_vegetables",
        "household_electrical_devices",
        "household_furniture",
        "insects",
        "large_carnivores",
        "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes",
        "large_omnivores_and_herbivores",
        "medium_mammals",
        "non-insect_invertebrates",
        "people",
        "reptiles",
        "small_mammals",
        "trees",
        "vehicles_1",
        "vehicles_2",
    ];

    #[test]
    fn cifar_fs_splits_partition_100_classes_64_16_20() {
        let sets: Vec<HashSet<&str>> = [CIFAR_FS_TRAIN, CIFAR_FS_VAL, CIFAR_FS_TEST]
            .iter()
            .map(|l| l.iter().copied().collect())
            .collect();
        assert_eq!(
            sets.iter().map(HashSet::len).collect::<Vec<_>>(),
            vec![64, 16, 20]
        );
        let all: HashSet<&str> = sets.iter().flatten().copied().collect();
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn fc100_splits_are_the_published_superclass_indices() {
        let index = |name: &&str| COARSE.iter().position(|c| c == name).unwrap();
        let indices = |l: &[&str]| {
            let mut v: Vec<usize> = l.iter().map(index).collect();
            v.sort();
            v
        };
        assert_eq!(
            indices(FC100_TRAIN),
            vec![1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19]
        );
        assert_eq!(indices(FC100_VAL), vec![8, 11, 13, 16]);
        assert_eq!(indices(FC100_TEST), vec![0, 7, 12, 14]);
    }
}
