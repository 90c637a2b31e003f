//! The web page in a real browser: serves `web/` on 127.0.0.1 (axum + tower-http's ServeDir),
//! runs headless Chromium with SwiftShader's WebGPU against the page's scripted runs, and
//! reads the lines the page logs to the console:
//! - `?run=check`: `tessera row: ...` for every case that did not pass, then
//!   `tessera check: N passed, M failed, K skipped on ADAPTER`;
//! - `?run=generate,sample`: the demo decoder's greedy tokens and the digits UNet's grid,
//!   compared with what `tessera generate` and `tessera sample` make natively.
//!
//! Needs the page built (`tools/build_web.sh` -> web/pkg) and Chromium. Without them the
//! tests say why and pass, unless `TESSERA_BROWSER_TEST=1` (CI sets it) makes them
//! required. `TESSERA_CHROMIUM` names the browser binary (default `chromium`).
use base64::Engine;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the whole check may take in the browser (about 4 minutes on 2 CPU cores).
const CHECK_LIMIT: Duration = Duration::from_secs(20 * 60);

/// How long the demo models' runs may take in the browser (well under a minute on 2 CPU
/// cores).
const MODELS_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The prompt, as ids of the demo decoder's byte-level vocabulary: BOS (256), then the
/// bytes of "def ".
const PROMPT: [u32; 5] = [256, 100, 101, 102, 32];
const MAX_TOKENS: usize = 48;
/// The digit grid: images, DDIM steps, seed.
const SAMPLE: (usize, usize, u64) = (4, 10, 3);

/// Serves `dir` on 127.0.0.1 from a thread of its own; returns the port.
fn serve(dir: &Path) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("bound").port();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let app =
                axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
            axum::serve(listener, app).await.expect("serving the page");
        });
    });
    port
}

/// Counts from the verdict line "N passed, M failed, K skipped on ADAPTER".
fn counts(verdict: &str) -> Option<(usize, usize, usize)> {
    let words: Vec<&str> = verdict.split_whitespace().collect();
    let at = |label: &str| -> Option<usize> {
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == label)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    Some((at("passed")?, at("failed")?, at("skipped")?))
}

/// The text a console line carries: Chromium logs `... "TEXT", source: URL (LINE)`.
fn console_text(line: &str) -> Option<&str> {
    let start = line.find(":CONSOLE")?;
    let rest = &line[start..];
    let open = rest.find('"')?;
    let close = rest.rfind("\", source:")?;
    rest.get(open + 1..close)
}

/// The page and the browser, or why a test cannot run (a panic when they are required).
fn page_and_browser() -> Option<(std::path::PathBuf, String)> {
    let required = std::env::var("TESSERA_BROWSER_TEST").is_ok_and(|v| v == "1");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let chromium = std::env::var("TESSERA_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let missing = if !web.join("pkg/tessera_web_bg.wasm").is_file() {
        Some("web/pkg is not built (tools/build_web.sh)".to_string())
    } else if Command::new(&chromium).arg("--version").output().is_err() {
        Some(format!(
            "{chromium} is not installed (TESSERA_CHROMIUM names another)"
        ))
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(!required, "TESSERA_BROWSER_TEST=1 but {why}");
        eprintln!("skipped: {why}");
        return None;
    }
    Some((web, chromium))
}

