//! CIFAR-FS and FC100 resolved against a fake CIFAR-100 that has the real class names and
//! superclass structure (3 images per fine class: 2 in train, 1 in test).
use std::collections::HashSet;
use std::path::Path;

use clce_cli::data::{DataSpec, Dataset};
use clce_cli::eval::benchmarks::{Benchmark, FewShotSplit};
use clce_cli::eval::images::few_shot_split;

/// CIFAR-100's superclasses with their fine classes (from the data set's home page).
const HIERARCHY: [(&str, [&str; 5]); 20] = [
    (
        "aquatic_mammals",
        ["beaver", "dolphin", "otter", "seal", "whale"],
    ),
    (
        "fish",
        ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    ),
    ("flowers", ["orchid", "poppy", "rose", "sunflower", "tulip"]),
    ("food_containers", ["bottle", "bowl", "can", "cup", "plate"]),
    (
        "fruit_and_vegetables",
        ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    ),
    (
        "household_electrical_devices",
        ["clock", "keyboard", "lamp", "telephone", "television"],
    ),
    (
        "household_furniture",
        ["bed", "chair", "couch", "table", "wardrobe"],
    ),
    (
        "insects",
        ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    ),
    (
        "large_carnivores",
        ["bear", "leopard", "lion", "tiger", "wolf"],
    ),
    (
        "large_man-made_outdoor_things",
        ["bridge", "castle", "house", "road", "skyscraper"],
    ),
    (
        "large_natural_outdoor_scenes",
        ["cloud", "forest", "mountain", "plain", "sea"],
    ),
    (
        "large_omnivores_and_herbivores",
        ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    ),
    (
        "medium_mammals",
        ["fox", "porcupine", "possum", "raccoon", "skunk"],
    ),
    (
        "non-insect_invertebrates",
        ["crab", "lobster", "snail", "spider", "worm"],
    ),
    ("people", ["baby", "boy", "girl", "man", "woman"]),
    (
        "reptiles",
        ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    ),
    (
        "small_mammals",
        ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    ),
    (
        "trees",
        [
            "maple_tree",
            "oak_tree",
            "palm_tree",
            "pine_tree",
            "willow_tree",
        ],
    ),
    (
        "vehicles_1",
        ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    ),
    (
        "vehicles_2",
        ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
    ),
];

/// Fine names in CIFAR-100 label order (alphabetical) and the superclass of each.
fn fine_classes() -> (Vec<String>, Vec<usize>) {
    let mut fine: Vec<(&str, usize)> = HIERARCHY
        .iter()
        .enumerate()
        .flat_map(|(c, (_, members))| members.iter().map(move |&m| (m, c)))
        .collect();
    fine.sort();
    fine.iter().map(|&(n, c)| (n.to_string(), c)).unzip()
}

/// A CIFAR-100 binary distribution with three images per fine class f: k = 0, 1 in train,
/// k = 2 in test; image (f, k) is red f and green k everywhere.
fn write_fake_cifar100(data_dir: &Path) {
    let (fine, coarse) = fine_classes();
    let dir = data_dir.join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    let record = |f: usize, k: usize| {
        let mut r = vec![coarse[f] as u8, f as u8];
        r.extend(std::iter::repeat_n(f as u8, 32 * 32));
        r.extend(std::iter::repeat_n(k as u8, 2 * 32 * 32));
        r
    };
    let train: Vec<u8> = (0..100)
        .flat_map(|f| [record(f, 0), record(f, 1)].concat())
        .collect();
    let test: Vec<u8> = (0..100).flat_map(|f| record(f, 2)).collect();
    std::fs::write(dir.join("train.bin"), train).unwrap();
    std::fs::write(dir.join("test.bin"), test).unwrap();
    std::fs::write(dir.join("fine_label_names.txt"), fine.join("\n") + "\n").unwrap();
    let coarse_names: Vec<&str> = HIERARCHY.iter().map(|(n, _)| *n).collect();
    std::fs::write(
        dir.join("coarse_label_names.txt"),
        coarse_names.join("\n") + "\n",
    )
    .unwrap();
}

fn open() -> (tempfile::TempDir, Dataset) {
    let tmp = tempfile::tempdir().unwrap();
    write_fake_cifar100(tmp.path());
    let data = Dataset::open(&DataSpec::Cifar100, tmp.path(), 32).unwrap();
    (tmp, data)
}

#[test]
fn cifar_fs_splits_take_all_images_of_their_classes() {
    let (_tmp, cifar) = open();
    let mut seen = HashSet::new();
    for (split, classes) in [
        (FewShotSplit::Train, 64),
        (FewShotSplit::Val, 16),
        (FewShotSplit::Test, 20),
    ] {
        let set = few_shot_split(&cifar, Benchmark::CifarFs, split).unwrap();
        assert_eq!(set.class_names.len(), classes);
        assert_eq!(
            set.len(),
            3 * classes,
            "train and test images of every class"
        );
        assert_eq!(
            set.class_names,
            Benchmark::CifarFs.classes(split).to_vec(),
            "labels follow the published list"
        );
        // Every image carries the label of its class: its red value is its fine class.
        for i in 0..set.len() {
            let fine = set.image(i).unwrap().pixels[0] as usize;
            let name = &cifar.class_names[fine];
            assert_eq!(name, &set.class_names[set.labels[i]]);
        }
        for name in set.class_names {
            assert!(seen.insert(name), "a class in two splits");
        }
    }
    assert_eq!(seen.len(), 100);
}

#[test]
fn fc100_splits_are_whole_superclasses() {
    let (_tmp, cifar) = open();
    let (fine, coarse) = fine_classes();
    for (split, superclasses) in [
        (FewShotSplit::Train, 12),
        (FewShotSplit::Val, 4),
        (FewShotSplit::Test, 4),
    ] {
        let set = few_shot_split(&cifar, Benchmark::Fc100, split).unwrap();
        assert_eq!(set.class_names.len(), 5 * superclasses);
        assert_eq!(set.len(), 15 * superclasses);
        let listed = Benchmark::Fc100.classes(split);
        for name in &set.class_names {
            let f = fine.iter().position(|n| n == name).unwrap();
            assert!(
                listed.contains(&HIERARCHY[coarse[f]].0),
                "{name} in {split}"
            );
        }
    }
    let test = few_shot_split(&cifar, Benchmark::Fc100, FewShotSplit::Test).unwrap();
    assert!(test.class_names.contains(&"woman".to_string()));
    assert!(test.class_names.contains(&"otter".to_string()));
}

#[test]
fn a_copy_without_the_listed_names_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_fake_cifar100(tmp.path());
    let names = tmp.path().join("cifar-100-binary/fine_label_names.txt");
    let renamed = std::fs::read_to_string(&names)
        .unwrap()
        .replace("woman", "lady");
    std::fs::write(&names, renamed).unwrap();
    let cifar = Dataset::open(&DataSpec::Cifar100, tmp.path(), 32).unwrap();
    let err = few_shot_split(&cifar, Benchmark::CifarFs, FewShotSplit::Test)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"woman\""), "{err}");
}
