//! Serving: many sequences at once. [`engine`] batches them continuously over a paged KV
//! cache on a thread of its own ([`worker`]); [`http`] puts OpenAI's API in front of it, with
//! the model's chat [`template`] and [`stops`] strings applied to the streamed text.

pub mod engine;
pub mod http;
pub mod stops;
pub mod template;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use engine::{Engine, EngineOptions, Event, FinishReason, Request, Sink, StepReport};

use crate::error::{Error, Result};
use crate::io::Tokenizer;
use template::ChatTemplate;

/// Where and how the server listens.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// The model id `/v1/models` lists.
    pub model_name: String,
    /// Tokens generated when a request does not say.
    pub default_max_tokens: usize,
    /// How long requests in flight may run on after SIGINT/SIGTERM before they are cancelled.
    pub shutdown_grace: Duration,
}

/// Serves `engine` until SIGINT or SIGTERM, then stops taking requests, lets those in flight
/// finish for the grace period (cancelling the rest) and returns. `ready` hears the address
/// once the socket listens.
pub fn run(
    engine: Engine,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    options: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    let context = engine.model().capacity();
    let thread = worker::EngineThread::spawn(engine)?;
    let state = Arc::new(http::ServerState::new(
        thread.handle(),
        tokenizer,
        template,
        options.model_name.clone(),
        context,
        options.default_max_tokens,
    ));
    let address = format!("{}:{}", options.host, options.port);
    let grace = options.shutdown_grace;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on {address}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Invalid(format!("cannot listen on {address}: {e}")))?;
        ready(local);
        let draining = state.clone();
        let shutdown = async move {
            shutdown_signal().await;
            draining.draining.store(true, Ordering::Relaxed);
            draining.engine.drain(grace);
        };
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Invalid(format!("the server failed: {e}")))
    });
    // The tasks left (none once every response ended) go with the runtime, and with them the
    // last handles on the engine thread, which then ends.
    drop(runtime);
    thread.shutdown(grace);
    served
}

/// Resolves at SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
