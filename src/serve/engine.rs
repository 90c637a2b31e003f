//! Continuous batching: a scheduler that keeps one running batch of sequences on a paged KV
//! cache and, between steps, admits waiting requests, feeds prompts in chunks beside the
//! running decodes (so a long prompt never stalls the others), samples each sequence's next
//! token, and retires the finished ones, whose blocks are free at once.
//!
//! Memory: a request is admitted only when the pool can hold all it may grow to (prompt plus
//! `max_tokens`, within the context); until then it waits in order. So a running sequence
//! never runs out of blocks and nothing is preempted, dropped or overwritten. A request that
//! could not fit even an empty pool is refused when submitted.

use std::collections::VecDeque;

use crate::error::{Error, Result, require_finite};
use crate::models::kv_blocks::SeqId;
use crate::models::llama::{Chunk, Llama, PagedCache, PagedOptions};
use crate::models::sampling::{Sampler, SamplerConfig};

/// How the scheduler batches.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Sequences in the running batch at most.
    pub max_running: usize,
    /// Prompt tokens fed per step at most, over all sequences still reading their prompts.
    pub chunk_tokens: usize,
    /// Requests waiting for admission at most; more are refused ([`Error::Busy`]).
    pub max_waiting: usize,
    pub paged: PagedOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_running: 16,
            chunk_tokens: 64,
            max_waiting: 64,
            paged: PagedOptions::default(),
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop after a token from the model's `eos_token_id`.
    pub stop_at_eos: bool,
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    MaxTokens,
    /// The context (the model's positions) is full.
    Context,
    /// The caller cancelled it, or stopped listening.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::MaxTokens => "max_tokens",
            FinishReason::Context => "context",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What a request's listener hears.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Token(u32),
    Finished {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// The step running the sequence failed (a GPU error, non-finite logits); it is gone.
    Failed(String),
}

/// Receives a request's events; returning `false` says nobody listens any more, which
/// cancels the request and frees its blocks.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

struct Seq {
    id: SeqId,
    request: Request,
    sampler: Sampler,
    sink: Sink,
    /// Prompt tokens in the cache so far.
    fed: usize,
    generated: usize,
    /// The latest sampled token, fed at the next step.
    pending: Option<u32>,
    /// Blocks it may grow to.
    need: usize,
}

/// What a step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Sequences the step ran (decoding and prefilling).
    pub sequences: usize,
    /// Rows of the step: decode tokens plus prompt tokens.
    pub rows: usize,
    /// Tokens sampled.
    pub sampled: usize,
    pub admitted: usize,
    pub retired: usize,
}

/// The scheduler and its model.
pub struct Engine {
    model: Llama,
    cache: PagedCache,
    options: EngineOptions,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    next_id: SeqId,
    cancelled: usize,
}

impl Engine {
    pub fn new(model: Llama, options: EngineOptions) -> Result<Engine> {
        if options.max_running == 0 || options.chunk_tokens == 0 {
            return Err(Error::Invalid(
                "the engine needs room for at least one sequence and one prompt token per step"
                    .into(),
            ));
        }
        let cache = model.paged_cache(options.paged)?;
        Ok(Engine {
            model,
            cache,
            options,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 0,
            cancelled: 0,
        })
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }

    pub fn cache(&self) -> &PagedCache {
        &self.cache
    }

