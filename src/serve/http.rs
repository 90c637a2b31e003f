//! The OpenAI-compatible HTTP API on axum: `/v1/completions`, `/v1/chat/completions`
//! (whole responses, or streamed as server-sent events), `/v1/models`, `/health`.
//!
//! Each request becomes an engine request; its events come back through a channel, are
//! turned into text (stop strings applied) and sent to the client. A client that goes away
//! drops the channel, which cancels its sequence and frees its blocks at the engine's next
//! step. Errors are JSON in OpenAI's shape: 400 for a bad request, 404 for an unknown path,
//! 503 when the queue is full or the server is shutting down, 500 when the GPU step failed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::error::Error;
use crate::io::{TextStream, Tokenizer};
use crate::models::sampling::SamplerConfig;

use super::engine::{Event, FinishReason, Request};
use super::stops::StopScan;
use super::template::{ChatTemplate, Message};
use super::worker::EngineHandle;

/// Stop strings a request may give (OpenAI's limit).
const MAX_STOPS: usize = 4;

/// What the handlers share.
pub struct ServerState {
    pub engine: EngineHandle,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    /// The id `/v1/models` lists and responses name.
    pub model_name: String,
    /// Positions the model holds (prompt plus generated tokens).
    pub context: usize,
    /// Tokens generated when a request does not say.
    pub default_max_tokens: usize,
    /// Set when shutdown begins: `/health` then answers 503.
    pub draining: AtomicBool,
    next_id: AtomicU64,
}

impl ServerState {
    pub fn new(
        engine: EngineHandle,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        model_name: String,
        context: usize,
        default_max_tokens: usize,
    ) -> ServerState {
        ServerState {
            engine,
            tokenizer,
            template,
            model_name,
            context,
            default_max_tokens,
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        }
    }
}

/// The routes.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint", None) })
        .with_state(state)
}

/// An error response in OpenAI's shape.
fn error(status: StatusCode, message: &str, param: Option<&str>) -> Response {
    let kind = match status {
        StatusCode::BAD_REQUEST => "invalid_request_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": null}});
    (status, axum::Json(body)).into_response()
}

fn bad_request(message: impl AsRef<str>) -> Response {
    error(StatusCode::BAD_REQUEST, message.as_ref(), None)
}

/// The response for a library error: busy is 503, invalid input 400, the rest 500.
fn library_error(e: &Error) -> Response {
    match e {
        Error::Busy(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
        Error::Invalid(_) | Error::NonFinite { .. } => bad_request(e.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}

/// `{"status": "ok"}` (503 `"shutting down"` once shutdown began), with the engine's load.
async fn health(State(state): State<Arc<ServerState>>) -> Response {
    let stats = state.engine.stats();
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed);
    let draining = state.draining.load(Ordering::Relaxed);
    let body = json!({
        "status": if draining { "shutting down" } else { "ok" },
        "running": load(&stats.running),
        "waiting": load(&stats.waiting),
        "kv_blocks_free": load(&stats.free_blocks),
        "kv_blocks": load(&stats.blocks),
        "cancelled": load(&stats.cancelled),
    });
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn models(State(state): State<Arc<ServerState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": state.model_name, "object": "model", "created": 0, "owned_by": "tessera"}],
    }))
    .into_response()
}

/// Fields both endpoints take.
#[derive(Deserialize)]
struct Sampling {
    max_tokens: Option<i64>,
    /// The chat endpoint's newer name for `max_tokens`.
    max_completion_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// An extension (llama.cpp and vLLM take it too).
    top_k: Option<usize>,
    seed: Option<u64>,
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct CompletionBody {
    prompt: Prompt,
    #[serde(flatten)]
    sampling: Sampling,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Deserialize)]
