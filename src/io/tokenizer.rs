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
        let inner = text
            .parse::<tokenizers::Tokenizer>()
            .map_err(|e| Error::Config {
                path: path.display().to_string(),
                detail: format!("cannot read the tokenizer: {e}"),
            })?;
        Ok(Tokenizer {
            inner,
            path: path.display().to_string(),
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
            .inner
            .encode(text, true)
            .map_err(|e| self.error("cannot encode the prompt", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| self.error("cannot decode tokens", e))
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
