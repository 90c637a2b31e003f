//! Reading model files: safetensors checkpoints (single or sharded, memory-mapped) and
//! Hugging Face / diffusers `config.json`. Everything read here is untrusted input: every
//! error names the file and what is wrong with it.

pub mod safetensors;

pub use safetensors::{Checkpoint, StoredDtype};
pub mod config;

pub use config::ConfigJson;
pub mod tokenizer;

pub use tokenizer::{TextStream, Tokenizer};

/// Writes `rows` (each `width` long) as a safetensors file with one f32 tensor `name`
/// `[rows, width]` (the `--dump-logits` format).
pub fn write_rows_f32(path: &std::path::Path, name: &str, rows: &[Vec<f32>]) -> crate::Result<()> {
    let width = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != width) {
        return Err(crate::Error::Invalid("rows of different lengths".into()));
    }
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view = ::safetensors::tensor::TensorView::new(
        ::safetensors::Dtype::F32,
        vec![rows.len(), width],
        &bytes,
    )
    .map_err(|e| crate::Error::Invalid(format!("{name}: {e}")))?;
    ::safetensors::serialize_to_file([(name, view)], None, path).map_err(|e| crate::Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}
