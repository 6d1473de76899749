//! CIFAR readers against small files in both distributions, and their error messages.
use std::collections::BTreeMap;
use std::path::Path;

use clce_cli::data::{DataSpec, Dataset};
use serde_pickle::{HashableValue, SerOptions, Value};

use super::pixel_value;
use super::py2_pickle::{self, Item};

const SIDE: usize = 32;

/// Image `i` channel-planar, as both distributions store it.
fn planar(i: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(3 * SIDE * SIDE);
    for c in 0..3 {
        for y in 0..SIDE {
            for x in 0..SIDE {
                bytes.push(pixel_value(i, x, y, c));
            }
        }
    }
    bytes
}

fn fine_label(i: usize) -> usize {
    (i * 37 + 3) % 100
}

fn coarse_label(i: usize) -> usize {
    fine_label(i) / 5
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|k| format!("{prefix}{k}")).collect()
}

/// Image indices `range` of the synthetic content, as CIFAR-100 binary records.
fn cifar100_records(range: std::ops::Range<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in range {
        out.push(coarse_label(i) as u8);
        out.push(fine_label(i) as u8);
        out.extend(planar(i));
    }
    out
}

fn write_cifar100_binary(data_dir: &Path, train: usize, test: usize) {
    let dir = data_dir.join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.bin"), cifar100_records(0..train)).unwrap();
    std::fs::write(dir.join("test.bin"), cifar100_records(train..train + test)).unwrap();
    // The real name files end with blank lines.
    let text = |n: Vec<String>| n.join("\n") + "\n\n";
    std::fs::write(dir.join("fine_label_names.txt"), text(names("fine", 100))).unwrap();
    std::fs::write(
        dir.join("coarse_label_names.txt"),
        text(names("coarse", 20)),
    )
    .unwrap();
}

/// Checks that `split` holds images `first..first + n` with their labels.
fn check_split(split: &clce_cli::data::Split, first: usize, n: usize, with_coarse: bool) {
    assert_eq!(split.len(), n);
    for k in 0..n {
        let i = first + k;
        let image = split.image(k).unwrap();
        assert_eq!((image.width, image.height), (SIDE, SIDE));
        for (x, y) in [(0, 0), (31, 0), (5, 17), (31, 31)] {
            let expected = [0, 1, 2].map(|c| pixel_value(i, x, y, c));
            assert_eq!(image.pixel(x, y), expected, "image {i} at ({x}, {y})");
        }
    }
    let expected: Vec<usize> = (first..first + n).map(fine_label).collect();
    assert_eq!(split.labels(), &expected[..]);
    if with_coarse {
        let coarse: Vec<usize> = (first..first + n).map(coarse_label).collect();
        assert_eq!(split.coarse_labels().unwrap(), &coarse[..]);
    }
}

fn open(spec: DataSpec, data_dir: &Path) -> clce_cli::data::Result<Dataset> {
    Dataset::open(&spec, data_dir, 224)
}

#[test]
fn cifar100_binary_gives_images_labels_superclasses_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_binary(tmp.path(), 7, 3);
    let data = open(DataSpec::Cifar100, tmp.path()).unwrap();
    check_split(&data.train, 0, 7, true);
    check_split(&data.test, 7, 3, true);
    assert_eq!(data.class_names, names("fine", 100));
    assert_eq!(data.coarse_class_names, Some(names("coarse", 20)));
}

#[test]
fn data_dir_may_be_the_distribution_folder_itself() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_binary(tmp.path(), 2, 2);
    let data = open(DataSpec::Cifar100, &tmp.path().join("cifar-100-binary")).unwrap();
    assert_eq!(data.train.len(), 2);
}

#[test]
fn cifar10_binary_joins_the_five_training_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let records = |range: std::ops::Range<usize>| {
        let mut out = Vec::new();
        for i in range {
            out.push((i % 10) as u8);
            out.extend(planar(i));
        }
        out
    };
    for b in 0..5 {
        let file = dir.join(format!("data_batch_{}.bin", b + 1));
        std::fs::write(file, records(2 * b..2 * b + 2)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), records(10..13)).unwrap();
    std::fs::write(
        dir.join("batches.meta.txt"),
        names("c", 10).join("\n") + "\n\n",
    )
    .unwrap();

    let data = open(DataSpec::Cifar10, tmp.path()).unwrap();
    assert_eq!(data.train.len(), 10);
    assert_eq!(data.test.len(), 3);
    assert_eq!(data.train.labels(), &(0..10).collect::<Vec<_>>()[..]);
    assert_eq!(data.test.labels(), &[0, 1, 2]);
    assert_eq!(
        data.train.image(9).unwrap().pixel(3, 4),
        [0, 1, 2].map(|c| pixel_value(9, 3, 4, c))
    );
    assert!(data.train.coarse_labels().is_none());
    assert_eq!(data.class_names, names("c", 10));
}

