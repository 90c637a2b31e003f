//! `tessera serve` end to end: the binary on a local port, driven by real HTTP clients
//! (reqwest, and curl for the raw server-sent events), on the bundled byte-level demo model.
//! What a request returns is checked against the library generating the same prompt alone.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use tessera::io::Tokenizer;
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};

const TEMPLATE: &str = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/stdlib-byte")
}

/// A `tessera serve` child process on a free port.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let template =
            std::env::temp_dir().join(format!("tessera-chat-{}.jinja", std::process::id()));
        std::fs::write(&template, TEMPLATE).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--port", "0", "--model"])
            .arg(model_dir())
            .arg("--chat-template")
            .arg(&template)
            .args(extra)
            .env(
                "XDG_RUNTIME_DIR",
                std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let base = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the server exited: {}", log.lock().unwrap()))
                .unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(rest) = line.split(" on http://").nth(1) {
                break format!("http://{}", rest.split("/v1").next().unwrap());
            }
        };
        // Keep reading stderr so the child never blocks on a full pipe.
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn health(&self) -> Value {
        Client::new()
            .get(self.url("/health"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Waits until `/health` satisfies `done` (at most 60 s).
    fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let h = self.health();
            if done(&h) {
                return h;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: {h}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the process to exit (at most 60 s) and returns whether it succeeded.
    fn wait_exit(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no exit: {}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The greedy text the library generates for `prompt` ids alone.
struct Reference {
    model: Llama,
    tokenizer: Tokenizer,
}

impl Reference {
    fn new() -> Reference {
        let gpu = common::gpu();
        let model = Llama::load(&gpu, &model_dir(), &LoadOptions::default()).unwrap();
        let tokenizer = Tokenizer::for_model(&model_dir()).unwrap().unwrap();
        Reference { model, tokenizer }
    }

    fn greedy(&mut self, prompt: &[u32], max_tokens: usize) -> (String, usize) {
        let options = GenerateOptions {
            max_tokens,
            ..GenerateOptions::default()
        };
        let out = self.model.generate(prompt, &options, |_| Ok(())).unwrap();
        (
            self.tokenizer.decode(&out.tokens).unwrap(),
            out.tokens.len(),
        )
    }

    fn completion(&mut self, prompt: &str, max_tokens: usize) -> String {
        let ids = self.tokenizer.encode(prompt).unwrap();
        self.greedy(&ids, max_tokens).0
    }

    fn chat(&mut self, user: &str, max_tokens: usize) -> String {
        self.rendered(&format!("user: {user}\nassistant:"), max_tokens)
    }

    /// The reply to a conversation already rendered through [`TEMPLATE`].
    fn rendered(&mut self, text: &str, max_tokens: usize) -> String {
        let ids = self.tokenizer.encode_plain(text).unwrap();
        self.greedy(&ids, max_tokens).0
    }
}

fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_chat_and_models_answer_what_the_model_generates_alone() {
    let server = Server::start(&[]);
    let mut reference = Reference::new();

    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "def main(", "max_tokens": 20, "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(
        body["choices"][0]["text"],
        reference.completion("def main(", 20)
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 20);
    assert_eq!(body["usage"]["prompt_tokens"], 10); // BOS + 9 bytes

    let (status, body) = post(
        &server,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "import os"}], "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        reference.chat("import os", 12)
    );

    // A stop string cuts the text before it.
    let full = reference.completion("def main(", 40);
    let cut = full.find("\n").expect("a newline in 40 bytes of code");
    let (_, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "def main(", "max_tokens": 40, "temperature": 0, "stop": ["\n"]}),
    );
    assert_eq!(body["choices"][0]["text"], full[..cut]);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let models: Value = Client::new()
        .get(server.url("/v1/models"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "stdlib-byte");
    assert_eq!(server.health()["status"], "ok");
}

#[test]
fn streams_as_server_sent_events_read_by_curl_and_reqwest() {
    let server = Server::start(&[]);
    let mut reference = Reference::new();
    // curl: the raw event stream.
    let out = Command::new("curl")
        .args(["-sN", "-H", "content-type: application/json", "-d"])
        .arg(json!({"prompt": "for i in", "max_tokens": 16, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}).to_string())
        .arg(server.url("/v1/completions"))
        .output()
        .expect("curl runs");
    let body = String::from_utf8(out.stdout).unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, reference.completion("for i in", 16));
    assert!(chunks.len() > 3, "streamed in pieces: {body}");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 16);

    // reqwest: a streamed chat, read as it arrives.
    let response = Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "x = 1"}], "max_tokens": 10, "temperature": 0, "stream": true}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = String::new();
    BufReader::new(response).read_to_string(&mut body).unwrap();
    let data = sse_data(&body);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let content: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, reference.chat("x = 1", 10));
}

