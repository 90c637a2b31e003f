//! The tokenizer a GGUF file describes in its metadata (`tokenizer.ggml.*`), as the
//! `tokenizers` crate's own `tokenizer.json` structure, built the way transformers builds it
//! from the same file (so the two encode a prompt to the same ids):
//!
//! - `gpt2`: byte-level BPE from `tokens` and `merges`; the text split by the pattern the
//!   `pre` name stands for (llama-bpe, qwen2, ...; GPT-2's own otherwise);
//! - `llama`: SentencePiece-style BPE over `tokens` with byte fallback (`<0xNN>` tokens), the
//!   merges from the file or, as usual, derived from `scores`; spaces as `▁`.
//!
//! Control tokens (type 3) and BOS/EOS/UNK/PAD are special tokens, user-defined ones (type 4)
//! plain added tokens; BOS (and EOS) are added to a prompt as `add_bos_token` (default: yes for
//! `llama`, no for `gpt2`) and `add_eos_token` say. Every field is checked first: a missing or
//! mistyped one, a token id out of range or lists of different lengths are errors naming the
//! key.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::gguf::{Gguf, GgufValue};
use crate::error::{Error, Result};

/// llama.cpp's token types.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Llama 3's split pattern (llama.cpp's `llama-bpe` and its aliases).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split pattern (numbers one digit at a time).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's split pattern (and Llama 4's).
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken pattern.
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split pattern of a byte-level vocabulary's `tokenizer.ggml.pre`, if it has its own.
fn split_pattern(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "dbrx" | "smaug-bpe" | "smollm" => LLAMA3_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "megrez" => QWEN2_SPLIT,
        "gpt-4o" | "llama4" => GPT4O_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        _ => return None,
    })
}

/// GPT-2's printable spelling of each byte (`bytes_to_unicode`): printable Latin-1 bytes stand
/// for themselves, the others for U+0100 onwards in byte order.
fn byte_alphabet() -> [char; 256] {
    let mut spelling = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in spelling.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).expect("below U+0200");
    }
    spelling
}

/// The metadata fields of a tokenizer, checked.
struct Fields<'a> {
    model: &'a str,
    pre: Option<&'a str>,
    tokens: Vec<&'a str>,
    types: Option<Vec<i64>>,
    scores: Option<Vec<f64>>,
    merges: Option<Vec<&'a str>>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
    add_space_prefix: Option<bool>,
}

fn invalid(gguf: &Gguf, key: &str, detail: impl std::fmt::Display) -> Error {
    Error::Config {
        path: gguf.path().display().to_string(),
        detail: format!("tokenizer.ggml.{key}: {detail}"),
    }
}

impl<'a> Fields<'a> {
    fn read(gguf: &'a Gguf, model: &'a str) -> Result<Fields<'a>> {
        let get = |key: &str| gguf.get(&format!("tokenizer.ggml.{key}"));
        let array = |key: &str| -> Result<Option<&'a [GgufValue]>> {
            match gguf.get(&format!("tokenizer.ggml.{key}")) {
                None => Ok(None),
                Some(v) => v
                    .as_array()
                    .map(Some)
                    .ok_or_else(|| invalid(gguf, key, "not an array")),
            }
        };
        let strings = |key: &str| -> Result<Option<Vec<&'a str>>> {
            array(key)?
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().ok_or_else(|| invalid(gguf, key, "not strings")))
                        .collect()
                })
                .transpose()
        };
        let tokens = strings("tokens")?.ok_or_else(|| invalid(gguf, "tokens", "missing"))?;
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(invalid(gguf, "tokens", format!("{} tokens", tokens.len())));
        }
        let same_length = |key: &str, len: usize| -> Result<()> {
            if len == tokens.len() {
                Ok(())
            } else {
                Err(invalid(
                    gguf,
                    key,
                    format!("{len} entries for {} tokens", tokens.len()),
                ))
            }
        };
        let types = array("token_type")?
            .map(|a| -> Result<Vec<i64>> {
                same_length("token_type", a.len())?;
                a.iter()
                    .map(|v| match v {
                        GgufValue::I32(t) => Ok(i64::from(*t)),
                        other => other
                            .as_u64()
                            .and_then(|t| i64::try_from(t).ok())
                            .ok_or_else(|| invalid(gguf, "token_type", "not integers")),
                    })
                    .collect()
            })
            .transpose()?;
        let scores = array("scores")?
            .map(|a| -> Result<Vec<f64>> {
                same_length("scores", a.len())?;
                a.iter()
                    .map(|v| {
                        v.as_f64()
                            .filter(|s| s.is_finite())
                            .ok_or_else(|| invalid(gguf, "scores", "not finite numbers"))
                    })
                    .collect()
            })
            .transpose()?;
        let id = |key: &str| -> Result<Option<u32>> {
            match get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
                    Some(id) => Err(invalid(
                        gguf,
                        key,
                        format!("token {id} of {} tokens", tokens.len()),
                    )),
                    None => Err(invalid(gguf, key, "not a token id")),
                },
            }
        };
        let flag = |key: &str| -> Result<Option<bool>> {
            match get(key) {
                None => Ok(None),
                Some(GgufValue::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(invalid(gguf, key, "not a bool")),
            }
        };
        let pre = match get("pre") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| invalid(gguf, "pre", "not a string"))?,
            ),
        };
        Ok(Fields {
            model,
            pre,
            types,
            scores,
            merges: strings("merges")?,
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            unk: id("unknown_token_id")?,
            pad: id("padding_token_id")?,
            add_bos: flag("add_bos_token")?,
            add_eos: flag("add_eos_token")?,
            add_space_prefix: flag("add_space_prefix")?,
            tokens,
        })
    }

    fn token_type(&self, id: usize) -> i64 {
        self.types.as_ref().map_or(1, |t| t[id])
    }
}