    /// Requests waiting for admission.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences in the running batch.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Requests cancelled so far (by the caller, or by a listener that went away).
    pub fn cancelled(&self) -> usize {
        self.cancelled
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Queues `request`; its events go to `sink`. `Err` for a request that is malformed or
    /// could never fit the cache, and [`Error::Busy`] when the queue is full.
    pub fn submit(&mut self, request: Request, sink: Sink) -> Result<SeqId> {
        let model = &self.model;
        if request.prompt.is_empty() {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        }
        if request.max_tokens == 0 {
            return Err(Error::Invalid("max_tokens must be at least 1".into()));
        }
        model.check_prompt(&request.prompt)?;
        let capacity = model.capacity();
        if request.prompt.len() >= capacity {
            return Err(Error::Invalid(format!(
                "a prompt of {} tokens leaves no room to generate in the context of {capacity}",
                request.prompt.len()
            )));
        }
        let sampler = Sampler::new(request.sampler)?;
        let positions = (request.prompt.len() + request.max_tokens).min(capacity);
        let blocks = self.cache.blocks();
        let need = blocks.blocks_for(positions);
        if need > blocks.blocks() {
            return Err(Error::Invalid(format!(
                "a request of up to {positions} positions needs {need} KV blocks; the cache \
                 has {} (ask for fewer tokens, or give the cache more blocks)",
                blocks.blocks()
            )));
        }
        if self.waiting.len() >= self.options.max_waiting {
            return Err(Error::Busy(format!(
                "{} requests are already waiting",
                self.waiting.len()
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Seq {
            id,
            request,
            sampler,
            sink,
            fed: 0,
            generated: 0,
            pending: None,
            need,
        });
        Ok(id)
    }

    /// Ends request `id` wherever it is (its listener hears `Cancelled`); `false` if no such
    /// request is waiting or running.
    pub fn cancel(&mut self, id: SeqId) -> bool {
        if let Some(at) = self.waiting.iter().position(|s| s.id == id) {
            let seq = self.waiting.remove(at).expect("found");
            self.finish(seq, FinishReason::Cancelled);
            return true;
        }
        if let Some(at) = self.running.iter().position(|s| s.id == id) {
            let seq = self.running.remove(at);
            self.finish(seq, FinishReason::Cancelled);
            return true;
        }
        false
    }

    /// Cancels every request (shutdown).
    pub fn cancel_all(&mut self) {
        let ids: Vec<SeqId> = self
            .waiting
            .iter()
            .chain(&self.running)
            .map(|s| s.id)
            .collect();
        for id in ids {
            self.cancel(id);
        }
    }

    /// Blocks the running sequences may still take.
    fn promised(&self) -> usize {
        let blocks = self.cache.blocks();
        self.running
            .iter()
            .map(|s| s.need.saturating_sub(blocks.table(s.id).len()))
            .sum()
    }

    /// Moves waiting requests into the running batch, in order, while there is room.
    fn admit(&mut self) -> usize {
        let mut admitted = 0;
        while self.running.len() < self.options.max_running {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let free = self.cache.blocks().free_blocks();
            if front.need > free.saturating_sub(self.promised()) {
                break;
            }
            let seq = self.waiting.pop_front().expect("front exists");
            self.running.push(seq);
            admitted += 1;
        }
        admitted
    }

    /// One step: admit, run every running sequence's next rows in one forward pass, sample,
    /// retire. `Ok` with `sequences == 0` when there was nothing to run. A failed step fails
    /// (and frees) the sequences it ran and returns the error.
    pub fn step(&mut self) -> Result<StepReport> {
        let mut report = StepReport {
            admitted: self.admit(),
            ..StepReport::default()
        };
        if self.running.is_empty() {
            return Ok(report);
        }
        // Decode rows first, then prompt chunks within the step's prompt budget.
        let mut budget = self.options.chunk_tokens;
        let mut plan: Vec<(usize, usize, bool)> = Vec::new(); // (seq index, tokens, logits)
        for (i, s) in self.running.iter().enumerate() {
            if s.pending.is_some() {
                plan.push((i, 1, true));
            }
        }
        for (i, s) in self.running.iter().enumerate() {
            let left = s.request.prompt.len() - s.fed;
            if s.pending.is_none() && left > 0 && budget > 0 {
                let n = left.min(budget);
                budget -= n;
                plan.push((i, n, n == left));
            }
        }
        let pending: Vec<[u32; 1]> = self
            .running
            .iter()
            .map(|s| [s.pending.unwrap_or(0)])
            .collect();
        let chunks: Vec<Chunk<'_>> = plan
            .iter()
            .map(|&(i, n, logits)| {
                let s = &self.running[i];
                let tokens: &[u32] = match s.pending {
                    Some(_) => &pending[i],
                    None => &s.request.prompt[s.fed..s.fed + n],
                };
                Chunk {
                    seq: s.id,
                    tokens,
                    logits,
                }
            })
            .collect();
        report.sequences = chunks.len();
        report.rows = chunks.iter().map(|c| c.tokens.len()).sum();
        let logits = match self.model.forward_batch(&mut self.cache, &chunks) {
            Ok(logits) => logits,
            Err(e) => {
                for s in std::mem::take(&mut self.running) {
                    self.fail(s, &e);
                }
                return Err(e);
            }
        };
        drop(chunks);

        // Advance each sequence; sample where the step gave logits.
        let mut logits = logits.into_iter();
        let mut finished: Vec<(usize, FinishReason)> = Vec::new();
        let mut failed: Vec<(usize, Error)> = Vec::new();
        for &(i, n, has_logits) in &plan {
            let capacity = self.model.capacity();
            let eos = &self.model.config().eos_token_ids;
            let s = &mut self.running[i];
            if s.pending.take().is_none() {
                s.fed += n;
            }
            if !has_logits {
                continue;
            }
            let row = logits.next().expect("one row per chunk asking");
            let token = match sample(&mut s.sampler, &row, s.generated) {
                Ok(t) => t,
                Err(e) => {
                    failed.push((i, e));
                    continue;
                }
            };
            s.generated += 1;
            report.sampled += 1;
            let listening = (s.sink)(Event::Token(token));
            let reason = if !listening {
                Some(FinishReason::Cancelled)
            } else if s.request.stop_at_eos && eos.contains(&(token as usize)) {
                Some(FinishReason::Eos)
            } else if s.generated >= s.request.max_tokens {
                Some(FinishReason::MaxTokens)
            } else if self.cache.len(s.id) >= capacity {
                Some(FinishReason::Context)
            } else {
                s.pending = Some(token);
                None
            };
            if let Some(reason) = reason {
                finished.push((i, reason));
            }
        }
        // Retire from the back so the indices stay valid.
        let mut ends: Vec<(usize, std::result::Result<FinishReason, Error>)> = finished
            .into_iter()
            .map(|(i, r)| (i, Ok(r)))
            .chain(failed.into_iter().map(|(i, e)| (i, Err(e))))
            .collect();
        ends.sort_by_key(|e| std::cmp::Reverse(e.0));
        report.retired = ends.len();
        for (i, end) in ends {
            let seq = self.running.remove(i);
            match end {
                Ok(reason) => self.finish(seq, reason),
                Err(e) => self.fail(seq, &e),
            }
        }
        Ok(report)
    }

    /// Steps until no request is left.
    pub fn run_until_idle(&mut self) -> Result<()> {
        while !self.is_idle() {
            self.step()?;
        }
        Ok(())
    }

    fn finish(&mut self, mut seq: Seq, reason: FinishReason) {
        self.cache.release(seq.id);
        if reason == FinishReason::Cancelled {
            self.cancelled += 1;
        }
        (seq.sink)(Event::Finished {
            reason,
            prompt_tokens: seq.request.prompt.len(),
            completion_tokens: seq.generated,
        });
    }

    fn fail(&mut self, mut seq: Seq, error: &Error) {
        self.cache.release(seq.id);
        (seq.sink)(Event::Failed(error.to_string()));
    }
}

/// The next token of a sequence whose `step`-th generated token `logits` choose.
fn sample(sampler: &mut Sampler, logits: &[f32], step: usize) -> Result<u32> {
    require_finite(logits, || {
        format!("the logits of generation step {step} (the weights or the config are broken)")
    })?;
    sampler.sample(logits)
}
