//! Reading and writing safetensors files.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name ->
//! dtype, shape, byte range; plus an optional `__metadata__` string map), then the raw
//! little-endian tensor bytes. We parse the header first so that a truncated or corrupt file is
//! reported before anything large is allocated, then read one tensor at a time, widening
//! F16/BF16/F64 values to f32 (the engine's working type) as we go.
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use super::{Checkpoint, FileDType, FileTensor, Values};
use crate::{Error, Result};

/// The header of a file: every tensor's dtype, shape and place, and the metadata strings.
pub struct Header {
    pub tensors: BTreeMap<String, (FileDType, Vec<usize>)>,
    pub metadata: BTreeMap<String, String>,
    /// Byte range of each tensor's data, counted from the start of the file.
    ranges: HashMap<String, (u64, u64)>,
}

fn format_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileDType {
    fn from_safetensors(dtype: Dtype) -> Option<FileDType> {
        Some(match dtype {
            Dtype::F64 => FileDType::F64,
            Dtype::F32 => FileDType::F32,
            Dtype::F16 => FileDType::F16,
            Dtype::BF16 => FileDType::BF16,
            Dtype::I64 => FileDType::I64,
            Dtype::I32 => FileDType::I32,
            _ => return None,
        })
    }

    fn to_safetensors(self) -> Dtype {
        match self {
            FileDType::F64 => Dtype::F64,
            FileDType::F32 => Dtype::F32,
            FileDType::F16 => Dtype::F16,
            FileDType::BF16 => Dtype::BF16,
            FileDType::I64 => Dtype::I64,
            FileDType::I32 => Dtype::I32,
        }
    }
}

/// Parses the header and checks it against the file's length, without reading tensor data.
pub fn read_header(path: &Path) -> Result<Header> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let not_safetensors = |what: &str| {
        format_error(
            path,
            format!("not a safetensors file ({what}); the file may be truncated or corrupt"),
        )
    };
    if file_len < 8 {
        return Err(not_safetensors(&format!("only {file_len} bytes long")));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|e| io_error(path, e))?;
    let header_len = u64::from_le_bytes(len_bytes);
    // The format caps headers at 100 MB; a larger value means the first bytes are not a length.
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(not_safetensors(&format!(
            "the header claims {header_len} bytes but the file has {file_len}"
        )));
    }
    let mut header_bytes = vec![0u8; header_len as usize];
    file.read_exact(&mut header_bytes)
        .map_err(|e| io_error(path, e))?;
    let metadata: Metadata = serde_json::from_slice(&header_bytes).map_err(|e| {
        let why = misplaced_tensor(&header_bytes).unwrap_or_else(|| e.to_string());
        not_safetensors(&format!("unreadable header: {why}"))
    })?;

    let data_start = 8 + header_len;
    let data_len = metadata.data_len() as u64;
    if data_start + data_len != file_len {
        return Err(format_error(
            path,
            format!(
                "the header describes {} bytes of tensor data but the file holds {}: {}",
                data_len,
                file_len - data_start,
                if data_start + data_len > file_len {
                    "the file is truncated (an interrupted download or copy?)"
                } else {
                    "the file has trailing bytes"
                }
            ),
        ));
    }

    let mut tensors = BTreeMap::new();
    let mut ranges = HashMap::new();
    for (name, info) in metadata.tensors() {
        let TensorInfo {
            dtype,
            shape,
            data_offsets: (start, end),
        } = info;
        let Some(file_dtype) = FileDType::from_safetensors(*dtype) else {
            return Err(format_error(
                path,
                format!(
                    "tensor {name} has dtype {dtype:?}; clce reads F32, F16, BF16, F64, I64 and I32"
                ),
            ));
        };
        ranges.insert(
            name.clone(),
            (data_start + *start as u64, data_start + *end as u64),
        );
        tensors.insert(name, (file_dtype, shape.clone()));
    }
    let metadata = metadata
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Header {
        tensors,
        metadata,
        ranges,
    })
}

/// The first tensor (in file order) whose own data_offsets do not fit its dtype and shape,
/// or that does not start where the one before it ends. The safetensors crate checks only
/// the second, so it blames the tensor after a bad one.
fn misplaced_tensor(header: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(header).ok()?;
    let mut entries: Vec<(String, u64, u64, u64)> = Vec::new();
    for (name, info) in value.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets")?.as_array()?;
        let (start, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let dtype = info.get("dtype")?.as_str()?;
        let size = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            _ => return None,
        };
        let mut numel: u64 = 1;
        for d in info.get("shape")?.as_array()? {
            numel = numel.checked_mul(d.as_u64()?)?;
        }
        let needed = numel.checked_mul(size)?;
        if end < start || end - start != needed {
            return Some(format!(
                "tensor {name}: data_offsets [{start}, {end}] hold {} bytes but its {dtype} \
                 shape {} needs {needed}",
                end.saturating_sub(start),
                info.get("shape")?
            ));
        }
        entries.push((name.clone(), start, end, needed));
    }
    entries.sort_by_key(|e| (e.1, e.2));
    let mut expected = 0;
    for (name, start, end, _) in entries {
        if start != expected {
            return Some(format!(
                "tensor {name}: its data starts at byte {start}, where the tensor before it \
                 ends at {expected}"
            ));
        }
        expected = end;
    }
    None
}

