//! Continuous batching on the decoder fixtures: every sequence of a batch generates exactly
//! the tokens it generates alone, whatever joins or leaves the batch around it; the scheduler
//! admits, retires and makes requests wait for the KV pool.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tessera::models::kv_blocks::SeqId;
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions, PagedOptions};
use tessera::models::sampling::SamplerConfig;
use tessera::rng::Rng;
use tessera::serve::{Engine, EngineOptions, Event, FinishReason, Request, Sink};
use tessera::{DType, Error, Gpu};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(gpu: &Gpu, dir: &Path) -> Llama {
    let options = LoadOptions {
        dtype: DType::F32,
        max_context: Some(128),
        ..LoadOptions::default()
    };
    Llama::load(gpu, dir, &options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// `n` prompts of different lengths (1 to 40 tokens) and token budgets.
fn requests(model: &Llama, n: usize, seed: u64) -> Vec<Request> {
    let vocab = model.config().vocab_size as u64;
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = [1, 40, 7, 16, 17, 3, 29, 11][i % 8];
            Request {
                prompt: (0..len).map(|_| (rng.next_u64() % vocab) as u32).collect(),
                max_tokens: 4 + (i * 5) % 17,
                sampler: SamplerConfig::default(),
                stop_at_eos: true,
            }
        })
        .collect()
}

/// The tokens `request` generates alone (the single-sequence path).
fn alone(model: &mut Llama, request: &Request) -> Vec<u32> {
    let options = GenerateOptions {
        max_tokens: request.max_tokens,
        stop_at_eos: request.stop_at_eos,
        sampler: request.sampler,
        ..GenerateOptions::default()
    };
    model
        .generate(&request.prompt, &options, |_| Ok(()))
        .unwrap()
        .tokens
}

/// A sink that records what it hears.
fn recorder() -> (Sink, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let sink: Sink = Box::new(move |e| {
        log.lock().unwrap().push(e);
        true
    });
    (sink, events)
}

fn tokens_of(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Token(t) => Some(*t),
            _ => None,
        })
        .collect()
}

