//! safetensors checkpoints, memory-mapped: one `model.safetensors`, or the shards listed by
//! `model.safetensors.index.json`. Headers are validated when a file is opened (offsets that
//! overlap, run past the end or leave bytes unaccounted are errors), tensors are converted to
//! the element type the model runs in when they are read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorInfo};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::quant::GgmlType;
use crate::kernels::quantize::{QuantRecipe, WeightRole};
use crate::tensor::{DType, Tensor};

/// The element types tessera reads from checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
}

impl StoredDtype {
    fn from_safetensors(dtype: Dtype) -> Option<Self> {
        match dtype {
            Dtype::F32 => Some(StoredDtype::F32),
            Dtype::F16 => Some(StoredDtype::F16),
            Dtype::BF16 => Some(StoredDtype::BF16),
            _ => None,
        }
    }
}

/// A safetensors file's bytes: memory-mapped from a file, or handed over whole (a browser
/// fetches them; it has no files to map).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// One safetensors file.
struct Shard {
    path: PathBuf,
    map: Bytes,
    /// Byte offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
}

/// Where a tensor lives.
struct Entry {
    shard: usize,
    info: TensorInfo,
}

/// The tensors of a checkpoint, by name, across one or more files.
pub struct Checkpoint {
    /// The directory or file it was opened from, for messages.
    origin: String,
    shards: Vec<Shard>,
    tensors: HashMap<String, Entry>,
    /// `Some(seed)` for [`Checkpoint::synthetic`]: no files, every tensor made on request.
    synthetic: Option<u64>,
    /// For [`Checkpoint::synthetic_packed`]: the block type its projections come in.
    synthetic_packed: Option<crate::kernels::quant::GgmlType>,
    /// For [`Checkpoint::from_gguf`]: the tensors, dequantized as they are read.
    gguf: Option<super::gguf::GgufTensors>,
    /// For [`Checkpoint::quantized`]: the recipe its weights are quantized by when read.
    quantize: Option<QuantRecipe>,
    /// For [`Checkpoint::with_row_slices`]: names that read rows of another tensor.
    slices: HashMap<String, RowSlice>,
}

/// A tensor that is rows `first .. first + shape[0]` of the 2-D tensor `source` (a part of a
/// fused projection such as Phi-3's `qkv_proj`).
struct RowSlice {
    source: String,
    first: usize,
    shape: [usize; 2],
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn malformed(path: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

impl Checkpoint {
    /// Opens the transformers checkpoint in `dir`: `model.safetensors`, else the shards named
    /// by `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Checkpoint> {
        Checkpoint::open_named(dir, "model")
    }

    /// Opens `dir/<stem>.safetensors`, else the shards named by
    /// `dir/<stem>.safetensors.index.json` (diffusers uses the stem
    /// `diffusion_pytorch_model`).
    pub fn open_named(dir: &Path, stem: &str) -> Result<Checkpoint> {
        let single = dir.join(format!("{stem}.safetensors"));
        let index = dir.join(format!("{stem}.safetensors.index.json"));
        // Anything at those names is opened, so a directory, a FIFO or a link loop there is
        // reported as what it is rather than as a missing file.
        if super::files::exists(&single) {
            Checkpoint::open_files(&dir.display().to_string(), &[single])
        } else if super::files::exists(&index) {
            Checkpoint::open_index(dir, &index)
        } else {
            let bin = dir.join(format!("{stem}.bin"));
            let hint = if bin.is_file() {
                "; it has a pickled .bin, which tessera does not read: convert it with \
                 tools/convert_bin.py"
            } else {
                ""
            };
            Err(malformed(
                dir,
                format!(
                    "no {stem}.safetensors and no {stem}.safetensors.index.json: not a \
                     safetensors checkpoint directory{hint}"
                ),
            ))
        }
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Checkpoint> {
        let text = super::files::read_text(index, "shard index", super::files::MAX_JSON_BYTES)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| malformed(index, format!("not valid JSON: {e}")))?;
        let weight_map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| malformed(index, "no \"weight_map\" object"))?;
        // A set: an index may name hundreds of thousands of tensors.
        let mut files: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (name, file) in weight_map {
            let file = file.as_str().ok_or_else(|| {
                malformed(index, format!("weight_map[{name:?}] is not a file name"))
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(malformed(
                    index,
                    format!("shard name {file:?} leaves the directory"),
                ));
            }
            files.insert(file.to_string());
            wanted.push((name.clone(), file.to_string()));
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        let checkpoint = Checkpoint::open_files(&dir.display().to_string(), &paths)?;
        for (name, file) in wanted {
            match checkpoint.tensors.get(&name) {
                Some(entry) if checkpoint.shards[entry.shard].path.ends_with(&file) => {}
                _ => {
                    return Err(malformed(
                        index,
                        format!("lists tensor {name:?} in {file}, which does not hold it"),
                    ));
                }
            }
        }
        Ok(checkpoint)
    }

    /// Opens the given safetensors files as one checkpoint (a name may appear only once).
    pub fn open_files(origin: &str, paths: &[PathBuf]) -> Result<Checkpoint> {
        let mut files = Vec::new();
        for path in paths {
            let file = super::files::open_regular(path, "safetensors file")?;
            // SAFETY: the mapping is read-only and lives as long as the checkpoint; tessera
            // never writes to it. As with any memory-mapped file, another process truncating
            // the file while it is mapped would fault; model files are not expected to change
            // while a model is being loaded.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error(path, e))?;
            files.push((path.clone(), Bytes::Mapped(map)));
        }
        Checkpoint::from_shards(origin, files)
    }

    /// The checkpoint in `bytes`, the contents of one safetensors file called `name` (for
    /// messages): validated as a file is.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Checkpoint> {
        Checkpoint::from_shards(name, vec![(PathBuf::from(name), Bytes::Owned(bytes))])
    }

    /// A checkpoint over `shards`, their headers validated and their tensors indexed.
    fn from_shards(origin: &str, files: Vec<(PathBuf, Bytes)>) -> Result<Checkpoint> {
        let mut shards = Vec::new();
        let mut tensors = HashMap::new();
        for (path, map) in files {
            let (header_len, metadata) = SafeTensors::read_metadata(&map)
                .map_err(|e| malformed(&path, format!("not a valid safetensors file: {e}")))?;
            let shard = shards.len();
            for (name, info) in metadata.tensors() {
                if tensors.contains_key(&name) {
                    return Err(malformed(
                        &path,
                        format!("tensor {name:?} appears in two files"),
                    ));
                }
                let info = info.clone();
                tensors.insert(name, Entry { shard, info });
            }
            shards.push(Shard {
                path,
                map,
                data_start: 8 + header_len,
            });
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            shards,
            tensors,
            synthetic: None,
            synthetic_packed: None,
            gguf: None,
            quantize: None,
            slices: HashMap::new(),
        })
    }

