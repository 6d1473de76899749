//! What the user sees while a run goes: a progress bar (loss, lr, images/s, ETA) and one
//! summary line per epoch; `--quiet` keeps only the final line, `--json` prints JSON lines
//! only on stdout (the metrics records and a few events) for scripts. Warnings and errors
//! always go to stderr.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::gradcheck::Report;
use super::metrics::Record;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    Normal,
    Quiet,
    Json,
}

pub struct Reporter {
    mode: OutputMode,
    bar: Option<ProgressBar>,
}

impl Reporter {
    pub fn new(mode: OutputMode) -> Reporter {
        Reporter { mode, bar: None }
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// A line for people (normal mode only).
    pub fn info(&self, line: &str) {
        if self.mode == OutputMode::Normal {
            self.print(line);
        }
    }

    /// A line that must be seen in every mode, on stderr.
    pub fn warn(&self, line: &str) {
        let line = format!("warning: {line}");
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// A JSON event (json mode only).
    pub fn event(&self, value: &serde_json::Value) {
        if self.mode == OutputMode::Json {
            println!("{value}");
        }
    }

    /// The final line: printed in normal and quiet mode; json mode gets `event`s instead.
    pub fn result(&self, line: &str) {
        if self.mode != OutputMode::Json {
            self.print(line);
        }
    }

    fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// A metrics record: every record in json mode, the epoch summary in normal mode.
    pub fn record(&self, record: &Record) {
        match (self.mode, record) {
            (OutputMode::Json, r) => println!("{}", r.to_json()),
            (OutputMode::Normal, Record::Epoch(e)) => self.print(&format!(
                "epoch {:>3}  loss {:.4}  train top-1 {:5.1}%  test top-1 {:5.1}%  top-5 {:5.1}%  \
                 {}lr {:.2e}  {:.0} img/s  {:.1} s  peak {}{}",
                e.epoch,
                e.loss,
                100.0 * e.train_top1,
                100.0 * e.test_top1,
                100.0 * e.test_top5,
                e.fewshot().map_or(String::new(), |f| format!(
                    "5-way val 1-shot {:.1}±{:.1}%  5-shot {:.1}±{:.1}%  ",
                    100.0 * f.one_shot.mean,
                    100.0 * f.one_shot.ci95,
                    100.0 * f.five_shot.mean,
                    100.0 * f.five_shot.ci95
                )),
                e.lr,
                e.images_per_s,
                e.seconds,
                format_bytes(e.peak_mem_bytes),
                if e.best { "  *best" } else { "" }
            )),
            _ => {}
        }
    }

    /// The gradient check's table (normal mode) or its rows as one JSON event.
    pub fn gradcheck(&self, report: &Report) {
        let verdict = if report.passed() { "passed" } else { "FAILED" };
        self.info(&format!(
            "gradient check {verdict}: device gradient vs an f64 CPU copy {:.2e}, f64 gradient \
             vs f64 differences {:.2e} at {} coordinates ({} skipped: kink within the step); \
             tolerance {:.0e}; loss {:.4}",
            report.max_device_error(),
            report.max_difference_error(),
            report.coords(),
            report.kinked(),
            report.tolerance,
            report.loss
        ));
        if report.coords() > 0 && report.kinked() == report.coords() {
            self.warn(
                "every coordinate's step crossed a kink (ReLU or max-pool): the finite \
                 differences were inconclusive",
            );
        }
        self.info(report.table().trim_end());
        let rows: Vec<_> = report
            .rows
            .iter()
            .map(|r| {
                json!({
                    "layer_type": r.layer_type,
                    "tensors": r.tensors,
                    "coords": r.coords,
                    "kinked": r.kinked,
                    // JSON has no NaN: a NaN error is reported as null (and fails).
                    "device_error": r.device_error.is_finite().then_some(r.device_error),
                    "difference_error": r
                        .difference_error
                        .is_finite()
                        .then_some(r.difference_error),
                })
            })
            .collect();
        self.event(&json!({
            "kind": "gradcheck",
            "passed": report.passed(),
            "tolerance": report.tolerance,
            "loss": report.loss,
            "rows": rows,
        }));
    }

    /// Starts a bar of `len` steps labelled `prefix` (normal mode, on a terminal).
    pub fn start_bar(&mut self, prefix: String, len: usize) {
        self.finish_bar();
        if self.mode != OutputMode::Normal {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        self.bar = Some(bar);
    }

    pub fn advance_bar(&self, position: usize, msg: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position as u64);
            bar.set_message(msg);
        }
    }

    pub fn set_bar_length(&self, len: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(len as u64);
        }
    }

    pub fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

/// Bytes as a person reads them: "912 MB", "6.31 GB" (decimal units, as `--memory-budget`
/// takes them).
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}
