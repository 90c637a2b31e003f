//! A model's chat template: the Jinja template that turns a conversation into the prompt text
//! the model was trained on, rendered with `minijinja` (and its Python-compatible string
//! methods, which Hugging Face templates use).
//!
//! Where it comes from, first found wins: `chat_template.jinja` in the model directory,
//! `chat_template` in its `tokenizer_config.json` (a string, or a list of named templates of
//! which `default` is taken), or `tokenizer.chat_template` in a GGUF file's metadata.

use std::path::Path;

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::files::{MAX_JSON_BYTES, exists, read_text};
use crate::io::gguf::{Gguf, is_gguf};

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A compiled chat template and the special-token strings it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    origin: String,
}

const NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles `source` (read from `origin`, for errors).
    pub fn new(source: String, bos_token: &str, eos_token: &str, origin: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(NAME, source)
            .map_err(|e| Error::Config {
                path: origin.to_string(),
                detail: format!("the chat template does not compile: {e:#}"),
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            origin: origin.to_string(),
        })
    }

    /// The template of the model at `path` (a directory or a GGUF file), if it has one.
    pub fn for_model(path: &Path) -> Result<Option<ChatTemplate>> {
        if is_gguf(path) {
            return ChatTemplate::from_gguf(path);
        }
        let config_path = path.join("tokenizer_config.json");
        let config: serde_json::Value = if exists(&config_path) {
            let text = read_text(&config_path, "tokenizer config", MAX_JSON_BYTES)?;
            serde_json::from_str(&text).map_err(|e| Error::Config {
                path: config_path.display().to_string(),
                detail: format!("not valid JSON: {e}"),
            })?
        } else {
            serde_json::Value::Null
        };
        let token = |key: &str| -> String {
            match &config[key] {
                serde_json::Value::String(s) => s.clone(),
                other => other["content"].as_str().unwrap_or_default().to_string(),
            }
        };
        let (bos, eos) = (token("bos_token"), token("eos_token"));
        let jinja = path.join("chat_template.jinja");
        if exists(&jinja) {
            let source = read_text(&jinja, "chat template", MAX_JSON_BYTES)?;
            let origin = jinja.display().to_string();
            return ChatTemplate::new(source, &bos, &eos, &origin).map(Some);
        }
        let origin = config_path.display().to_string();
        let source = match &config["chat_template"] {
            serde_json::Value::Null => return Ok(None),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(named) => {
                let default = named
                    .iter()
                    .find(|t| t["name"] == "default")
                    .and_then(|t| t["template"].as_str());
                match default {
                    Some(s) => s.to_string(),
                    None => {
                        return Err(Error::Config {
                            path: origin,
                            detail: "chat_template lists no template named \"default\"".into(),
                        });
                    }
                }
            }
            _ => {
                return Err(Error::Config {
                    path: origin,
                    detail: "chat_template is neither a string nor a list of named templates"
                        .into(),
                });
            }
        };
        ChatTemplate::new(source, &bos, &eos, &origin).map(Some)
    }

    /// `tokenizer.chat_template` of a GGUF file, with its BOS/EOS token strings.
    fn from_gguf(path: &Path) -> Result<Option<ChatTemplate>> {
        let gguf = Gguf::open(path)?;
        let Some(source) = gguf.get("tokenizer.chat_template").and_then(|v| v.as_str()) else {
            return Ok(None);
        };
        let token = |key: &str| -> String {
            let id = gguf.get(key).and_then(|v| v.as_u64());
            let tokens = gguf.get("tokenizer.ggml.tokens").and_then(|v| v.as_array());
            match (id, tokens) {
                (Some(id), Some(tokens)) => tokens
                    .get(id as usize)
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        let (bos, eos) = (
            token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"),
        );
        let origin = format!("{} (tokenizer.chat_template)", path.display());
        ChatTemplate::new(source.to_string(), &bos, &eos, &origin).map(Some)
    }

    /// The prompt text of `messages`, ending where the assistant's reply starts when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(|e| self.error(e))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: minijinja::Error) -> Error {
        Error::Invalid(format!(
            "the chat template of {} cannot render this conversation: {e:#}",
            self.origin
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ChatML template in the style Qwen's configs ship (loop, conditionals, a Python
    /// string method, `raise_exception`).
    const CHATML: &str = "{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + m.role) }}{% endif %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn a_chatml_template_renders_a_conversation() {
        let t = ChatTemplate::new(CHATML.into(), "", "<|im_end|>", "test").unwrap();
        let text = t
            .render(
                &[
                    Message::new("system", "Be brief. "),
                    Message::new("user", "Hi"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let err = t.render(&[Message::new("tool", "x")], true).unwrap_err();
        assert!(err.to_string().contains("unknown role tool"), "{err}");
    }

    #[test]
    fn a_template_that_does_not_compile_is_an_error_naming_its_file() {
        let err = ChatTemplate::new("{% for %}".into(), "", "", "x/chat_template.jinja")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("x/chat_template.jinja"), "{err}");
    }
}
