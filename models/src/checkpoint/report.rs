//! What loading a checkpoint into a model did: every tensor that was missing, unexpected,
//! misshapen or otherwise unusable, and what was initialised instead of loaded.
use super::{ArchKind, Naming};

#[derive(Clone, Debug, PartialEq)]
pub struct Missing {
    pub name: String,
    pub shape: Vec<usize>,
    /// The name the tensor would have in the file's own naming, when that differs.
    pub file_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub name: String,
    /// The name in the file, when that differs (transformers naming).
    pub file_name: Option<String>,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    pub arch: ArchKind,
    pub naming: Naming,
    /// Tensors taken from the file.
    pub loaded: usize,
    pub missing: Vec<Missing>,
    /// File tensors the model has no place for, with their shapes.
    pub unexpected: Vec<(String, Vec<usize>)>,
    pub mismatched: Vec<Mismatch>,
    /// Tensors of the right name and shape that still cannot be used (an integer tensor where
    /// weights belong, an index buffer that disagrees with the model's).
    pub invalid: Vec<String>,
    /// Tensors that the file does not hold by design and were initialised: our projection
    /// head, or a classifier head whose class count changed.
    pub initialised: Vec<String>,
    /// Things worth saying that are not problems (a re-initialised head, ignored counters).
    pub notes: Vec<String>,
}

impl LoadReport {
    pub fn new(arch: ArchKind, naming: Naming) -> Self {
        LoadReport {
            arch,
            naming,
            loaded: 0,
            missing: Vec::new(),
            unexpected: Vec::new(),
            mismatched: Vec::new(),
            invalid: Vec::new(),
            initialised: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// True when every tensor of the model came from the file (or was meant to be
    /// initialised) and every tensor of the file found its place.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.invalid.is_empty()
    }
}

fn shape(s: &[usize]) -> String {
    format!("{s:?}")
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} checkpoint in {} naming: {} tensors loaded",
            self.arch, self.naming, self.loaded
        )?;
        if !self.missing.is_empty() {
            writeln!(f, "missing from the file ({}):", self.missing.len())?;
            for m in &self.missing {
                write!(f, "  {} {}", m.name, shape(&m.shape))?;
                match &m.file_name {
                    Some(file_name) => writeln!(f, "  ({} name: {file_name})", self.naming)?,
                    None => writeln!(f)?,
                }
            }
        }
        if !self.unexpected.is_empty() {
            writeln!(
                f,
                "unexpected (in the file, not in the model) ({}):",
                self.unexpected.len()
            )?;
            for (name, s) in &self.unexpected {
                writeln!(f, "  {name} {}", shape(s))?;
            }
        }
        if !self.mismatched.is_empty() {
            writeln!(f, "wrong shape ({}):", self.mismatched.len())?;
            for m in &self.mismatched {
                write!(
                    f,
                    "  {}: model {}, file {}",
                    m.name,
                    shape(&m.expected),
                    shape(&m.found)
                )?;
                match &m.file_name {
                    Some(file_name) => writeln!(f, "  (file name: {file_name})")?,
                    None => writeln!(f)?,
                }
            }
        }
        if !self.invalid.is_empty() {
            writeln!(f, "unusable ({}):", self.invalid.len())?;
            for msg in &self.invalid {
                writeln!(f, "  {msg}")?;
            }
        }
        if !self.initialised.is_empty() {
            writeln!(
                f,
                "initialised, not loaded ({}): {}",
                self.initialised.len(),
                self.initialised.join(", ")
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
