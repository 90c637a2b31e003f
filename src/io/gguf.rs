//! GGUF files (llama.cpp's format), versions 2 and 3, little-endian, memory-mapped.
//!
//! Layout: magic `GGUF`, version (u32), tensor count and metadata count (u64), the metadata
//! key/value pairs, the tensor infos (name, dimensions, ggml type, offset), padding to the
//! alignment (`general.alignment`, default 32), then the tensor data. Everything is
//! validated before it is used: every count, string and array length against the bytes left,
//! dimension products with checked arithmetic, each tensor's type, size, alignment and extent
//! within the data section, and no two tensors overlapping. Nothing is allocated from a count
//! before the bytes it describes have been read, and errors name the field.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
pub use crate::kernels::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are allowed by the format; deeper nesting than this is refused.
const MAX_NESTING: u32 = 4;
/// Values are collected as they are read; a count never reserves more than this up front.
const MAX_RESERVE: usize = 1 << 16;

/// Whether `path` names a GGUF file (by its extension; the reader checks the magic).
pub fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// An integer value of any width, if it is one and fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A number of any type, as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64).or(match *self {
                GgufValue::I8(v) => Some(v.into()),
                GgufValue::I16(v) => Some(v.into()),
                GgufValue::I32(v) => Some(v.into()),
                GgufValue::I64(v) => Some(v as f64),
                _ => None,
            }),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// One tensor's description. `dims` are in ggml's order: `dims[0]` varies fastest (for a
/// `Linear` weight `[out, in]` in PyTorch, ggml writes `[in, out]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of its data from the start of the data section.
    pub offset: u64,
    pub bytes: u64,
}