/// CIFAR-100 python files as the originals are: Python 2 pickles, numpy `data`.
fn write_cifar100_python2(data_dir: &Path, train: usize, test: usize) {
    let dir = data_dir.join("cifar-100-python");
    std::fs::create_dir_all(&dir).unwrap();
    let batch = |range: std::ops::Range<usize>, label: &'static str| {
        let n = range.len();
        py2_pickle::dict(&[
            (
                "filenames",
                Item::Strs(range.clone().map(|i| format!("img_{i}.png")).collect()),
            ),
            ("batch_label", Item::Str(label)),
            (
                "fine_labels",
                Item::Ints(range.clone().map(|i| fine_label(i) as i64).collect()),
            ),
            (
                "coarse_labels",
                Item::Ints(range.clone().map(|i| coarse_label(i) as i64).collect()),
            ),
            (
                "data",
                Item::Array {
                    rows: n,
                    cols: 3072,
                    bytes: range.flat_map(planar).collect(),
                },
            ),
        ])
    };
    std::fs::write(dir.join("train"), batch(0..train, "training batch 1 of 1")).unwrap();
    std::fs::write(
        dir.join("test"),
        batch(train..train + test, "testing batch 1 of 1"),
    )
    .unwrap();
    let meta = py2_pickle::dict(&[
        ("fine_label_names", Item::Strs(names("fine", 100))),
        ("coarse_label_names", Item::Strs(names("coarse", 20))),
    ]);
    std::fs::write(dir.join("meta"), meta).unwrap();
}

#[test]
fn cifar100_python_reads_python2_pickles_with_numpy_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_python2(tmp.path(), 5, 4);
    if let Ok(keep) = std::env::var("CLCE_KEEP_PICKLE") {
        // For checking the hand-written pickles against Python: copy them out.
        let to = Path::new(&keep);
        std::fs::create_dir_all(to).unwrap();
        for f in ["train", "test", "meta"] {
            std::fs::copy(tmp.path().join("cifar-100-python").join(f), to.join(f)).unwrap();
        }
    }
    let data = open(DataSpec::Cifar100, tmp.path()).unwrap();
    check_split(&data.train, 0, 5, true);
    check_split(&data.test, 5, 4, true);
    assert_eq!(data.class_names, names("fine", 100));
    assert_eq!(data.coarse_class_names, Some(names("coarse", 20)));
}

/// A pickled dict written by serde-pickle, keys as str (Python 3) or bytes (Python 2).
fn serde_dict(entries: Vec<(&str, Value)>, bytes_keys: bool) -> Vec<u8> {
    let dict: BTreeMap<HashableValue, Value> = entries
        .into_iter()
        .map(|(k, v)| {
            let key = if bytes_keys {
                HashableValue::Bytes(k.as_bytes().to_vec())
            } else {
                HashableValue::String(k.to_string())
            };
            (key, v)
        })
        .collect();
    serde_pickle::value_to_vec(&Value::Dict(dict), SerOptions::new()).unwrap()
}

fn int_list(values: impl Iterator<Item = usize>) -> Value {
    Value::List(values.map(|v| Value::I64(v as i64)).collect())
}

fn str_list(values: Vec<String>, as_bytes: bool) -> Value {
    Value::List(
        values
            .into_iter()
            .map(|s| {
                if as_bytes {
                    Value::Bytes(s.into_bytes())
                } else {
                    Value::String(s)
                }
            })
            .collect(),
    )
}

#[test]
fn cifar100_python_accepts_str_and_bytes_keys() {
    for bytes_keys in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cifar-100-python");
        std::fs::create_dir_all(&dir).unwrap();
        let batch = |range: std::ops::Range<usize>| {
            serde_dict(
                vec![
                    ("fine_labels", int_list(range.clone().map(fine_label))),
                    ("coarse_labels", int_list(range.clone().map(coarse_label))),
                    ("data", Value::Bytes(range.flat_map(planar).collect())),
                ],
                bytes_keys,
            )
        };
        std::fs::write(dir.join("train"), batch(0..3)).unwrap();
        std::fs::write(dir.join("test"), batch(3..5)).unwrap();
        let meta = serde_dict(
            vec![
                ("fine_label_names", str_list(names("fine", 100), bytes_keys)),
                (
                    "coarse_label_names",
                    str_list(names("coarse", 20), bytes_keys),
                ),
            ],
            bytes_keys,
        );
        std::fs::write(dir.join("meta"), meta).unwrap();

        let data = open(DataSpec::Cifar100, tmp.path()).unwrap();
        check_split(&data.train, 0, 3, true);
        check_split(&data.test, 3, 2, true);
        assert_eq!(data.class_names[42], "fine42");
        assert_eq!(data.coarse_class_names.unwrap()[19], "coarse19");
    }
}

