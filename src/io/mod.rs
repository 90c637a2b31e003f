//! Reading model files: safetensors checkpoints (single or sharded, memory-mapped) and
//! Hugging Face / diffusers `config.json`. Everything read here is untrusted input: every
//! error names the file and what is wrong with it.

pub mod files;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod safetensors;

pub use safetensors::{Checkpoint, StoredDtype};
pub mod config;

pub use config::ConfigJson;
pub mod tokenizer;

pub use tokenizer::{TextStream, Tokenizer};

pub mod image;

pub use image::{png_grid, write_png_grid};

/// Writes `rows` (each `width` long) as a safetensors file with one f32 tensor `name`
/// `[rows, width]` (the `--dump-logits` format).
pub fn write_rows_f32(path: &std::path::Path, name: &str, rows: &[Vec<f32>]) -> crate::Result<()> {
    let width = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != width) {
        return Err(crate::Error::Invalid("rows of different lengths".into()));
    }
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    write_tensor_f32(path, name, &[rows.len(), width], &data)
}

/// Writes one f32 tensor `name` of `shape` as a safetensors file.
pub fn write_tensor_f32(
    path: &std::path::Path,
    name: &str,
    shape: &[usize],
    data: &[f32],
) -> crate::Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        ::safetensors::tensor::TensorView::new(::safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .map_err(|e| crate::Error::Invalid(format!("{name}: {e}")))?;
    let bytes = ::safetensors::serialize([(name, view)], None).map_err(|e| crate::Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    files::write_atomically(path, &bytes)
}

/// Reads the f32 (or f16 / bf16) tensor `name` from a safetensors file: its shape and values.
pub fn read_tensor_f32(
    path: &std::path::Path,
    name: &str,
) -> crate::Result<(Vec<usize>, Vec<f32>)> {
    read_tensor_f32_if(path, name, |_| Ok(()))
}

/// [`read_tensor_f32`], with the shape checked by `accept` before the values are read: a file
/// that declares a huge tensor is refused without converting it.
pub fn read_tensor_f32_if(
    path: &std::path::Path,
    name: &str,
    accept: impl FnOnce(&[usize]) -> crate::Result<()>,
) -> crate::Result<(Vec<usize>, Vec<f32>)> {
    let ckpt = Checkpoint::open_files(&path.display().to_string(), &[path.to_path_buf()])?;
    let shape = ckpt
        .shape(name)
        .ok_or_else(|| crate::Error::MissingTensor {
            path: path.display().to_string(),
            name: name.to_string(),
            hint: String::new(),
        })?
        .to_vec();
    accept(&shape)?;
    let values = ckpt.read_f32(name, &shape)?;
    Ok((shape, values))
}