#[test]
fn bad_requests_are_400_json_errors_and_unknown_paths_404() {
    let server = Server::start(&[]);
    let raw = |path: &str, body: &str| {
        let r = Client::new()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let cases = [
        ("/v1/completions", "{not json", "invalid request body"),
        ("/v1/completions", r#"{"max_tokens": 5}"#, "prompt"),
        (
            "/v1/completions",
            r#"{"prompt": "a", "temperature": -1}"#,
            "temperature",
        ),
        ("/v1/completions", r#"{"prompt": "a", "top_p": 0}"#, "top-p"),
        (
            "/v1/completions",
            r#"{"prompt": "a", "max_tokens": 0}"#,
            "max_tokens",
        ),
        ("/v1/completions", r#"{"prompt": "a", "n": 2}"#, "n = 1"),
        (
            "/v1/completions",
            r#"{"prompt": "a", "stop": ["1","2","3","4","5"]}"#,
            "stop",
        ),
        ("/v1/completions", r#"{"prompt": [999999]}"#, "vocabulary"),
        ("/v1/completions", r#"{"prompt": []}"#, "one prompt"),
        (
            "/v1/chat/completions",
            r#"{"messages": []}"#,
            "messages is empty",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
            "image_url",
        ),
    ];
    for (path, body, says) in cases {
        let (status, json) = raw(path, body);
        assert_eq!(status, 400, "{body}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }
    let prompt = "x".repeat(600); // past the 512-position context
    let (status, json) = post(&server, "/v1/completions", json!({"prompt": prompt}));
    assert_eq!(status, 400, "{json}");
    let r = Client::new().get(server.url("/v2/nothing")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.json::<Value>().unwrap()["error"]["message"].is_string());
    // The server is unharmed.
    assert_eq!(server.health()["running"], 0);
}

#[test]
fn sixteen_concurrent_clients_each_receive_exactly_their_own_tokens() {
    let server = Server::start(&[]);
    let mut reference = Reference::new();
    let prompts: Vec<String> = (0..16)
        .map(|i| format!("def f{i}(x{}", "y".repeat(i % 5)))
        .collect();
    let want: Vec<String> = prompts
        .iter()
        .map(|p| reference.completion(p, 24))
        .collect();
    let server = Arc::new(server);
    let handles: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let server = server.clone();
            let prompt = prompt.clone();
            std::thread::spawn(move || {
                let stream = i % 2 == 1;
                let body =
                    json!({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stream": stream});
                let response = Client::new()
                    .post(server.url("/v1/completions"))
                    .json(&body)
                    .send()
                    .unwrap();
                assert_eq!(response.status().as_u16(), 200);
                if stream {
                    let text = response.text().unwrap();
                    sse_data(&text)
                        .iter()
                        .filter(|d| *d != "[DONE]")
                        .filter_map(|d| {
                            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"]
                                .as_str()
                                .map(str::to_string)
                        })
                        .collect::<String>()
                } else {
                    let v: Value = response.json().unwrap();
                    v["choices"][0]["text"].as_str().unwrap().to_string()
                }
            })
        })
        .collect();
    for (i, (h, want)) in handles.into_iter().zip(&want).enumerate() {
        assert_eq!(&h.join().unwrap(), want, "client {i}");
    }
    let h = server.health();
    assert_eq!(h["kv_blocks_free"], h["kv_blocks"], "{h}");
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_sequence() {
    let server = Server::start(&[]);
    let response = Client::new()
        .post(server.url("/v1/completions"))
        .json(&json!({"prompt": "import", "max_tokens": 480, "temperature": 0, "stream": true}))
        .send()
        .unwrap();
    let mut reader = BufReader::new(response);
    let mut line = String::new();
    let mut events = 0;
    while events < 3 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("data: ") {
            events += 1;
        }
    }
    assert_eq!(server.health()["running"], 1);
    drop(reader);
    let h = server.wait_for("the sequence is cancelled", |h| h["running"] == 0);
    assert_eq!(h["cancelled"], 1, "{h}");
    assert_eq!(h["kv_blocks_free"], h["kv_blocks"], "{h}");
}

#[test]
fn a_full_queue_answers_503() {
    let server = Arc::new(Server::start(&["--max-running", "1", "--max-waiting", "1"]));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let server = server.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("a{i}"), "max_tokens": 300, "temperature": 0});
                let r = Client::new()
                    .post(server.url("/v1/completions"))
                    .json(&body)
                    .send()
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().unwrap())
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let busy: Vec<&Value> = results
        .iter()
        .filter(|r| r.0 == 503)
        .map(|r| &r.1)
        .collect();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert!(!busy.is_empty() && ok >= 1, "{results:?}");
    assert_eq!(busy.len() + ok, 4, "{results:?}");
    assert!(
        busy[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("waiting"),
        "{busy:?}"
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let mut server = Server::start(&["--shutdown-grace", "60"]);
    let url = server.url("/v1/completions");
    let request = std::thread::spawn(move || {
        let body = json!({"prompt": "while", "max_tokens": 150, "temperature": 0});
        let r = Client::new().post(url).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    server.wait_for("the request runs", |h| h["running"] == 1);
    server.signal(libc::SIGTERM);
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["usage"]["completion_tokens"], 150,
        "finished, not cut: {body}"
    );
    assert!(server.wait_exit(), "{}", server.log.lock().unwrap());
    // Nothing listens any more.
    assert!(Client::new().get(server.url("/health")).send().is_err());
}

#[test]
fn sigint_with_no_grace_cancels_requests_in_flight() {
    let mut server = Server::start(&["--shutdown-grace", "0"]);
    let url = server.url("/v1/completions");
    let request = std::thread::spawn(move || {
        let body = json!({"prompt": "while", "max_tokens": 480, "temperature": 0});
        let r = Client::new().post(url).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    server.wait_for("the request runs", |h| h["running"] == 1);
    server.signal(libc::SIGINT);
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{body}"
    );
    assert!(server.wait_exit(), "{}", server.log.lock().unwrap());
}

#[test]
fn the_chat_template_comes_from_the_model_directory() {
    use tessera::serve::template::{ChatTemplate, Message};
    let dir = std::env::temp_dir().join(format!("tessera-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let messages = [Message::new("user", "hi")];
    // None at all.
    assert!(ChatTemplate::for_model(&dir).unwrap().is_none());
    // tokenizer_config.json: a string, with the BOS token as a {content} object.
    let config = json!({"bos_token": {"content": "<s>"}, "eos_token": "</s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::for_model(&dir).unwrap().unwrap();
    assert_eq!(t.render(&messages, true).unwrap(), "<s>[user]hi</s>");
    // A list of named templates: the default one.
    let config = json!({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ messages|length }}"}]});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::for_model(&dir).unwrap().unwrap();
    assert_eq!(t.render(&messages, true).unwrap(), "D1");
    // chat_template.jinja wins.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "J{% if add_generation_prompt %}>{% endif %}",
    )
    .unwrap();
    let t = ChatTemplate::for_model(&dir).unwrap().unwrap();
    assert_eq!(t.render(&messages, true).unwrap(), "J>");
    // A GGUF file's tokenizer.chat_template (tools/make_gguf_fixtures.py writes Qwen's
    // ChatML into this one).
    let gguf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/qwen2_bpe_q5_1.gguf");
    let t = ChatTemplate::for_model(&gguf)
        .unwrap()
        .expect("a template in the metadata");
    assert_eq!(
        t.render(&messages, true).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    // A broken one is an error naming the file.
    std::fs::write(dir.join("chat_template.jinja"), "{% if %}").unwrap();
    let err = ChatTemplate::for_model(&dir).err().unwrap().to_string();
    assert!(err.contains("chat_template.jinja"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chat_in_the_terminal_keeps_history_and_resets() {
    let template =
        std::env::temp_dir().join(format!("tessera-chat-cli-{}.jinja", std::process::id()));
    std::fs::write(&template, TEMPLATE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["chat", "--temperature", "0", "--max-tokens", "8", "--model"])
        .arg(model_dir())
        .arg("--chat-template")
        .arg(&template)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"import os\nimport sys\n/reset\nimport os\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("(history cleared)"), "{stderr}");
    // The second turn sees the first; after /reset the first question gets the first reply
    // again: each the reply the model gives the rendered conversation alone.
    let mut reference = Reference::new();
    let first = reference.chat("import os", 8);
    let second = reference.rendered(
        &format!("user: import os\nassistant: {first}\nuser: import sys\nassistant:"),
        8,
    );
    assert_eq!(stdout, format!("{first}\n{second}\n{first}\n"));
}

#[test]
fn ctrl_c_in_the_terminal_chat_stops_the_reply_not_the_chat() {
    use std::io::Write;
    let template =
        std::env::temp_dir().join(format!("tessera-chat-int-{}.jinja", std::process::id()));
    std::fs::write(&template, TEMPLATE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "chat",
            "--temperature",
            "0",
            "--max-tokens",
            "480",
            "--model",
        ])
        .arg(model_dir())
        .arg("--chat-template")
        .arg(&template)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"import os\n").unwrap();
    // Wait for the reply to start, then interrupt it.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    stdin.write_all(b"/exit\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the chat ended with {status}");
    assert!(rest.contains(" [stopped]"), "{rest}");
}