/// Reads every tensor of a safetensors file, floats widened to f32.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let header = read_header(path)?;
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::new();
    let mut tensors = BTreeMap::new();
    for (name, (dtype, shape)) in header.tensors {
        let (start, end) = header.ranges[&name];
        bytes.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| io_error(path, e))?;
        let values = decode(dtype, &bytes);
        tensors.insert(
            name,
            FileTensor {
                dtype,
                shape,
                values,
            },
        );
    }
    Ok(Checkpoint {
        tensors,
        metadata: header.metadata,
    })
}

fn decode(dtype: FileDType, bytes: &[u8]) -> Values {
    // Tensor data need not be aligned in the file, so decode from byte chunks.
    fn each<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N bytes")))
            .collect()
    }
    match dtype {
        FileDType::F32 => Values::F32(each(bytes, f32::from_le_bytes)),
        FileDType::F64 => Values::F32(each(bytes, |b| f64::from_le_bytes(b) as f32)),
        FileDType::F16 => Values::F32(each(bytes, |b| half::f16::from_le_bytes(b).to_f32())),
        FileDType::BF16 => Values::F32(each(bytes, |b| half::bf16::from_le_bytes(b).to_f32())),
        FileDType::I64 => Values::I64(each(bytes, i64::from_le_bytes)),
        FileDType::I32 => Values::I64(each(bytes, |b| i32::from_le_bytes(b) as i64)),
    }
}

/// A tensor's values as little-endian bytes of its file dtype.
fn encode(t: &FileTensor) -> Result<Vec<u8>> {
    Ok(match (&t.values, t.dtype) {
        (Values::F32(v), FileDType::F32) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (Values::F32(v), FileDType::F64) => {
            v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect()
        }
        (Values::F32(v), FileDType::F16) => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        (Values::F32(v), FileDType::BF16) => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        (Values::I64(v), FileDType::I64) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (Values::I64(v), FileDType::I32) => v
            .iter()
            .map(|&x| i32::try_from(x).map(i32::to_le_bytes))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| Error::config("an integer tensor does not fit I32"))?
            .concat(),
        (values, dtype) => unreachable!("{} values as {dtype} were refused", values.kind()),
    })
}

fn element_size(dtype: FileDType) -> usize {
    match dtype {
        FileDType::F64 | FileDType::I64 => 8,
        FileDType::F32 | FileDType::I32 => 4,
        FileDType::F16 | FileDType::BF16 => 2,
    }
}

/// Writes a checkpoint as safetensors, one tensor at a time (no second copy of the weights
/// in memory), to a temporary file renamed into place: an interrupted save never leaves a
/// half-written file under `path`.
pub fn write(path: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let mut infos = Vec::new();
    let mut offset = 0;
    for (name, t) in &checkpoint.tensors {
        let numel: usize = t.shape.iter().product();
        if t.values.len() != numel {
            return Err(Error::config(format!(
                "{name}: {} values for shape {:?}",
                t.values.len(),
                t.shape
            )));
        }
        if t.dtype.is_float() != matches!(t.values, Values::F32(_)) {
            return Err(Error::config(format!(
                "{name}: cannot write {} values as {}",
                t.values.kind(),
                t.dtype
            )));
        }
        let end = offset + numel * element_size(t.dtype);
        let info = TensorInfo {
            dtype: t.dtype.to_safetensors(),
            shape: t.shape.clone(),
            data_offsets: (offset, end),
        };
        infos.push((name.clone(), info));
        offset = end;
    }
    let metadata: HashMap<String, String> = checkpoint.metadata.clone().into_iter().collect();
    let header = Metadata::new((!metadata.is_empty()).then_some(metadata), infos)
        .map_err(|e| format_error(path, format!("cannot write: {e}")))?;
    let mut header = serde_json::to_vec(&header).expect("a safetensors header serialises");
    // The format pads the header with spaces so that tensor data starts 8-byte aligned.
    header.resize(header.len().next_multiple_of(8), b' ');

    let partial = path.with_extension("safetensors.partial");
    let result = (|| -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&partial)?);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for t in checkpoint.tensors.values() {
            let bytes = encode(t).map_err(std::io::Error::other)?;
            out.write_all(&bytes)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io_error(path, e)
    })
}
