//! The run directory (`--out runs/NAME`): where a run writes its settings, metrics and
//! checkpoints, and where `--resume` finds them.
//!
//! ```text
//! runs/NAME/
//!   config.json              every setting (TrainConfig)
//!   metrics.jsonl            one JSON object per logged step and per epoch
//!   last.safetensors         the model after the latest save (timm naming, timm-loadable)
//!   last.proj_head.safetensors  our projection head of that model (proj.*)
//!   best.safetensors         the model of the epoch with the best test top-1
//!   best.proj_head.safetensors  its projection head
//!   train_state.safetensors  AdamW's moments + epoch, step and best metric, for --resume
//!   per_class_accuracy.json  test accuracy of every class at the end
//! ```
//!
//! Every file that is replaced is written to a temporary name and renamed over the old one,
//! so a crash leaves either the old file or the new one, never half of one.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::config::TrainConfig;
use super::error::{Result, TrainError};

pub struct RunDir {
    root: PathBuf,
    /// `create` found a run here that had stopped before its first checkpoint, and started
    /// over in its place.
    reused: bool,
}

impl RunDir {
    /// Creates the directory of a new run (default `runs/<UTC timestamp>`) and writes its
    /// configuration. An existing directory must not hold a run with a checkpoint; one that
    /// stopped before its first (a failed start) is reused, and [`RunDir::reused`] says so.
    pub fn create(out: Option<&Path>, cfg: &TrainConfig) -> Result<RunDir> {
        let root = match out {
            Some(p) => p.to_path_buf(),
            None => Path::new("runs").join(timestamp(SystemTime::now())),
        };
        if root.exists() && !root.is_dir() {
            return Err(TrainError::Invalid(format!(
                "--out {} is a file, not a directory; name a new or existing directory",
                root.display()
            )));
        }
        let mut run = RunDir {
            root,
            reused: false,
        };
        if run.config_path().exists() {
            if run.last_path().exists() || run.best_path().exists() {
                return Err(TrainError::Invalid(format!(
                    "{} already holds a run with a checkpoint; continue it with --resume {0}, \
                     or choose another --out",
                    run.root.display()
                )));
            }
            // A run that failed before its first checkpoint left nothing worth keeping.
            for path in [run.config_path(), run.metrics_path(), run.state_path()] {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(TrainError::io(&path, e))
                    }
                    _ => {}
                }
            }
            run.reused = true;
        }
        fs::create_dir_all(&run.root).map_err(|e| TrainError::io(&run.root, e))?;
        write_atomic(&run.config_path(), cfg.to_json().as_bytes())?;
        Ok(run)
    }

    /// Opens the directory of an earlier run and reads its configuration.
    pub fn open(root: &Path) -> Result<(RunDir, TrainConfig)> {
        let run = RunDir {
            root: root.to_path_buf(),
            reused: false,
        };
        let path = run.config_path();
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TrainError::Invalid(format!(
                    "{} is not a run directory (it has no config.json)",
                    root.display()
                ))
            } else {
                TrainError::io(&path, e)
            }
        })?;
        let cfg = serde_json::from_str(&text).map_err(|e| {
            TrainError::corrupt(&path, format!("not a clce run configuration: {e}"))
        })?;
        Ok((run, cfg))
    }

    /// The directory another process (rank 0 of a `--distributed` run) writes: a handle on
    /// its paths that touches nothing.
    pub fn written_elsewhere(root: PathBuf) -> RunDir {
        RunDir {
            root,
            reused: false,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Whether `create` started over in the folder of a run that never reached a checkpoint.
    pub fn reused(&self) -> bool {
        self.reused
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn last_path(&self) -> PathBuf {
        self.root.join("last.safetensors")
    }
    pub fn best_path(&self) -> PathBuf {
        self.root.join("best.safetensors")
    }
    pub fn state_path(&self) -> PathBuf {
        self.root.join("train_state.safetensors")
    }
    pub fn per_class_path(&self) -> PathBuf {
        self.root.join("per_class_accuracy.json")
    }
}

/// Replaces `path` with `bytes` atomically (temporary file, flushed to disk, renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, |tmp| {
        let mut f = fs::File::create(tmp).map_err(|e| TrainError::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| TrainError::io(tmp, e))
    })
}

/// Has `write` create the new content under a temporary name next to `path`, flushes it to
/// disk and renames it over `path`. On failure the temporary file is removed and `path` is
/// untouched.
pub fn replace_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_name(path);
    let result = write(&tmp).and_then(|()| {
        // The data must be on disk before the rename makes it the file.
        let f = fs::File::open(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `last.safetensors` -> `last.safetensors.tmp` (same directory, so the rename is atomic).
pub(crate) fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `20261123-142501`: a run directory name from the UTC time.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_times() {
        let at = |secs| timestamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC, a leap day of a century leap year.
        assert_eq!(at(951_827_696), "20000229-123456");
        // 2026-11-23 00:00:00 UTC.
        assert_eq!(at(1_795_392_000), "20261123-000000");
    }

    #[test]
    fn atomic_replace_leaves_the_old_file_when_writing_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        write_atomic(&path, b"old").unwrap();
        let failed = replace_with(&path, |tmp| {
            fs::write(tmp, b"half").unwrap();
            Err(TrainError::Invalid("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(!temporary_name(&path).exists());
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }
}
