//! Image folders: class order, file discovery, lazy decoding and errors that name the file.
use std::path::Path;

use clce_cli::data::{DataSpec, Dataset, Loader, Normalization};

use super::pixel_value;

/// Writes image number `i` (w x h, the shared test content) as a PNG at `path`.
fn write_png(path: &Path, i: usize, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([0, 1, 2].map(|c| pixel_value(i, x as usize, y as usize, c)))
    });
    img.save(path).unwrap();
}

fn spec(root: &Path) -> DataSpec {
    format!("imagefolder:{}", root.display()).parse().unwrap()
}

#[test]
fn classes_are_sorted_folder_names_and_files_are_found_recursively() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_png(&root.join("train/zebra/b.png"), 0, 5, 4);
    write_png(&root.join("train/zebra/a.PNG"), 1, 3, 6);
    write_png(&root.join("train/ant/nested/c.png"), 2, 4, 4);
    write_png(&root.join("train/Bee/x.png"), 3, 4, 4);
    std::fs::write(root.join("train/ant/notes.txt"), "not an image").unwrap();
    write_png(&root.join("val/zebra/v.png"), 4, 4, 4);
    write_png(&root.join("val/ant/w.png"), 5, 4, 4);

    let data = Dataset::open(&spec(root), Path::new("unused"), 224).unwrap();
    // Python's sorted(): upper case before lower case.
    assert_eq!(data.class_names, ["Bee", "ant", "zebra"]);
    assert_eq!(data.train.labels(), &[0, 1, 2, 2]);
    let first_zebra = data.train.image(2).unwrap(); // a.PNG sorts before b.png
    assert_eq!((first_zebra.width, first_zebra.height), (3, 6));
    assert_eq!(
        first_zebra.pixel(2, 5),
        [0, 1, 2].map(|c| pixel_value(1, 2, 5, c))
    );
    assert_eq!(data.test.labels(), &[1, 2]);
    assert_eq!(
        data.test.image(0).unwrap().pixel(1, 1),
        [0, 1, 2].map(|c| pixel_value(5, 1, 1, c))
    );
}

#[test]
fn test_folder_is_used_when_there_is_no_val() {
    let tmp = tempfile::tempdir().unwrap();
    write_png(&tmp.path().join("train/a/1.png"), 0, 4, 4);
    write_png(&tmp.path().join("test/a/2.png"), 1, 4, 4);
    let data = Dataset::open(&spec(tmp.path()), Path::new("."), 224).unwrap();
    assert_eq!(data.test.len(), 1);
}

#[test]
fn a_corrupt_image_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_png(&root.join("train/cat/ok.png"), 0, 8, 8);
    write_png(&root.join("train/dog/ok.png"), 1, 8, 8);
    let bad = root.join("train/dog/broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 this is no JPEG").unwrap();
    write_png(&root.join("val/cat/v.png"), 2, 8, 8);

    let data = Dataset::open(&spec(root), Path::new("."), 224).unwrap();
    let bad_index = 1; // dog/broken.jpg sorts before dog/ok.png
    let msg = data.train.image(bad_index).unwrap_err().to_string();
    assert!(msg.contains(&bad.display().to_string()), "{msg}");

    // Through the loader the error arrives as an Err item, not a panic.
    let norm = Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let results: Vec<_> = Loader::eval(data.train.clone(), 3, 16, &norm)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 1);
    let msg = results[0].as_ref().unwrap_err().to_string();
    assert!(msg.contains("broken.jpg"), "{msg}");
}

#[test]
fn layout_errors_describe_the_expected_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = Dataset::open(&spec(tmp.path()), Path::new("."), 224)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("train/<class>") && msg.contains("val/<class>"),
        "{msg}"
    );

    write_png(&tmp.path().join("train/a/1.png"), 0, 4, 4);
    std::fs::create_dir_all(tmp.path().join("train/empty")).unwrap();
    write_png(&tmp.path().join("val/a/1.png"), 0, 4, 4);
    let msg = Dataset::open(&spec(tmp.path()), Path::new("."), 224)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("empty") && msg.contains("no .jpg"), "{msg}");
}
