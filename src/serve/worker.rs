//! The engine on a thread of its own (it owns the GPU work), driven through a channel: the
//! HTTP handlers submit requests and cancel them; a drain stops new admissions, lets the
//! requests in flight finish for a grace period and cancels what is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::models::kv_blocks::SeqId;

use super::engine::{Engine, Request, Sink};

enum Command {
    Submit {
        request: Request,
        sink: Sink,
        reply: tokio::sync::oneshot::Sender<Result<SeqId>>,
    },
    Cancel(SeqId),
    /// Refuse new requests; cancel those still running after `grace`.
    Drain(Duration),
}

/// A handle on the engine thread (cheap to clone).
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    stats: Arc<EngineStats>,
}

/// The engine's load, as of its latest step (`/health` reports it).
#[derive(Debug, Default)]
pub struct EngineStats {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub free_blocks: AtomicUsize,
    pub blocks: AtomicUsize,
    pub cancelled: AtomicUsize,
}

impl EngineStats {
    fn update(&self, engine: &Engine) {
        let blocks = engine.cache().blocks();
        self.running.store(engine.running(), Ordering::Relaxed);
        self.waiting.store(engine.waiting(), Ordering::Relaxed);
        self.free_blocks
            .store(blocks.free_blocks(), Ordering::Relaxed);
        self.blocks.store(blocks.blocks(), Ordering::Relaxed);
        self.cancelled.store(engine.cancelled(), Ordering::Relaxed);
    }
}

/// The engine thread; dropping every handle after a drain ends it.
pub struct EngineThread {
    handle: EngineHandle,
    thread: JoinHandle<()>,
}

impl EngineThread {
    pub fn spawn(engine: Engine) -> Result<EngineThread> {
        let (commands, inbox) = mpsc::channel();
        let stats = Arc::new(EngineStats::default());
        stats.update(&engine);
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("tessera-engine".into())
            .spawn(move || run(engine, inbox, &shared))
            .map_err(|e| Error::Invalid(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineThread {
            handle: EngineHandle { commands, stats },
            thread,
        })
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Drains (see [`EngineHandle::drain`]) and waits for the thread to end.
    pub fn shutdown(self, grace: Duration) {
        self.handle.drain(grace);
        drop(self.handle);
        let _ = self.thread.join();
    }
}

impl EngineHandle {
    /// The engine's load as of its latest step.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Queues `request`; `Err` as [`Engine::submit`] gives it, or busy while draining.
    pub async fn submit(&self, request: Request, sink: Sink) -> Result<SeqId> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || Error::Busy("the engine has stopped".into());
        self.commands
            .send(Command::Submit {
                request,
                sink,
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Ends request `id` (its sink hears `Cancelled`) and frees its blocks.
    pub fn cancel(&self, id: SeqId) {
        let _ = self.commands.send(Command::Cancel(id));
    }

    /// Refuses new requests from now on, lets those in flight finish for `grace`, then
    /// cancels the rest.
    pub fn drain(&self, grace: Duration) {
        let _ = self.commands.send(Command::Drain(grace));
    }
}

fn run(mut engine: Engine, inbox: mpsc::Receiver<Command>, stats: &EngineStats) {
    let mut deadline: Option<Instant> = None;
    let handle =
        |engine: &mut Engine, command: Command, deadline: &mut Option<Instant>| match command {
            Command::Submit {
                request,
                sink,
                reply,
            } => {
                let result = match deadline {
                    Some(_) => Err(Error::Busy("the server is shutting down".into())),
                    None => engine.submit(request, sink),
                };
                let _ = reply.send(result);
            }
            Command::Cancel(id) => {
                engine.cancel(id);
            }
            Command::Drain(grace) => {
                let until = Instant::now() + grace;
                *deadline = Some(deadline.map_or(until, |d| d.min(until)));
            }
        };
    loop {
        if engine.is_idle() {
            // Nothing to run: wait for a command (or, draining, for the last handle to go).
            match inbox.recv() {
                Ok(command) => handle(&mut engine, command, &mut deadline),
                Err(_) => return,
            }
        }
        while let Ok(command) = inbox.try_recv() {
            handle(&mut engine, command, &mut deadline);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            engine.cancel_all();
        }
        if !engine.is_idle()
            && let Err(e) = engine.step()
        {
            // The sequences of the failed step heard the error; the others carry on.
            eprintln!("tessera serve: a batched step failed: {e}");
        }
        stats.update(&engine);
    }
}