struct ChatBody {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    sampling: Sampling,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// A parsed request, ready for the engine.
struct Job {
    request: Request,
    stops: Vec<String>,
    stream: bool,
    include_usage: bool,
}

/// `body` as `T`, or what is wrong with it (a 400).
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

/// The engine request for `prompt` under `sampling`, or what is wrong with it (a 400).
fn job(state: &ServerState, prompt: Vec<u32>, s: Sampling) -> Result<Job, String> {
    if s.n.is_some_and(|n| n != 1) {
        return Err("only n = 1 is supported".into());
    }
    let left = state.context.saturating_sub(prompt.len());
    let max_tokens = match s.max_completion_tokens.or(s.max_tokens) {
        None => state.default_max_tokens.min(left),
        Some(n) if n < 1 => return Err("max_tokens must be at least 1".into()),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let stops = match s.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(list)) => list,
    };
    if stops.len() > MAX_STOPS {
        return Err(format!(
            "at most {MAX_STOPS} stop strings, not {}",
            stops.len()
        ));
    }
    let seed = s.seed.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ state.next_id.load(Ordering::Relaxed)
    });
    let sampler = SamplerConfig {
        temperature: s.temperature.unwrap_or(1.0),
        top_k: s.top_k,
        top_p: s.top_p.filter(|&p| p < 1.0),
        seed,
    };
    crate::models::sampling::Sampler::new(sampler).map_err(|e| e.to_string())?;
    Ok(Job {
        request: Request {
            prompt,
            max_tokens,
            sampler,
            stop_at_eos: true,
        },
        stops,
        stream: s.stream,
        include_usage: s.stream_options.is_some_and(|o| o.include_usage),
    })
}

async fn completions(State(state): State<Arc<ServerState>>, body: Bytes) -> Response {
    let body: CompletionBody = match parse(&body) {
        Ok(b) => b,
        Err(message) => return bad_request(message),
    };
    let prompt = match body.prompt {
        Prompt::Text(text) => state.tokenizer.encode(&text),
        Prompt::Texts(texts) if texts.len() == 1 => state.tokenizer.encode(&texts[0]),
        Prompt::Texts(_) => return bad_request("give one prompt per request"),
        Prompt::Tokens(ids) => Ok(ids),
    };
    let prompt = match prompt {
        Ok(p) => p,
        Err(e) => return bad_request(e.to_string()),
    };
    match job(&state, prompt, body.sampling) {
        Ok(job) => respond(state, job, Kind::Completion).await,
        Err(message) => bad_request(message),
    }
}

async fn chat_completions(State(state): State<Arc<ServerState>>, body: Bytes) -> Response {
    let body: ChatBody = match parse(&body) {
        Ok(b) => b,
        Err(message) => return bad_request(message),
    };
    let Some(template) = &state.template else {
        return bad_request(
            "the model has no chat template (chat_template.jinja, tokenizer_config.json or \
             GGUF metadata); use /v1/completions, or start the server with --chat-template",
        );
    };
    if body.messages.is_empty() {
        return bad_request("messages is empty");
    }
    let mut messages = Vec::new();
    for m in body.messages {
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return bad_request(format!(
                                "message parts of type {kind:?} are not supported"
                            ));
                        }
                    }
                }
                text
            }
        };
        messages.push(Message {
            role: m.role,
            content,
        });
    }
    let prompt = template
        .render(&messages, true)
        .and_then(|text| state.tokenizer.encode_plain(&text));
    let prompt = match prompt {
        Ok(p) => p,
        Err(e) => return bad_request(e.to_string()),
    };
    match job(&state, prompt, body.sampling) {
        Ok(job) => respond(state, job, Kind::Chat).await,
        Err(message) => bad_request(message),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Completion,
    Chat,
}