impl GgufTensor {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An opened GGUF file.
pub struct Gguf {
    path: PathBuf,
    map: Mmap,
    pub version: u32,
    pub alignment: u64,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensor>,
    by_name: HashMap<String, usize>,
    data_start: u64,
}

/// Reads the header fields in order, every read checked against the end of the file.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn error(&self, detail: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: self.path.display().to_string(),
            detail: format!("GGUF: {}", detail.into()),
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{what} needs {n} bytes at offset {}, but the file has {} left (truncated or a \
                 lying length)",
                self.at,
                self.remaining()
            )));
        }
        let start = self.at;
        self.at += n as usize;
        Ok(&self.bytes[start..self.at])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(&format!("the length of {what}"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    /// A value of metadata type `kind` (`what` names the key, for messages).
    fn value(&mut self, kind: u32, what: &str, depth: u32) -> Result<GgufValue> {
        Ok(match kind {
            0 => GgufValue::U8(self.array::<1>(what)?[0]),
            1 => GgufValue::I8(self.array::<1>(what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                other => return Err(self.error(format!("{what}: bool byte {other} is not 0 or 1"))),
            },
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(
                        self.error(format!("{what}: arrays nested over {MAX_NESTING} deep"))
                    );
                }
                let elem = self.u32(&format!("the element type of {what}"))?;
                let count = self.u64(&format!("the length of {what}"))?;
                // Every element takes at least one byte: a count past the bytes left is a lie,
                // refused before anything is reserved for it.
                if count > self.remaining() {
                    return Err(self.error(format!(
                        "{what}: an array of {count} elements, but only {} bytes are left",
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity((count as usize).min(MAX_RESERVE));
                for _ in 0..count {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(self.error(format!("{what}: unknown value type {other}"))),
        })
    }
}

impl Gguf {
    /// Opens and validates `path`.
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = super::files::open_regular(path, "GGUF file")?;
        // SAFETY: read-only mapping kept as long as the `Gguf`; as for safetensors, the file
        // is not expected to change while a model loads.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Gguf::parse(path, map)
    }

    fn parse(path: &Path, map: Mmap) -> Result<Gguf> {
        let mut r = Reader {
            bytes: &map,
            at: 0,
            path,
        };
        let magic = r.array::<4>("the magic")?;
        if &magic != MAGIC {
            return Err(r.error(format!("not a GGUF file (magic {magic:?}, want \"GGUF\")")));
        }
        let version = r.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => return Err(r.error("version 1 (pre-2023 32-bit counts) is not supported")),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(r.error("a big-endian GGUF file; tessera reads little-endian ones"));
            }
            v => return Err(r.error(format!("unknown version {v} (tessera reads 2 and 3)"))),
        }
        let tensor_count = r.u64("the tensor count")?;
        let kv_count = r.u64("the metadata count")?;
        // A key/value pair takes at least 12 bytes, a tensor info at least 24.
        if kv_count > r.remaining() / 12 || tensor_count > r.remaining() / 24 {
            return Err(r.error(format!(
                "{kv_count} metadata entries and {tensor_count} tensors cannot fit in the {} \
                 bytes of the file",
                map.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key {i}"))?;
            let kind = r.u32(&format!("the type of {key}"))?;
            let value = r.value(kind, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.error(format!("metadata key {key:?} appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(other) => {
                return Err(r.error(format!(
                    "general.alignment {other:?} is not a power of two (u32)"
                )));
            }
        };
        let mut tensors = Vec::with_capacity((tensor_count as usize).min(MAX_RESERVE));
        let mut by_name = HashMap::new();
        for i in 0..tensor_count {
            let name = r.string(&format!("the name of tensor {i}"))?;
            let n_dims = r.u32(&format!("the dimension count of {name}"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.error(format!("{name}: {n_dims} dimensions (ggml allows 1 to 4)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&format!("dimension {d} of {name}"))?);
            }
            let type_id = r.u32(&format!("the type of {name}"))?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                r.error(format!(
                    "{name}: ggml type {type_id} is not one tessera reads"
                ))
            })?;
            let offset = r.u64(&format!("the offset of {name}"))?;
            let bytes = tensor_bytes(&name, &dims, ggml_type).map_err(|e| r.error(e))?;
            if offset % alignment != 0 {
                return Err(r.error(format!(
                    "{name}: offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(r.error(format!("tensor {name:?} appears twice")));
            }
            tensors.push(GgufTensor {
                name,
                dims,
                ggml_type,
                offset,
                bytes,
            });
        }
        let data_start = (r.at as u64).div_ceil(alignment) * alignment;
        let data_len = (map.len() as u64).saturating_sub(data_start);
        check_extents(&tensors, data_len).map_err(|e| r.error(e))?;
        Ok(Gguf {
            path: path.to_path_buf(),
            map,
            version,
            alignment,
            metadata,
            tensors,
            by_name,
            data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The stored bytes of `tensor` (validated to lie within the file when it was opened).
    pub fn data(&self, tensor: &GgufTensor) -> &[u8] {
        let start = (self.data_start + tensor.offset) as usize;
        &self.map[start..start + tensor.bytes as usize]
    }
}

/// How a checkpoint tensor is made from a GGUF tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromGguf {
    /// The GGUF tensor's name.
    pub source: String,
    /// The checkpoint shape, outermost first (ggml's dimensions reversed: `[out, in]`).
    pub shape: Vec<usize>,
    /// `Some(heads)`: undo llama.cpp's reordering of q/k projection rows. Its converter
    /// stores each head's rows as interleaved pairs (row `2j + t` of a head holds the
    /// Hugging Face row `t·d/2 + j`) for GGML's RoPE; tessera, like transformers, rotates
    /// halves.
    pub unpermute_heads: Option<usize>,
}

/// A GGUF file seen as a checkpoint: tensors under the names a model loader asks for,
/// dequantized to f32 when read.
pub struct GgufTensors {
    gguf: Gguf,
    tensors: HashMap<String, FromGguf>,
}

impl GgufTensors {
    /// `tensors` maps checkpoint names to GGUF tensors, each checked here: it exists, and
    /// its element count matches the shape.
    pub fn new(gguf: Gguf, tensors: Vec<(String, FromGguf)>) -> Result<GgufTensors> {
        let error = |detail: String| Error::Checkpoint {
            path: gguf.path.display().to_string(),
            detail,
        };
        for (name, from) in &tensors {
            let t = gguf
                .tensor(&from.source)
                .ok_or_else(|| error(format!("no tensor {:?} (for {name})", from.source)))?;
            let reversed: Vec<u64> = from.shape.iter().rev().map(|&d| d as u64).collect();
            if t.dims != reversed {
                return Err(error(format!(
                    "{} has dimensions {:?}; {name} needs {:?} (ggml order)",
                    from.source, t.dims, reversed
                )));
            }
            if let Some(heads) = from.unpermute_heads {
                let rows = from.shape[0];
                if heads == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 {
                    return Err(error(format!(
                        "{}: {rows} rows are not {heads} heads of an even size",
                        from.source
                    )));
                }
            }
        }
        Ok(GgufTensors {
            gguf,
            tensors: tensors.into_iter().collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.gguf.path
    }

    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// The block type of `name` if it is a 2-D tensor (or a stack of them, rows of its last
    /// dimension) in a type the packed kernels read.
    pub fn packed_type(&self, name: &str) -> Option<GgmlType> {
        let from = self.tensors.get(name)?;
        let t = self.gguf.tensor(&from.source)?;
        crate::kernels::quant::packed_format(t.ggml_type).ok()?;
        (from.shape.len() >= 2).then_some(t.ggml_type)
    }

    /// The GGUF block type and bytes of `name` (rows reordered as the checkpoint name expects),
    /// if it is a 2-D tensor in a type the packed kernels read; `None` otherwise.
    pub fn read_packed(&self, name: &str) -> Option<(GgmlType, Vec<u8>)> {
        let t = self.packed_type(name)?;
        let from = &self.tensors[name];
        let bytes = self.gguf.data(self.gguf.tensor(&from.source)?);
        Some((
            t,
            match from.unpermute_heads {
                None => bytes.to_vec(),
                Some(heads) => unpermute_rows(bytes, from.shape[0], heads),
            },
        ))
    }

    /// The values of `name`, dequantized and reordered as the checkpoint name expects.
    pub fn read_f32(&self, name: &str) -> Option<Result<Vec<f32>>> {
        let from = self.tensors.get(name)?;
        let t = self.gguf.tensor(&from.source)?;
        let values = match crate::kernels::quant::dequantize(
            t.ggml_type,
            self.gguf.data(t),
            t.elements() as usize,
        ) {
            Ok(values) => values,
            Err(e) => {
                return Some(Err(Error::Checkpoint {
                    path: self.gguf.path.display().to_string(),
                    detail: format!("{}: {e}", from.source),
                }));
            }
        };
        let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
        Some(Ok(match from.unpermute_heads {
            None => values,
            Some(heads) => unpermute_rows(&values, from.shape[0], heads),
        }))
    }
}

/// Undoes llama.cpp's q/k row order: within each head of `d = rows / heads` rows, the stored
/// row `2j + t` is the Hugging Face row `t·d/2 + j` (`values` row-major, `rows` rows of any
/// element: values, or a row's quantized blocks as bytes).
fn unpermute_rows<T: Copy + Default>(values: &[T], rows: usize, heads: usize) -> Vec<T> {
    let cols = values.len() / rows;
    let d = rows / heads;
    let mut out = vec![T::default(); values.len()];
    for h in 0..heads {
        for j in 0..d / 2 {
            for t in 0..2 {
                let stored = h * d + 2 * j + t;
                let wanted = h * d + t * (d / 2) + j;
                out[wanted * cols..(wanted + 1) * cols]
                    .copy_from_slice(&values[stored * cols..(stored + 1) * cols]);
            }
        }
    }
    out
}

/// Bytes of a tensor of `dims` in `ggml_type`: the first dimension must hold whole blocks.
fn tensor_bytes(name: &str, dims: &[u64], ggml_type: GgmlType) -> std::result::Result<u64, String> {
    if dims.contains(&0) {
        return Err(format!("{name}: a dimension of 0 in {dims:?}"));
    }
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("{name}: dimensions {dims:?} overflow"))?;
    let (block, block_bytes) = ggml_type.block();
    if !dims[0].is_multiple_of(block) {
        return Err(format!(
            "{name}: its rows of {} elements are not whole {ggml_type:?} blocks of {block}",
            dims[0]
        ));
    }
    (elements / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| format!("{name}: {elements} elements of {ggml_type:?} overflow"))
}

/// Every tensor inside the data section, none overlapping another.
fn check_extents(tensors: &[GgufTensor], data_len: u64) -> std::result::Result<(), String> {
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let end = t
            .offset
            .checked_add(t.bytes)
            .filter(|&end| end <= data_len)
            .ok_or_else(|| {
                format!(
                    "{}: {} bytes at offset {} run past the {data_len} bytes of tensor data",
                    t.name, t.bytes, t.offset
                )
            })?;
        spans.push((t.offset, end, &t.name));
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!("tensors {} and {} overlap", pair[0].2, pair[1].2));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes GGUF bytes: metadata as (key, type id, encoded value) and tensors as (name, dims,
    /// type id, offset), then `data` after the padding.
    struct Builder {
        version: u32,
        kv: Vec<(String, u32, Vec<u8>)>,
        tensors: Vec<(String, Vec<u64>, u32, u64)>,
        data: Vec<u8>,
        kv_count: Option<u64>,
        tensor_count: Option<u64>,
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    impl Builder {
        /// A valid file: a u32 key, a string-array key and one 32 x 2 F32 tensor.
        fn valid() -> Builder {
            let mut tokens = 8u32.to_le_bytes().to_vec();
            tokens.extend_from_slice(&2u64.to_le_bytes());
            tokens.extend(string("a"));
            tokens.extend(string("b"));
            Builder {
                version: 3,
                kv: vec![
                    ("llama.block_count".into(), 4, 2u32.to_le_bytes().to_vec()),
                    ("tokenizer.ggml.tokens".into(), 9, tokens),
                ],
                tensors: vec![("w".into(), vec![32, 2], 0, 0)],
                data: vec![0u8; 256],
                kv_count: None,
                tensor_count: None,
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend_from_slice(&self.version.to_le_bytes());
            let tensors = self.tensor_count.unwrap_or(self.tensors.len() as u64);
            out.extend_from_slice(&tensors.to_le_bytes());
            let kvs = self.kv_count.unwrap_or(self.kv.len() as u64);
            out.extend_from_slice(&kvs.to_le_bytes());
            for (key, kind, value) in &self.kv {
                out.extend(string(key));
                out.extend_from_slice(&kind.to_le_bytes());
                out.extend_from_slice(value);
            }
            for (name, dims, kind, offset) in &self.tensors {
                out.extend(string(name));
                out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
                for d in dims {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.extend_from_slice(&kind.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
            out.extend_from_slice(&self.data);
            out
        }

        fn open(&self) -> Result<Gguf> {
            open_bytes(&self.bytes())
        }
    }

    fn open_bytes(bytes: &[u8]) -> Result<Gguf> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tessera-gguf-{}-{n}.gguf", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let result = Gguf::open(&path);
        std::fs::remove_file(&path).ok();
        result
    }

    fn error(b: &Builder) -> String {
        match b.open() {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn kv_string(s: &str) -> (u32, Vec<u8>) {
        (8, string(s))
    }

    fn kv_u32(v: u32) -> (u32, Vec<u8>) {
        (4, v.to_le_bytes().to_vec())
    }

    fn kv_strings(items: &[&str]) -> (u32, Vec<u8>) {
        let mut out = 8u32.to_le_bytes().to_vec();
        out.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for s in items {
            out.extend(string(s));
        }
        (9, out)
    }

    /// A metadata entry for the tests: key, (type id, encoded value).
    type Kv<'a> = (&'a str, (u32, Vec<u8>));

    /// The tokenizer in a file's metadata: each broken field is an error naming its key.
    #[test]
    fn broken_tokenizer_metadata_is_named() {
        use crate::io::gguf_tokenizer::tokenizer_json;
        let with = |extra: Vec<Kv<'_>>| {
            let mut b = Builder::valid();
            b.kv.push(("tokenizer.ggml.model".into(), 8, string("gpt2")));
            for (key, (kind, value)) in extra {
                b.kv.retain(|(k, _, _)| k != key);
                b.kv.push((key.into(), kind, value));
            }
            let g = b.open().unwrap();
            tokenizer_json(&g)
                .map(|j| j.is_some())
                .map_err(|e| e.to_string())
        };
        // Valid: tokens a, b and the merge "a b".
        assert_eq!(
            with(vec![("tokenizer.ggml.merges", kv_strings(&["a b"]))]),
            Ok(true)
        );
        let cases: Vec<(Vec<Kv<'_>>, &str)> = vec![
            (vec![], "tokenizer.ggml.merges: missing"),
            (
                vec![("tokenizer.ggml.merges", kv_strings(&["a b c"]))],
                "tokenizer.ggml.merges",
            ),
            (
                vec![
                    ("tokenizer.ggml.merges", kv_strings(&["a b"])),
                    ("tokenizer.ggml.bos_token_id", kv_u32(7)),
                ],
                "tokenizer.ggml.bos_token_id: token 7 of 2",
            ),
            (
                vec![("tokenizer.ggml.model", kv_string("t5"))],
                "tokenizer type \"t5\"",
            ),
            (
                vec![("tokenizer.ggml.model", kv_string("llama"))],
                "tokenizer.ggml.scores: missing",
            ),
            (
                vec![("tokenizer.ggml.tokens", kv_u32(3))],
                "tokenizer.ggml.tokens: not an array",
            ),
            (
                vec![
                    ("tokenizer.ggml.merges", kv_strings(&["a b"])),
                    (
                        "tokenizer.ggml.token_type",
                        (9, {
                            let mut v = 5u32.to_le_bytes().to_vec();
                            v.extend_from_slice(&1u64.to_le_bytes());
                            v.extend_from_slice(&1i32.to_le_bytes());
                            v
                        }),
                    ),
                ],
                "tokenizer.ggml.token_type: 1 entries for 2 tokens",
            ),
        ];
        for (extra, want) in cases {
            let err = with(extra).expect_err(want);
            assert!(err.contains(want), "{err} (wanted {want})");
        }
        // No tokenizer.ggml.model: no tokenizer, not an error.
        assert!(
            tokenizer_json(&Builder::valid().open().unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_valid_file_reads_back() {
        let g = Builder::valid().open().unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(
            g.get("llama.block_count").and_then(GgufValue::as_u64),
            Some(2)
        );
        let tokens = g
            .get("tokenizer.ggml.tokens")
            .and_then(GgufValue::as_array)
            .unwrap();
        assert_eq!(tokens[1].as_str(), Some("b"));
        let w = g.tensor("w").unwrap();
        assert_eq!(
            (w.dims.clone(), w.ggml_type, w.bytes),
            (vec![32, 2], GgmlType::F32, 256)
        );
        assert_eq!(g.data(w).len(), 256);
    }

    #[test]
    fn a_truncated_file_names_what_is_missing() {
        let bytes = Builder::valid().bytes();
        for cut in [3, 10, 30, 60, bytes.len() - 1] {
            let err = open_bytes(&bytes[..cut])
                .err()
                .expect("truncated")
                .to_string();
            assert!(err.contains("GGUF"), "{cut}: {err}");
        }
        let err = open_bytes(&bytes[..bytes.len() - 1])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("run past"), "{err}");
    }

    #[test]
    fn lying_counts_and_lengths_are_refused_before_allocating() {
        let mut b = Builder::valid();
        b.kv_count = Some(u64::MAX);
        assert!(error(&b).contains("cannot fit"));
        let mut b = Builder::valid();
        b.tensor_count = Some(1 << 40);
        assert!(error(&b).contains("cannot fit"));
        let mut b = Builder::valid();
        let mut huge_array = 8u32.to_le_bytes().to_vec();
        huge_array.extend_from_slice(&(1u64 << 60).to_le_bytes());
        b.kv[1].2 = huge_array;
        assert!(error(&b).contains("an array of"), "{}", error(&b));
        let mut b = Builder::valid();
        b.kv[0].0 = "k".into();
        let mut bytes = b.bytes();
        // The first key's length field: right after magic, version and the two counts.
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = open_bytes(&bytes).err().unwrap().to_string();
        assert!(err.contains("metadata key 0"), "{err}");
    }

    #[test]
    fn offsets_past_the_end_misalignment_and_overlap_are_named() {
        let mut b = Builder::valid();
        b.tensors[0].3 = 1 << 20;
        assert!(error(&b).contains("run past"));
        let mut b = Builder::valid();
        b.tensors[0].3 = 4;
        assert!(error(&b).contains("alignment"));
        let mut b = Builder::valid();
        b.tensors.push(("v".into(), vec![32], 0, 64));
        assert!(error(&b).contains("overlap"));
        let mut b = Builder::valid();
        b.kv.push(("general.alignment".into(), 4, 3u32.to_le_bytes().to_vec()));
        assert!(error(&b).contains("power of two"));
    }

    #[test]
    fn unknown_types_and_bad_dimensions_are_named() {
        let mut b = Builder::valid();
        b.tensors[0].2 = 99;
        assert!(error(&b).contains("ggml type 99"));
        let mut b = Builder::valid();
        b.kv[0].1 = 77;
        assert!(error(&b).contains("unknown value type 77"));
        let mut b = Builder::valid();
        b.tensors[0].1 = vec![1 << 40, 1 << 40];
        assert!(error(&b).contains("overflow"));
        let mut b = Builder::valid();
        b.tensors[0].1 = vec![32, 0];
        assert!(error(&b).contains("dimension of 0"));
        let mut b = Builder::valid();
        b.tensors[0].1 = vec![1; 5];
        assert!(error(&b).contains("5 dimensions"));
        // Q8_0 rows must hold whole 32-element blocks.
        let mut b = Builder::valid();
        b.tensors[0] = ("q".into(), vec![31, 2], 8, 0);
        assert!(error(&b).contains("whole Q8_0 blocks"), "{}", error(&b));
    }

    #[test]
    fn other_formats_and_versions_are_named() {
        let mut b = Builder::valid();
        b.version = 1;
        assert!(error(&b).contains("version 1"));
        b.version = 3u32.swap_bytes();
        assert!(error(&b).contains("big-endian"));
        b.version = 7;
        assert!(error(&b).contains("unknown version 7"));
        let mut bytes = Builder::valid().bytes();
        bytes[0] = b'X';
        assert!(
            open_bytes(&bytes)
                .err()
                .unwrap()
                .to_string()
                .contains("magic")
        );
        let mut b = Builder::valid();
        b.kv.push(b.kv[0].clone());
        assert!(error(&b).contains("appears twice"));
    }
}