#[test]
fn cifar10_python_reads_labels_and_label_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-py");
    std::fs::create_dir_all(&dir).unwrap();
    let batch = |range: std::ops::Range<usize>| {
        let n = range.len();
        py2_pickle::dict(&[
            ("batch_label", Item::Str("a batch")),
            (
                "labels",
                Item::Ints(range.clone().map(|i| (i % 10) as i64).collect()),
            ),
            (
                "data",
                Item::Array {
                    rows: n,
                    cols: 3072,
                    bytes: range.clone().flat_map(planar).collect(),
                },
            ),
            (
                "filenames",
                Item::Strs(range.map(|i| format!("{i}.png")).collect()),
            ),
        ])
    };
    for b in 0..5 {
        std::fs::write(dir.join(format!("data_batch_{}", b + 1)), batch(b..b + 1)).unwrap();
    }
    std::fs::write(dir.join("test_batch"), batch(5..7)).unwrap();
    let meta = py2_pickle::dict(&[("label_names", Item::Strs(names("c", 10)))]);
    std::fs::write(dir.join("batches.meta"), meta).unwrap();

    let data = open(DataSpec::Cifar10, tmp.path()).unwrap();
    assert_eq!(data.train.labels(), &[0, 1, 2, 3, 4]);
    assert_eq!(data.test.labels(), &[5, 6]);
    assert_eq!(
        data.test.image(1).unwrap().pixel(31, 2),
        [0, 1, 2].map(|c| pixel_value(6, 31, 2, c))
    );
    assert_eq!(data.class_names, names("c", 10));
}

#[test]
fn a_missing_data_set_says_where_files_go_and_where_they_come_from() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    for part in [
        "cifar-100-binary",
        "train.bin",
        "fine_label_names.txt",
        "cifar-100-python",
        "meta",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        "torchvision.datasets.CIFAR100(root=",
        "download=True",
        &tmp.path().display().to_string(),
    ] {
        assert!(msg.contains(part), "{part:?} not in: {msg}");
    }
    let msg = open(DataSpec::Cifar10, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("cifar-10-batches-bin") && msg.contains("CIFAR10(root="),
        "{msg}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_binary(tmp.path(), 2, 2);
    let test_bin = tmp.path().join("cifar-100-binary/test.bin");
    std::fs::remove_file(&test_bin).unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&test_bin.display().to_string()) && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn a_truncated_binary_file_is_named_with_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_binary(tmp.path(), 3, 2);
    let train_bin = tmp.path().join("cifar-100-binary/train.bin");
    let bytes = std::fs::read(&train_bin).unwrap();
    std::fs::write(&train_bin, &bytes[..bytes.len() - 100]).unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains(&train_bin.display().to_string()), "{msg}");
    assert!(
        msg.contains("truncated") && msg.contains("3074-byte"),
        "{msg}"
    );
}

/// An empty file (an interrupted download) is called empty, not "0 bytes is not a whole
/// number of records".
#[test]
fn an_empty_binary_file_is_called_empty() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_binary(tmp.path(), 3, 2);
    let test_bin = tmp.path().join("cifar-100-binary/test.bin");
    std::fs::write(&test_bin, b"").unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("test.bin") && msg.contains("is empty"),
        "{msg}"
    );
    assert!(!msg.contains("whole number"), "{msg}");
}

#[test]
fn a_label_out_of_range_is_reported_as_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_binary(tmp.path(), 3, 2);
    let train_bin = tmp.path().join("cifar-100-binary/train.bin");
    let mut bytes = std::fs::read(&train_bin).unwrap();
    bytes[3074 + 1] = 200; // fine label of the second record
    std::fs::write(&train_bin, &bytes).unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("train.bin") && msg.contains("example 1") && msg.contains("200"),
        "{msg}"
    );
}

#[test]
fn a_truncated_or_foreign_pickle_is_named_with_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100_python2(tmp.path(), 3, 2);
    let train = tmp.path().join("cifar-100-python/train");
    let bytes = std::fs::read(&train).unwrap();
    std::fs::write(&train, &bytes[..bytes.len() / 2]).unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&train.display().to_string()) && msg.contains("truncated"),
        "{msg}"
    );

    // A readable pickle without the expected entries.
    let other = serde_dict(vec![("labels", int_list(0..3))], false);
    std::fs::write(&train, other).unwrap();
    let msg = open(DataSpec::Cifar100, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&train.display().to_string()) && msg.contains("\"data\""),
        "{msg}"
    );
}