/// The tokenizer the GGUF file's metadata describes, as `tokenizer.json` (a JSON value for the
/// `tokenizers` crate), or `None` when the file has no `tokenizer.ggml.model`.
pub fn tokenizer_json(gguf: &Gguf) -> Result<Option<Value>> {
    let Some(model) = gguf.get("tokenizer.ggml.model") else {
        return Ok(None);
    };
    let model = model
        .as_str()
        .ok_or_else(|| invalid(gguf, "model", "not a string"))?;
    let f = Fields::read(gguf, model)?;
    let (model_json, pre_tokenizer, decoder, byte_level) = match model {
        "gpt2" => byte_level_bpe(gguf, &f)?,
        "llama" => sentencepiece_bpe(gguf, &f)?,
        other => {
            return Err(invalid(
                gguf,
                "model",
                format!(
                    "tokenizer type {other:?} is not supported (gpt2 and llama are); put the \
                     model's tokenizer.json beside the file"
                ),
            ));
        }
    };
    Ok(Some(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(&f, byte_level),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor(&f),
        "decoder": decoder,
        "model": model_json,
    })))
}

type Parts = (Value, Value, Value, bool);

/// `gpt2`: tokens in GPT-2's byte spelling (respelled where a file wrote one in UTF-8), the
/// file's merges.
fn byte_level_bpe(gguf: &Gguf, f: &Fields<'_>) -> Result<Parts> {
    let alphabet = byte_alphabet();
    let spelled = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::new();
    for (id, token) in f.tokens.iter().enumerate() {
        let key = if spelled(token) {
            token.to_string()
        } else {
            token.bytes().map(|b| alphabet[b as usize]).collect()
        };
        vocab.insert(key, json!(id));
    }
    let merges = f
        .merges
        .as_ref()
        .ok_or_else(|| invalid(gguf, "merges", "missing (a gpt2 tokenizer needs them)"))?;
    let merges = merges
        .iter()
        .map(|m| match m.split(' ').collect::<Vec<_>>()[..] {
            [a, b] => Ok(json!([a, b])),
            _ => Err(invalid(gguf, "merges", format!("{m:?} is not two tokens"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null,
        "continuing_subword_prefix": "", "end_of_word_suffix": "",
        "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
        "vocab": vocab, "merges": merges,
    });
    let pre_tokenizer = match f.pre.and_then(split_pattern) {
        Some(pattern) => json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
                 "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": false},
            ],
        }),
        None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                       "use_regex": true}),
    };
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    Ok((model, pre_tokenizer, decoder, true))
}

/// `llama`: the tokens as written, byte fallback, merges from the file or derived from the
/// scores.
fn sentencepiece_bpe(gguf: &Gguf, f: &Fields<'_>) -> Result<Parts> {
    let mut vocab = serde_json::Map::new();
    for (id, token) in f.tokens.iter().enumerate() {
        vocab.insert(token.to_string(), json!(id));
    }
    let merges: Vec<Value> = match (&f.merges, &f.scores) {
        (Some(merges), _) => merges
            .iter()
            .map(|m| match m.split(' ').collect::<Vec<_>>()[..] {
                [a, b] => Ok(json!([a, b])),
                _ => Err(invalid(gguf, "merges", format!("{m:?} is not two tokens"))),
            })
            .collect::<Result<_>>()?,
        (None, Some(scores)) => merges_from_scores(&f.tokens, scores)
            .into_iter()
            .map(|(a, b)| json!([a, b]))
            .collect(),
        (None, None) => {
            return Err(invalid(
                gguf,
                "scores",
                "missing (a llama tokenizer needs scores or merges)",
            ));
        }
    };
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null,
        "continuing_subword_prefix": null, "end_of_word_suffix": null,
        "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
        "vocab": vocab, "merges": merges,
    });
    let prepend = if f.add_space_prefix == Some(false) {
        "never"
    } else {
        "first"
    };
    let pre_tokenizer = json!({"type": "Metaspace", "replacement": "\u{2581}",
                               "prepend_scheme": prepend, "split": false});
    let decoder = json!({
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    });
    Ok((model, pre_tokenizer, decoder, false))
}

