//! Reading a training run's `metrics.jsonl`: one JSON object per line with `epoch`, `step`,
//! `loss` and `lr`; lines that close an epoch also carry `test_top1` and `test_top5` as
//! fractions.
use std::path::Path;

use serde_json::Value;

use super::error::{EvalError, Result};

/// One logged line.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub epoch: f64,
    pub step: f64,
    pub loss: Option<f64>,
    pub lr: Option<f64>,
    pub test_top1: Option<f64>,
    pub test_top5: Option<f64>,
}

impl Record {
    /// Whether this line closes an epoch (it carries test accuracy).
    pub fn is_epoch_line(&self) -> bool {
        self.test_top1.is_some() || self.test_top5.is_some()
    }
}

pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| EvalError::format(path, format!("line {}: {msg}", n + 1));
        let value: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        let number = |key: &str| -> Result<Option<f64>> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad(format!("{key:?} is {v}, not a number"))),
            }
        };
        let required = |key: &str| {
            number(key)?
                .ok_or_else(|| bad(format!("has no {key:?} (every line needs epoch and step)")))
        };
        records.push(Record {
            epoch: required("epoch")?,
            step: required("step")?,
            loss: number("loss")?,
            lr: number("lr")?,
            test_top1: number("test_top1")?,
            test_top5: number("test_top5")?,
        });
    }
    if records.is_empty() {
        return Err(EvalError::format(path, "holds no records"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_step_and_epoch_lines_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"epoch\": 0, \"step\": 10, \"loss\": 2.5, \"lr\": 0.001}\n\n\
             {\"epoch\": 1, \"step\": 20, \"loss\": 2.0, \"lr\": 0.002, \"test_top1\": 0.4, \"test_top5\": 0.8}\n",
        )
        .unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert!(!records[0].is_epoch_line() && records[1].is_epoch_line());
        assert_eq!(records[1].test_top5, Some(0.8));

        std::fs::write(
            &path,
            "{\"epoch\": 0, \"step\": 1}\n{\"epoch\": 0, \"loss\": 1}\n",
        )
        .unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("step"), "{err}");
        std::fs::write(&path, "{\"epoch\": 0, \"step\": \"x\"}\n").unwrap();
        assert!(read(&path)
            .unwrap_err()
            .to_string()
            .contains("not a number"));
        std::fs::write(&path, "loss=3\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("not JSON"));
        assert!(read(&dir.path().join("none.jsonl")).is_err());
    }
}
