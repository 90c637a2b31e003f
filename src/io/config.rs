//! Reading `config.json` files with errors that name the file and the key.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A JSON object from a config file, with typed getters whose errors name the key.
pub struct ConfigJson {
    path: String,
    object: Map<String, Value>,
}

impl ConfigJson {
    pub fn read(path: &Path) -> Result<ConfigJson> {
        let text = super::files::read_text(path, "config file", super::files::MAX_JSON_BYTES)?;
        ConfigJson::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<ConfigJson> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: path.to_string(),
            detail: format!("not valid JSON: {e}"),
        })?;
        match value {
            Value::Object(object) => Ok(ConfigJson {
                path: path.to_string(),
                object,
            }),
            _ => Err(Error::Config {
                path: path.to_string(),
                detail: "is not a JSON object".into(),
            }),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// An error about this file.
    pub fn error(&self, detail: impl Into<String>) -> Error {
        Error::Config {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// The value of `key`, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Whether `key` is present with the value `null`.
    pub fn has_null(&self, key: &str) -> bool {
        matches!(self.object.get(key), Some(Value::Null))
    }

    /// Every key of the object.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.object.keys().map(String::as_str)
    }

    /// A list of strings (`down_block_types`), `None` when absent.
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        let bad = || self.error(format!("{key} should be a list of strings"));
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }

    /// A nested object (`rope_scaling`, `rope_parameters`), `None` when absent or null.
    pub fn object(&self, key: &str) -> Result<Option<ConfigJson>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(ConfigJson {
                path: format!("{} ({key})", self.path),
                object: object.clone(),
            })),
            Some(other) => Err(self.error(format!("{key} should be an object, not {other}"))),
        }
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!("{key} should be a non-negative integer, not {v}"))
                }),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.error(format!("{key} is missing")))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(format!("{key} should be a number, not {v}"))),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?
            .ok_or_else(|| self.error(format!("{key} is missing")))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.error(format!("{key} should be true or false, not {v}"))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.error(format!("{key} should be a string, not {v}"))),
        }
    }

    /// An integer or a list of integers (`eos_token_id`), as a list.
    pub fn usize_list(&self, key: &str) -> Result<Vec<usize>> {
        let bad = |v: &Value| {
            self.error(format!(
                "{key} should be an integer or a list of them, not {v}"
            ))
        };
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| bad(v)))
                .collect(),
            Some(v) => v.as_u64().map(|n| vec![n as usize]).ok_or_else(|| bad(v)),
        }
    }

    /// A list of finite numbers (`short_factor`), `len` of them.
    pub fn f64_list(&self, key: &str, len: usize) -> Result<Vec<f64>> {
        let values = match self.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_f64().filter(|x| x.is_finite()))
                .collect::<Option<Vec<f64>>>(),
            _ => None,
        };
        match values {
            Some(v) if v.len() == len => Ok(v),
            _ => Err(self.error(format!("{key} should be a list of {len} finite numbers"))),
        }
    }

    /// `value` (read from `key`) if it lies in `range`; else an error naming the key, the
    /// value and the range. Sizes from a config are checked like this before anything is
    /// allocated from them.
    pub fn in_range<T>(&self, key: &str, value: T, range: std::ops::RangeInclusive<T>) -> Result<T>
    where
        T: PartialOrd + std::fmt::Display,
    {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.error(format!(
                "{key} = {value} is out of range: it must be between {} and {}",
                range.start(),
                range.end()
            )))
        }
    }

    /// `value` (read from `key`) if it is finite and `> 0`, and at most `max`.
    pub fn positive(&self, key: &str, value: f64, max: f64) -> Result<f64> {
        if value.is_finite() && value > 0.0 && value <= max {
            Ok(value)
        } else {
            Err(self.error(format!(
                "{key} = {value} is out of range: it must be greater than 0 and at most {max}"
            )))
        }
    }

    /// `value` (read from `key`) if it is finite and its magnitude at most `max`.
    pub fn finite(&self, key: &str, value: f64, max: f64) -> Result<f64> {
        if value.is_finite() && value.abs() <= max {
            Ok(value)
        } else {
            Err(self.error(format!(
                "{key} = {value} is out of range: it must be a finite number of magnitude at \
                 most {max}"
            )))
        }
    }

    /// The first entry of a string list (`architectures`).
    pub fn first_string(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(items.first().and_then(Value::as_str)),
            Some(v) => Err(self.error(format!("{key} should be a list of strings, not {v}"))),
        }
    }
}
