//! Text ↔ token ids through a checkpoint's `tokenizer.json` (the `tokenizers` crate), and a
//! decoder that streams text as tokens arrive.

use std::path::Path;

use crate::error::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: String,
}

impl Tokenizer {
    /// Reads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let text = super::files::read_text(path, "tokenizer", super::files::MAX_JSON_BYTES)?;
        Tokenizer::from_text(&path.display().to_string(), &text)
    }

    /// The tokenizer in `text`, the contents of a `tokenizer.json` called `name` (for
    /// messages).
    pub fn from_text(name: &str, text: &str) -> Result<Tokenizer> {
        // JSON syntax first, with the position of the error.
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: name.to_string(),
            detail: format!("cannot read the tokenizer: not valid JSON: {e}"),
        })?;
        Tokenizer::from_json(json, name)
    }

    /// The tokenizer in a GGUF file's metadata (see [`super::gguf_tokenizer`]), if it has one.
    pub fn from_gguf(gguf: &super::gguf::Gguf) -> Result<Option<Tokenizer>> {
        super::gguf_tokenizer::tokenizer_json(gguf)?
            .map(|json| Tokenizer::from_json(json, &gguf.path().display().to_string()))
            .transpose()
    }

    /// The tokenizer of the model at `path` (a directory, or a GGUF file): `tokenizer.json`
    /// in the directory (beside the GGUF file: it wins over the file's metadata), else the
    /// GGUF file's own; `None` when there is neither.
    pub fn for_model(path: &Path) -> Result<Option<Tokenizer>> {
        if !super::gguf::is_gguf(path) {
            return Tokenizer::from_dir(path);
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        if let Some(beside) = Tokenizer::from_dir(dir)? {
            return Ok(Some(beside));
        }
        Tokenizer::from_gguf(&super::gguf::Gguf::open(path)?)
    }

    /// A tokenizer from its `tokenizer.json` structure (read from `origin`).
    fn from_json(json: serde_json::Value, origin: &str) -> Result<Tokenizer> {
        let error = |detail: String| Error::Config {
            path: origin.to_string(),
            detail: format!("cannot read the tokenizer: {detail}"),
        };
        // tokenizers 0.22 panics (an `expect` in its decoder deserializer) on some malformed
        // sections rather than returning an error: contain that here, so a bad file is an
        // error like any other.
        let parsed =
            std::panic::catch_unwind(|| serde_json::from_value::<tokenizers::Tokenizer>(json));
        let inner = match parsed {
            Ok(Ok(inner)) => inner,
            Ok(Err(e)) => return Err(error(e.to_string())),
            Err(_) => return Err(error("a section is malformed".into())),
        };
        Ok(Tokenizer {
            inner,
            path: origin.to_string(),
        })
    }

    /// `dir/tokenizer.json`, if the model directory has one.
    pub fn from_dir(dir: &Path) -> Result<Option<Tokenizer>> {
        let path = dir.join("tokenizer.json");
        super::files::exists(&path)
            .then(|| Tokenizer::from_file(&path))
            .transpose()
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Config {
            path: self.path.clone(),
            detail: format!("{what}: {e}"),
        }
    }

    /// The ids of `text`, with the special tokens the tokenizer adds (a BOS, typically).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .contained("cannot encode the prompt", || self.inner.encode(text, true))?
            .map_err(|e| self.error("cannot encode the prompt", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The ids of `text` exactly as written, adding no special tokens (a rendered chat
    /// template, which writes its own).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .contained("cannot encode the prompt", || {
                self.inner.encode(text, false)
            })?
            .map_err(|e| self.error("cannot encode the prompt", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.contained("cannot decode tokens", || self.inner.decode(ids, true))?
            .map_err(|e| self.error("cannot decode tokens", e))
    }

    /// Runs `f` on the tokenizers crate, which panics on some inconsistent files (a
    /// post-processor naming a special token it does not define) where it should return an
    /// error: such a panic becomes an error about this file.
    fn contained<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|_| self.error(what, "the tokenizer file is inconsistent"))
    }
}

/// Turns a growing list of tokens into the text each new token adds. A token that ends in the
/// middle of a multi-byte character shows as U+FFFD until the rest arrives, so trailing
/// replacement characters are held back.
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    printed: String,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        TextStream {
            tokenizer,
            ids: Vec::new(),
            printed: String::new(),
        }
    }

    /// Adds `id`; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        let settled = text.trim_end_matches('\u{FFFD}');
        Ok(match settled.strip_prefix(self.printed.as_str()) {
            Some(new) => {
                let new = new.to_string();
                self.printed = settled.to_string();
                new
            }
            // Decoding earlier tokens changed (rare): carry on from here.
            None => {
                self.printed = settled.to_string();
                String::new()
            }
        })
    }

    /// Whatever is still held back (at the end of generation).
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.ids)?;
        Ok(text
            .strip_prefix(self.printed.as_str())
            .unwrap_or_default()
            .to_string())
    }
}