/// What the client hears of a generation, in order: text, then one end.
enum Piece {
    Text(String),
    End {
        finish_reason: &'static str,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(StatusCode, String),
}

/// Submits `job` and answers with the whole completion or a stream of it.
async fn respond(state: Arc<ServerState>, job: Job, kind: Kind) -> Response {
    let (events, event_rx) = mpsc::unbounded_channel::<Event>();
    let sink = Box::new(move |e| events.send(e).is_ok());
    let id = match state.engine.submit(job.request.clone(), sink).await {
        Ok(id) => id,
        Err(e) => return library_error(&e),
    };
    let (pieces, piece_rx) = mpsc::unbounded_channel::<Piece>();
    tokio::spawn(pump(state.clone(), id, event_rx, job.stops.clone(), pieces));
    let number = state.next_id.fetch_add(1, Ordering::Relaxed);
    let meta = Meta {
        id: match kind {
            Kind::Completion => format!("cmpl-{number}"),
            Kind::Chat => format!("chatcmpl-{number}"),
        },
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        model: state.model_name.clone(),
        kind,
    };
    if job.stream {
        streamed(meta, piece_rx, job.include_usage)
    } else {
        whole(meta, piece_rx).await
    }
}

/// Turns `id`'s engine events into pieces of text with the stop strings applied; stops the
/// sequence when a stop string appears or nobody reads the pieces any more.
async fn pump(
    state: Arc<ServerState>,
    id: u64,
    mut events: mpsc::UnboundedReceiver<Event>,
    stops: Vec<String>,
    pieces: mpsc::UnboundedSender<Piece>,
) {
    let mut text = TextStream::new(&state.tokenizer);
    let mut scan = StopScan::new(stops);
    let mut generated = 0;
    let send = |p: Piece| pieces.send(p).is_ok();
    while let Some(event) = events.recv().await {
        match event {
            Event::Token(token) => {
                generated += 1;
                let released = match text.push(token) {
                    Ok(piece) => scan.push(&piece),
                    Err(e) => {
                        state.engine.cancel(id);
                        send(Piece::Failed(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            e.to_string(),
                        ));
                        return;
                    }
                };
                let listening = released.is_empty() || send(Piece::Text(released));
                if scan.stopped() || !listening {
                    state.engine.cancel(id);
                    if listening {
                        send(Piece::End {
                            finish_reason: "stop",
                            prompt_tokens: 0,
                            completion_tokens: generated,
                        });
                    }
                    return;
                }
            }
            Event::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let rest = text.finish().map(|t| scan.push(&t) + &scan.finish());
                if let Ok(rest) = rest
                    && !rest.is_empty()
                {
                    send(Piece::Text(rest));
                }
                let finish_reason = match reason {
                    FinishReason::Eos => "stop",
                    FinishReason::MaxTokens | FinishReason::Context => "length",
                    FinishReason::Cancelled => {
                        send(Piece::Failed(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the request was cancelled: the server is shutting down".into(),
                        ));
                        return;
                    }
                };
                send(Piece::End {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                });
                return;
            }
            Event::Failed(message) => {
                send(Piece::Failed(StatusCode::INTERNAL_SERVER_ERROR, message));
                return;
            }
        }
    }
}

/// The identity of one response.
#[derive(Clone)]
struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Meta {
    fn object(&self, streamed: bool) -> &'static str {
        match (self.kind, streamed) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    /// A response object with `choice` as its one choice.
    fn with_choice(&self, streamed: bool, choice: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(streamed),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// The whole completion as one JSON response.
async fn whole(meta: Meta, mut pieces: mpsc::UnboundedReceiver<Piece>) -> Response {
    let mut text = String::new();
    while let Some(piece) = pieces.recv().await {
        match piece {
            Piece::Text(t) => text.push_str(&t),
            Piece::Failed(status, message) => return error(status, &message, None),
            Piece::End {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let choice = match meta.kind {
                    Kind::Completion => json!({
                        "index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason,
                    }),
                    Kind::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": null,
                        "finish_reason": finish_reason,
                    }),
                };
                let mut body = meta.with_choice(false, choice);
                body["usage"] = usage(prompt_tokens, completion_tokens);
                return axum::Json(body).into_response();
            }
        }
    }
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the generation ended without a result",
        None,
    )
}

/// The completion as server-sent events: one chunk per piece of text, a last chunk with the
/// finish reason (and usage, when asked), then `[DONE]`.
fn streamed(meta: Meta, pieces: mpsc::UnboundedReceiver<Piece>, include_usage: bool) -> Response {
    let chat = meta.kind == Kind::Chat;
    let opening = chat.then(|| {
        let choice = json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null});
        meta.with_choice(true, choice)
    });
    let events = UnboundedReceiverStream::new(pieces).flat_map(move |piece| {
        let mut out: Vec<Value> = Vec::new();
        match piece {
            Piece::Text(t) => {
                let choice = if chat {
                    json!({"index": 0, "delta": {"content": t}, "finish_reason": null})
                } else {
                    json!({"index": 0, "text": t, "logprobs": null, "finish_reason": null})
                };
                out.push(meta.with_choice(true, choice));
            }
            Piece::End {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let choice = if chat {
                    json!({"index": 0, "delta": {}, "finish_reason": finish_reason})
                } else {
                    json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason})
                };
                out.push(meta.with_choice(true, choice));
                if include_usage {
                    let mut last = meta.with_choice(true, json!(null));
                    last["choices"] = json!([]);
                    last["usage"] = usage(prompt_tokens, completion_tokens);
                    out.push(last);
                }
            }
            Piece::Failed(status, message) => {
                out.push(json!({"error": {"message": message, "type": "server_error", "code": status.as_u16()}}));
            }
        }
        stream::iter(out.into_iter().map(|v| SseEvent::default().data(v.to_string())))
    });
    let done = stream::once(async { SseEvent::default().data("[DONE]") });
    let all = stream::iter(opening.map(|v| SseEvent::default().data(v.to_string())))
        .chain(events)
        .chain(done)
        .map(Ok::<_, Infallible>);
    Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response()
}