    /// A GGUF file's tensors under checkpoint names (see [`super::gguf::GgufTensors`]):
    /// a model loads from it as from safetensors, every tensor widened to f32 when read.
    pub fn from_gguf(tensors: super::gguf::GgufTensors) -> Checkpoint {
        Checkpoint {
            origin: tensors.path().display().to_string(),
            shards: Vec::new(),
            tensors: HashMap::new(),
            synthetic: None,
            synthetic_packed: None,
            gguf: Some(tensors),
            quantize: None,
            slices: HashMap::new(),
        }
    }

    /// A checkpoint with no files, for benchmarks at a real model's shape without its
    /// weights: every name exists with whatever shape the loader asks for, and its values
    /// are a fixed function of `seed`, the name and the index. Norm weights are 1, biases 0,
    /// and other tensors uniform in ±1/√fan_in (fan_in = the product of all but the first
    /// dimension), so activations keep a sane scale through many layers.
    pub fn synthetic(seed: u64) -> Checkpoint {
        Checkpoint {
            origin: format!("synthetic weights (seed {seed})"),
            shards: Vec::new(),
            tensors: HashMap::new(),
            synthetic: Some(seed),
            synthetic_packed: None,
            gguf: None,
            quantize: None,
            slices: HashMap::new(),
        }
    }

    /// [`Checkpoint::synthetic`] whose projection weights (`*_proj.weight`) come as random
    /// blocks of `t` (finite scales of about 1/√fan_in), for benchmarks of packed weights.
    pub fn synthetic_packed(seed: u64, t: crate::kernels::quant::GgmlType) -> Checkpoint {
        Checkpoint {
            synthetic_packed: Some(t),
            ..Checkpoint::synthetic(seed)
        }
    }

    fn synthetic_values(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
        let len: usize = shape.iter().product();
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let is_norm = name.contains("norm") && leaf == "weight";
        if is_norm {
            return vec![1.0; len];
        }
        if leaf == "bias" {
            return vec![0.0; len];
        }
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut rng = crate::rng::Rng::for_case(seed, name);
        (0..len)
            .map(|_| rng.uniform(-bound, bound) as f32)
            .collect()
    }