/// Opens the page at `query` in headless Chromium and collects the console lines the page
/// logs (those starting "tessera ") until `last` says one is the last, or `limit` passes;
/// returns the lines, and whether `last` was seen.
fn run_page(
    web: &Path,
    chromium: &str,
    query: &str,
    limit: Duration,
    last: impl Fn(&str) -> bool,
) -> (Vec<String>, bool) {
    let port = serve(web);
    let profile =
        std::env::temp_dir().join(format!("tessera-chromium-{}-{port}", std::process::id()));
    let mut browser = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--use-webgpu-adapter=swiftshader",
            "--enable-unsafe-swiftshader",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{port}/?{query}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let stderr = browser.stderr.take().expect("piped stderr");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(text) = console_text(&line)
                && text.starts_with("tessera ")
                && lines.send(text.to_string()).is_err()
            {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    let finished = loop {
        let left = limit.saturating_sub(start.elapsed());
        match received.recv_timeout(left) {
            Ok(text) => {
                let done = last(&text);
                seen.push(text);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = std::fs::remove_dir_all(&profile);
    (seen, finished)
}

#[test]
fn the_page_checks_every_f32_case_in_headless_chromium() {
    let Some((web, chromium)) = page_and_browser() else {
        return;
    };
    let (lines, _) = run_page(&web, &chromium, "run=check", CHECK_LIMIT, |text| {
        text.starts_with("tessera check: ")
    });
    let rows: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("tessera row: "))
        .map(str::to_string)
        .collect();
    let verdict = lines
        .iter()
        .find_map(|l| l.strip_prefix("tessera check: "))
        .unwrap_or_else(|| {
            panic!(
                "no verdict from the page within {CHECK_LIMIT:?}; lines seen:\n{}",
                lines.join("\n")
            )
        });
    println!("tessera check: {verdict}");
    let (passed, failed, skipped) =
        counts(verdict).unwrap_or_else(|| panic!("unreadable verdict {verdict:?}"));
    let failures: Vec<&String> = rows.iter().filter(|r| !r.starts_with("skip")).collect();
    assert_eq!(failed, 0, "failures in the browser:\n{failures:#?}");
    assert!(passed >= 500, "only {passed} cases passed: {verdict}");
    // Every f32 case runs; what skips is f16 (no shader-f16), cooperative matrices and the
    // benchmark-only sizes, each with its reason.
    let f32_skips: Vec<&String> = rows
        .iter()
        .filter(|r| r.starts_with("skip") && r.split_whitespace().nth(2) == Some("f32"))
        .filter(|r| !r.contains("benchmark only"))
        .collect();
    assert!(f32_skips.is_empty(), "f32 cases skipped:\n{f32_skips:#?}");
    assert_eq!(
        rows.iter().filter(|r| r.starts_with("skip")).count(),
        skipped,
        "every skip is logged with its reason"
    );
}

/// Runs `tessera ARGS` natively (on this machine's adapter) and returns its stdout.
fn tessera(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("running tessera");
    assert!(
        out.status.success(),
        "tessera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A grey PNG's size and pixels.
fn grey_pixels(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0u8; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut pixels).expect("one frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

#[test]
fn the_page_runs_the_demo_models_as_the_cli_does() {
    let Some((web, chromium)) = page_and_browser() else {
        return;
    };
    let tokens: Vec<String> = PROMPT.iter().map(u32::to_string).collect();
    let tokens = tokens.join(",");
    let (count, steps, seed) = SAMPLE;
    let query = format!(
        "run=generate,sample&tokens={tokens}&max_tokens={MAX_TOKENS}&count={count}\
         &steps={steps}&seed={seed}"
    );
    let (lines, finished) = run_page(&web, &chromium, &query, MODELS_LIMIT, |text| {
        text == "tessera done" || text.contains(": error: ")
    });
    let said = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} from the page; it logged:\n{lines:#?}"))
    };
    assert!(
        finished,
        "the page did not finish within {MODELS_LIMIT:?}: {lines:#?}"
    );

    // The page's greedy tokens are the CLI's, and so is their text.
    let page: serde_json::Value =
        serde_json::from_str(said("tessera generate json: ")).expect("the page's JSON");
    let native: serde_json::Value = serde_json::from_slice(&tessera(&[
        "generate",
        "--tokens",
        &tokens,
        "--temperature",
        "0",
        "--max-tokens",
        &MAX_TOKENS.to_string(),
        "--json",
    ]))
    .expect("the CLI's JSON");
    println!("page:   {}", page["text"]);
    println!("native: {}", native["text"]);
    let generated = page["tokens"].as_array().expect("tokens").len();
    assert!(generated > 8, "only {generated} tokens: {page}");
    assert_eq!(page["tokens"], native["tokens"], "greedy tokens differ");
    assert_eq!(page["text"], native["text"]);

    // The page's digit grid is the CLI's from the same seed: the same image size, and pixels
    // within a few levels (SwiftShader and lavapipe round differently over the steps).
    let grid = std::env::temp_dir().join(format!("tessera-page-grid-{}.png", std::process::id()));
    tessera(&[
        "sample",
        "--scheduler",
        "ddim",
        "--steps",
        &steps.to_string(),
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        grid.to_str().expect("a UTF-8 path"),
    ]);
    let native_png = std::fs::read(&grid).expect("the CLI's grid");
    let _ = std::fs::remove_file(&grid);
    let (width, height, native) = grey_pixels(&native_png);
    let (page_width, page_height, page) = grey_pixels(
        &base64::engine::general_purpose::STANDARD
            .decode(said("tessera sample png: "))
            .expect("the page's PNG in base64"),
    );
    assert_eq!((page_width, page_height), (width, height));
    let worst = native
        .iter()
        .zip(&page)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let lit = native.iter().filter(|&&v| v > 128).count();
    println!("digit grid {width}x{height}: worst pixel difference {worst} of 255, {lit} lit");
    assert!(lit > 0, "the native grid is blank");
    assert!(
        worst <= 4,
        "the page's grid differs by up to {worst} of 255"
    );
}