fn finish_of(events: &[Event]) -> Option<FinishReason> {
    events.iter().find_map(|e| match e {
        Event::Finished { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// Submits every request, each with a recorder; returns their logs.
fn submit_all(engine: &mut Engine, requests: &[Request]) -> Vec<Arc<Mutex<Vec<Event>>>> {
    requests
        .iter()
        .map(|r| {
            let (sink, log) = recorder();
            engine.submit(r.clone(), sink).unwrap();
            log
        })
        .collect()
}

/// Runs `requests` through an engine, request `i` submitted before step `i · join_every`,
/// and returns each one's events.
fn batched(
    model: Llama,
    requests: &[Request],
    options: EngineOptions,
    join_every: usize,
) -> (Vec<Vec<Event>>, Engine) {
    let mut engine = Engine::new(model, options).unwrap();
    let mut logs = Vec::new();
    let mut next = 0;
    let mut step = 0;
    while next < requests.len() || !engine.is_idle() {
        while next < requests.len() && next * join_every <= step {
            let (sink, log) = recorder();
            engine.submit(requests[next].clone(), sink).unwrap();
            logs.push(log);
            next += 1;
        }
        engine.step().unwrap();
        step += 1;
        assert!(step < 10_000, "the engine does not finish");
    }
    let events = logs
        .into_iter()
        .map(|l| l.lock().unwrap().clone())
        .collect();
    (events, engine)
}

#[test]
fn every_sequence_of_a_batch_of_1_3_and_8_generates_what_it_generates_alone() {
    let gpu = common::gpu();
    for dir in common::decoder_fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for (n, join_every, chunk) in [(1, 0, 64), (3, 2, 5), (8, 1, 16)] {
            let mut model = load(&gpu, &dir);
            let requests = requests(&model, n, 7 + n as u64);
            let want: Vec<Vec<u32>> = requests.iter().map(|r| alone(&mut model, r)).collect();
            let options = EngineOptions {
                chunk_tokens: chunk,
                ..EngineOptions::default()
            };
            let (events, engine) = batched(model, &requests, options, join_every);
            for (i, (got, want)) in events.iter().zip(&want).enumerate() {
                assert_eq!(&tokens_of(got), want, "{name}: batch of {n}, sequence {i}");
                assert!(finish_of(got).is_some(), "{name}: {i} finished: {got:?}");
            }
            // Every block is back in the pool.
            let blocks = engine.cache().blocks();
            assert_eq!(blocks.free_blocks(), blocks.blocks(), "{name}");
        }
        eprintln!("{name}: batches of 1, 3 and 8 match their sequences alone");
    }
}

#[test]
fn requests_are_admitted_between_steps_up_to_the_running_limit() {
    let gpu = common::gpu();
    let model = load(&gpu, &fixture("llama_gqa"));
    let requests = requests(&model, 3, 1);
    let options = EngineOptions {
        max_running: 2,
        ..EngineOptions::default()
    };
    let mut engine = Engine::new(model, options).unwrap();
    let logs = submit_all(&mut engine, &requests);
    let first = engine.step().unwrap();
    assert_eq!(
        (first.admitted, engine.running(), engine.waiting()),
        (2, 2, 1)
    );
    // The third joins in the step after one of the first two retires.
    let mut admitted_late = false;
    while !engine.is_idle() {
        let retired_before = engine.running() < 2;
        let report = engine.step().unwrap();
        if report.admitted == 1 {
            assert!(retired_before, "admitted while the batch was full");
            admitted_late = true;
        }
    }
    assert!(admitted_late);
    assert!(logs.iter().all(|l| finish_of(&l.lock().unwrap()).is_some()));
}

#[test]
fn a_finished_sequence_frees_its_blocks_in_the_step_it_retires() {
    let gpu = common::gpu();
    let model = load(&gpu, &fixture("llama_gqa"));
    let mut short = requests(&model, 1, 3).remove(0);
    short.max_tokens = 2;
    short.stop_at_eos = false;
    let mut long = short.clone();
    long.max_tokens = 20;
    let mut engine = Engine::new(model, EngineOptions::default()).unwrap();
    let total = engine.cache().blocks().blocks();
    let (sink, short_log) = recorder();
    let short_id: SeqId = engine.submit(short, sink).unwrap();
    let (sink, _) = recorder();
    engine.submit(long, sink).unwrap();
    while finish_of(&short_log.lock().unwrap()).is_none() {
        engine.step().unwrap();
    }
    assert_eq!(engine.running(), 1);
    let blocks = engine.cache().blocks();
    assert!(blocks.table(short_id).is_empty());
    assert_eq!(
        blocks.free_blocks(),
        total - blocks.table(short_id + 1).len()
    );
    assert_eq!(
        finish_of(&short_log.lock().unwrap()),
        Some(FinishReason::MaxTokens)
    );
    engine.run_until_idle().unwrap();
    assert_eq!(engine.cache().blocks().free_blocks(), total);
}

#[test]
fn a_full_pool_makes_a_request_wait_not_fail() {
    let gpu = common::gpu();
    let dir = fixture("qwen2_bias");
    let mut model = load(&gpu, &dir);
    let mut requests = requests(&model, 3, 5);
    for r in &mut requests {
        r.max_tokens = 12;
        r.prompt.truncate(20);
    }
    let want: Vec<Vec<u32>> = requests.iter().map(|r| alone(&mut model, r)).collect();
    // 4 blocks of 8 positions: each request may grow to 32 positions = 4 blocks, so one at
    // a time fits although three may run.
    let options = EngineOptions {
        paged: PagedOptions {
            block_size: 8,
            blocks: Some(4),
        },
        ..EngineOptions::default()
    };
    let mut engine = Engine::new(model, options).unwrap();
    let logs = submit_all(&mut engine, &requests);
    engine.step().unwrap();
    assert_eq!((engine.running(), engine.waiting()), (1, 2));
    engine.run_until_idle().unwrap();
    for (i, (log, want)) in logs.iter().zip(&want).enumerate() {
        assert_eq!(&tokens_of(&log.lock().unwrap()), want, "request {i}");
    }
    // A request for no tokens is refused.
    let mut none = requests[0].clone();
    none.max_tokens = 0;
    let (sink, _) = recorder();
    let err = engine.submit(none, sink).unwrap_err().to_string();
    assert!(err.contains("max_tokens"), "{err}");
    // A request that could not fit even the empty pool is refused, not queued for ever.
    let mut huge = requests[0].clone();
    huge.max_tokens = 100;
    let (sink, _) = recorder();
    let err = engine.submit(huge, sink).unwrap_err().to_string();
    assert!(err.contains("KV blocks"), "{err}");
}

#[test]
fn a_full_queue_is_busy_and_a_deaf_listener_cancels_its_request() {
    let gpu = common::gpu();
    let model = load(&gpu, &fixture("llama_gqa"));
    let requests = requests(&model, 3, 9);
    let options = EngineOptions {
        max_waiting: 2,
        ..EngineOptions::default()
    };
    let mut engine = Engine::new(model, options).unwrap();
    for r in &requests[..2] {
        let (sink, _) = recorder();
        engine.submit(r.clone(), sink).unwrap();
    }
    let (sink, _) = recorder();
    match engine.submit(requests[2].clone(), sink) {
        Err(Error::Busy(_)) => {}
        other => panic!("expected busy, got {other:?}"),
    }
    engine.cancel_all();
    assert!(engine.is_idle());
    // A listener that hangs up after its first token.
    let heard = Arc::new(Mutex::new(0));
    let count = heard.clone();
    let mut long = requests[0].clone();
    long.max_tokens = 30;
    long.stop_at_eos = false;
    engine
        .submit(
            long,
            Box::new(move |_| {
                *count.lock().unwrap() += 1;
                false
            }),
        )
        .unwrap();
    engine.run_until_idle().unwrap();
    // One token, then the finish it no longer hears.
    assert_eq!(*heard.lock().unwrap(), 2);
    let blocks = engine.cache().blocks();
    assert_eq!(blocks.free_blocks(), blocks.blocks());
}