    /// Where the checkpoint was opened from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        if let Some(gguf) = &self.gguf {
            names.extend(gguf.names());
        }
        names.sort_unstable();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.synthetic.is_some() || self.tensors.contains_key(name) || self.shape(name).is_some()
    }

    /// The stored shape of `name`, if present (a synthetic checkpoint stores none).
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        if let Some(slice) = self.slices.get(name) {
            return Some(&slice.shape);
        }
        if let Some(gguf) = &self.gguf {
            return gguf.shape(name);
        }
        self.tensors.get(name).map(|e| e.info.shape.as_slice())
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.origin.clone(),
            name: name.to_string(),
            hint: String::new(),
        })
    }

    /// The stored element type of `name`.
    pub fn dtype(&self, name: &str) -> Result<StoredDtype> {
        if self.synthetic.is_some() {
            return Ok(StoredDtype::F32);
        }
        if let Some(slice) = self.slices.get(name) {
            return self.dtype(&slice.source);
        }
        if let Some(gguf) = &self.gguf {
            // Dequantized to f32 when read.
            return match gguf.shape(name) {
                Some(_) => Ok(StoredDtype::F32),
                None => Err(Error::MissingTensor {
                    path: self.origin.clone(),
                    name: name.to_string(),
                    hint: String::new(),
                }),
            };
        }
        let entry = self.entry(name)?;
        StoredDtype::from_safetensors(entry.info.dtype).ok_or_else(|| {
            malformed(
                &self.shards[entry.shard].path,
                format!(
                    "tensor {name:?} is stored as {:?}; tessera reads F32, F16 and BF16",
                    entry.info.dtype
                ),
            )
        })
    }

    /// Checks that `name` exists with shape `expected`.
    pub fn expect(&self, name: &str, expected: &[usize]) -> Result<()> {
        if self.synthetic.is_some() {
            return Ok(());
        }
        if let Some((slice, _)) = self.slice_of(name)? {
            if slice.shape[..] != *expected {
                return Err(Error::TensorShape {
                    path: self.origin.clone(),
                    name: name.to_string(),
                    expected: expected.to_vec(),
                    found: slice.shape.to_vec(),
                });
            }
            return Ok(());
        }
        if let Some(gguf) = &self.gguf {
            let found = gguf.shape(name).ok_or_else(|| Error::MissingTensor {
                path: self.origin.clone(),
                name: name.to_string(),
                hint: String::new(),
            })?;
            if found != expected {
                return Err(Error::TensorShape {
                    path: self.origin.clone(),
                    name: name.to_string(),
                    expected: expected.to_vec(),
                    found: found.to_vec(),
                });
            }
            return Ok(());
        }
        let entry = self.entry(name)?;
        if entry.info.shape != expected {
            return Err(Error::TensorShape {
                path: self.shards[entry.shard].path.display().to_string(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: entry.info.shape.clone(),
            });
        }
        self.dtype(name).map(drop)
    }

    /// This checkpoint with its decoder weights quantized by `recipe` as they are read (see
    /// [`QuantRecipe::type_for`]): a projection comes from [`Checkpoint::read_packed`] as
    /// blocks, and any quantized weight read as f32 (the embedding, the output, a projection
    /// kept dense) is its blocks dequantized, so both paths compute with the same weights.
    /// Norms and biases stay as stored. Only for checkpoints of plain tensors (a GGUF file
    /// is quantized already).
    pub fn quantized(self, recipe: QuantRecipe) -> Result<Checkpoint> {
        if self.gguf.is_some() || self.synthetic.is_some() {
            return Err(Error::Invalid(format!(
                "{}: only a safetensors checkpoint can be quantized at load",
                self.origin
            )));
        }
        Ok(Checkpoint {
            quantize: Some(recipe),
            ..self
        })
    }

    /// This checkpoint with names that read rows of a fused tensor: `(name, source, first
    /// row, rows)` each. A slice reads like a stored tensor (as f32, packed, quantized); the
    /// source (2-D, or more: rows of its last dimension) must hold the rows, which is checked
    /// when the slice is read.
    pub fn with_row_slices(mut self, slices: Vec<(String, String, usize, usize)>) -> Checkpoint {
        for (name, source, first, rows) in slices {
            // A source of more dimensions is rows of its last one (stacked experts).
            let cols = self
                .shape(&source)
                .and_then(|s| s.last().copied())
                .unwrap_or(0);
            self.slices.insert(
                name,
                RowSlice {
                    source,
                    first,
                    shape: [rows, cols],
                },
            );
        }
        self
    }

    /// The slice `name` reads, with its source's shape, checked to hold it.
    fn slice_of(&self, name: &str) -> Result<Option<(&RowSlice, Vec<usize>)>> {
        let Some(slice) = self.slices.get(name) else {
            return Ok(None);
        };
        let source_shape = self
            .shape(&slice.source)
            .ok_or_else(|| Error::MissingTensor {
                path: self.origin.clone(),
                name: slice.source.clone(),
                hint: format!(" (it holds {name})"),
            })?
            .to_vec();
        // A source of more dimensions is rows of its last one (stacked experts).
        let cols = source_shape.last().copied().unwrap_or(0);
        let rows: usize = source_shape.iter().rev().skip(1).product();
        match source_shape.len() {
            2.. if slice.first + slice.shape[0] <= rows && cols == slice.shape[1] => {
                Ok(Some((slice, source_shape)))
            }
            _ => Err(Error::Checkpoint {
                path: self.origin.clone(),
                detail: format!(
                    "{} is {source_shape:?}; {name} needs rows {}..{} of {} columns",
                    slice.source,
                    slice.first,
                    slice.first + slice.shape[0],
                    slice.shape[1]
                ),
            }),
        }
    }

    /// The type `name` (`shape`) is quantized to under the checkpoint's recipe, if any.
    fn quantized_type(&self, name: &str, shape: &[usize]) -> Option<GgmlType> {
        let recipe = self.quantize?;
        let &[_, cols] = shape else {
            return None;
        };
        let role = match name {
            "lm_head.weight" => WeightRole::Output,
            "model.embed_tokens.weight" if self.contains("lm_head.weight") => WeightRole::Embedding,
            "model.embed_tokens.weight" => WeightRole::Output,
            _ if name.ends_with("_proj.weight") => WeightRole::Projection,
            _ => return None,
        };
        recipe.type_for(role, cols)
    }

    /// The values of `name` (which must have shape `expected`) as f32: as stored, or as the
    /// checkpoint's quantization recipe leaves them.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let values = self.read_f32_stored(name, expected)?;
        match self.quantized_type(name, expected) {
            None => Ok(values),
            Some(t) => {
                let blocks = crate::kernels::quantize::quantize(t, &values)
                    .map_err(|e| self.quantize_error(name, e))?;
                let back = crate::kernels::quant::dequantize(t, &blocks, values.len())?;
                Ok(back.into_iter().map(|v| v as f32).collect())
            }
        }
    }

    fn quantize_error(&self, name: &str, e: Error) -> Error {
        Error::Checkpoint {
            path: self.origin.clone(),
            detail: format!("cannot quantize {name}: {e}"),
        }
    }

    /// The values of `name` as stored, widened to f32.
    fn read_f32_stored(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        if let Some((slice, source_shape)) = self.slice_of(name)? {
            self.expect(name, expected)?;
            let values = self.read_f32_stored(&slice.source, &source_shape)?;
            let cols = slice.shape[1];
            return Ok(values[slice.first * cols..(slice.first + slice.shape[0]) * cols].to_vec());
        }
        if let Some(seed) = self.synthetic {
            return Ok(Checkpoint::synthetic_values(seed, name, expected));
        }
        self.expect(name, expected)?;
        if let Some(gguf) = &self.gguf {
            return gguf.read_f32(name).unwrap_or_else(|| {
                Err(Error::MissingTensor {
                    path: self.origin.clone(),
                    name: name.to_string(),
                    hint: String::new(),
                })
            });
        }
        let entry = self.entry(name)?;
        let shard = &self.shards[entry.shard];
        let (start, end) = entry.info.data_offsets;
        let bytes = &shard.map[shard.data_start + start..shard.data_start + end];
        Ok(match self.dtype(name)? {
            StoredDtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            StoredDtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            StoredDtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// The quantized blocks of `name` (shape `expected`) as stored, where the checkpoint keeps
    /// it in a block type the packed kernels read (a GGUF file); `None` for plain tensors.
    pub fn read_packed(
        &self,
        name: &str,
        expected: &[usize],
    ) -> Result<Option<(crate::kernels::quant::GgmlType, Vec<u8>)>> {
        if let (Some(seed), Some(t)) = (self.synthetic, self.synthetic_packed) {
            return Ok(synthetic_blocks(seed, t, name, expected));
        }
        if let Some((slice, source_shape)) = self.slice_of(name)?
            && self.quantize.is_none()
        {
            self.expect(name, expected)?;
            let Some((t, bytes)) = self.read_packed(&slice.source, &source_shape)? else {
                return Ok(None);
            };
            let row = bytes.len() / source_shape[0];
            let rows = slice.first * row..(slice.first + slice.shape[0]) * row;
            return Ok(Some((t, bytes[rows].to_vec())));
        }
        if let Some(t) = self.quantized_type(name, expected) {
            let values = self.read_f32_stored(name, expected)?;
            let blocks = crate::kernels::quantize::quantize(t, &values)
                .map_err(|e| self.quantize_error(name, e))?;
            return Ok(Some((t, blocks)));
        }
        let Some(gguf) = &self.gguf else {
            return Ok(None);
        };
        self.expect(name, expected)?;
        Ok(gguf.read_packed(name))
    }

    /// The block type [`Checkpoint::read_packed`] would return `name` in, without reading it.
    pub fn packed_type(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Option<crate::kernels::quant::GgmlType> {
        if let (Some(_), Some(t)) = (self.synthetic, self.synthetic_packed) {
            return synthetic_packs(t, name, shape).then_some(t);
        }
        if self.quantize.is_some() {
            return self.quantized_type(name, shape);
        }
        if let Some(slice) = self.slices.get(name) {
            let source_shape = self.shape(&slice.source)?.to_vec();
            return self.packed_type(&slice.source, &source_shape);
        }
        self.gguf.as_ref()?.packed_type(name)
    }

    /// Uploads `name` (shape `expected`) to the device in `dtype`.
    pub fn upload(
        &self,
        gpu: &Gpu,
        name: &str,
        expected: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let values = self.read_f32(name, expected)?;
        Tensor::from_f32(gpu, expected, &values, dtype)
    }
}

/// Whether a synthetic packed checkpoint stores `name` (`shape`) in blocks of `t`: the
/// `[rows, cols]` projection weights whose rows hold whole blocks.
fn synthetic_packs(t: crate::kernels::quant::GgmlType, name: &str, shape: &[usize]) -> bool {
    matches!(shape, &[_, cols] if cols.is_multiple_of(t.block().0 as usize))
        && name.ends_with("_proj.weight")
}

/// Random blocks of `t` for a synthetic `[rows, cols]` projection weight `name`, with f16
/// scales (and Q4_K minimums) of about 1/√cols; `None` for other tensors.
fn synthetic_blocks(
    seed: u64,
    t: crate::kernels::quant::GgmlType,
    name: &str,
    shape: &[usize],
) -> Option<(crate::kernels::quant::GgmlType, Vec<u8>)> {
    use crate::kernels::quant::GgmlType;
    if !synthetic_packs(t, name, shape) {
        return None;
    }
    let (rows, cols) = (shape[0], shape[1]);
    let (block, block_bytes) = t.block();
    let mut rng = crate::rng::Rng::for_case(seed, name);
    let blocks = rows * cols / block as usize;
    let mut bytes: Vec<u8> = (0..blocks * block_bytes as usize)
        .map(|_| rng.next_u64() as u8)
        .collect();
    let scale = 1.0 / (64.0 * (cols as f64).sqrt());
    for chunk in bytes.chunks_exact_mut(block_bytes as usize) {
        let d = half::f16::from_f64(rng.uniform(-scale, scale)).to_le_bytes();
        chunk[..2].copy_from_slice(&d);
        if t == GgmlType::Q4_K {
            let dmin = half::f16::from_f64(rng.uniform(0.0, scale)).to_le_bytes();
            chunk[2..4].copy_from_slice(&dmin);
        }
    }
    Some((t, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_weights_have_the_asked_shape_and_a_sane_scale() {
        let ckpt = Checkpoint::synthetic(5);
        assert!(ckpt.contains("anything.at.all"));
        ckpt.expect("w", &[3, 4]).unwrap();
        let norm = ckpt
            .read_f32("model.layers.0.input_layernorm.weight", &[8])
            .unwrap();
        assert_eq!(norm, vec![1.0; 8]);
        let bias = ckpt.read_f32("conv_in.bias", &[5]).unwrap();
        assert_eq!(bias, vec![0.0; 5]);
        let w = ckpt.read_f32("conv_in.weight", &[64, 4, 3, 3]).unwrap();
        assert_eq!(w.len(), 64 * 36);
        let bound = 1.0 / 6.0;
        assert!(w.iter().all(|v| v.abs() <= bound));
        let mean_square = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        // uniform in ±b has mean square b²/3
        assert!((mean_square / (bound * bound / 3.0) - 1.0).abs() < 0.1);
        // The same name and seed give the same values; another name does not.
        assert_eq!(w, ckpt.read_f32("conv_in.weight", &[64, 4, 3, 3]).unwrap());
        assert_ne!(w, ckpt.read_f32("conv_out.weight", &[64, 4, 3, 3]).unwrap());
    }
}