/// The merges a SentencePiece vocabulary implies: every split of a token into two tokens,
/// ranked by the whole token's score (best first), then by the pieces' lengths (longest
/// first); ties keep the vocabulary's order, and a token's own splits are ordered by the
/// pieces' ids. (transformers' `generate_merges`, which its GGUF tokenizer uses.)
fn merges_from_scores<'a>(tokens: &[&'a str], scores: &[f64]) -> Vec<(&'a str, &'a str)> {
    // token → id (the last of duplicates) and token → score (the first position, the last
    // score), as the reference's dictionaries keep them.
    let mut id: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut score: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (i, (&t, &s)) in tokens.iter().zip(scores).enumerate() {
        id.insert(t, i);
        if score.insert(t, s).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for &token in &order {
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| id.contains_key(l) && id.contains_key(r))
            .map(|(l, r)| (l, r, score[token]))
            .collect();
        local.sort_by_key(|(l, r, _)| (id[l], id[r]));
        merges.extend(local);
    }
    // A stable sort, descending by (score, left length, right length).
    merges.sort_by(|a, b| {
        let key = |m: &(&str, &str, f64)| (m.0.chars().count(), m.1.chars().count());
        b.2.total_cmp(&a.2).then_with(|| key(b).cmp(&key(a)))
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}

/// Control tokens and BOS/EOS/UNK/PAD as special tokens, user-defined ones as plain added
/// tokens. In a byte-level vocabulary a "control" token spelled outside the byte alphabet is
/// a mislabel and stays a plain token.
fn added_tokens(f: &Fields<'_>, byte_level: bool) -> Vec<Value> {
    let alphabet = byte_alphabet();
    let named: Vec<u32> = [f.bos, f.eos, f.unk, f.pad].into_iter().flatten().collect();
    let mut added = Vec::new();
    for (id, token) in f.tokens.iter().enumerate() {
        let kind = f.token_type(id);
        let spelled = !byte_level || token.chars().all(|c| alphabet.contains(&c));
        let special = (kind == CONTROL && spelled) || named.contains(&(id as u32));
        if special || kind == USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            }));
        }
    }
    added
}

/// BOS before (and EOS after) each sequence, as the file's flags say.
fn post_processor(f: &Fields<'_>) -> Value {
    let add_bos = f.add_bos.unwrap_or(f.model == "llama") && f.bos.is_some();
    let add_eos = f.add_eos.unwrap_or(false) && f.eos.is_some();
    let token = |id: Option<u32>| f.tokens[id.expect("checked above") as usize];
    let special = |id: Option<u32>, type_id: u32| json!({"SpecialToken": {"id": token(id), "type_id": type_id}});
    let sequence = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
    let sequence_of = |name: &str, type_id: u32| {
        let mut seq = Vec::new();
        if add_bos {
            seq.push(special(f.bos, type_id));
        }
        seq.push(sequence(name, type_id));
        if add_eos {
            seq.push(special(f.eos, type_id));
        }
        seq
    };
    let single = sequence_of("A", 0);
    let mut pair = sequence_of("A", 0);
    pair.extend(sequence_of("B", 1));
    let mut specials = serde_json::Map::new();
    for (add, id) in [(add_bos, f.bos), (add_eos, f.eos)] {
        if add {
            specials.insert(
                token(id).to_string(),
                json!({"id": token(id), "ids": [id], "tokens": [token(id)]}),
            );
        }
    }
    json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": specials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let a = byte_alphabet();
        assert_eq!(a[b'A' as usize], 'A');
        // Space and newline are respelled: 'Ġ' and 'Ċ'.
        assert_eq!(a[b' ' as usize], '\u{120}');
        assert_eq!(a[b'\n' as usize], '\u{10A}');
        let distinct: std::collections::HashSet<char> = a.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn merges_follow_the_whole_tokens_scores() {
        let tokens = ["a", "b", "c", "ab", "abc", "bc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -3.0, -2.0];
        let merges = merges_from_scores(&tokens, &scores);
        // ab (-1) first; then bc (-2); abc (-3): "ab"+"c" before "a"+"bc" (longer left).
        assert_eq!(
            merges,
            vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]
        );
    }
}
