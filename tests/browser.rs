//! The web page in a real browser: serves `web/` on 127.0.0.1 (axum + tower-http's ServeDir),
//! runs headless Chromium with SwiftShader's WebGPU against `?run=check`, and reads the lines
//! the page logs to the console (`tessera row: ...` for every case that did not pass, then
//! `tessera check: N passed, M failed, K skipped on ADAPTER`).
//!
//! Needs the page built (`tools/build_web.sh` -> web/pkg) and Chromium. Without them the
//! test says why and passes, unless `TESSERA_BROWSER_TEST=1` (CI sets it) makes them
//! required. `TESSERA_CHROMIUM` names the browser binary (default `chromium`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the whole check may take in the browser (about 4 minutes on 2 CPU cores).
const CHECK_LIMIT: Duration = Duration::from_secs(20 * 60);

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

#[test]
fn the_page_checks_every_f32_case_in_headless_chromium() {
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
        return;
    }

    let port = serve(&web);
    let profile = std::env::temp_dir().join(format!("tessera-chromium-{}", std::process::id()));
    let mut browser = Command::new(&chromium)
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
        .arg(format!("http://127.0.0.1:{port}/?run=check"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let stderr = browser.stderr.take().expect("piped stderr");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(text) = console_text(&line)
                && lines.send(text.to_string()).is_err()
            {
                break;
            }
        }
    });

    let start = Instant::now();
    let mut rows = Vec::new();
    let verdict = loop {
        let left = CHECK_LIMIT.saturating_sub(start.elapsed());
        match received.recv_timeout(left) {
            Ok(text) => {
                if let Some(row) = text.strip_prefix("tessera row: ") {
                    rows.push(row.to_string());
                } else if let Some(verdict) = text.strip_prefix("tessera check: ") {
                    break Some(verdict.to_string());
                }
            }
            Err(_) => break None,
        }
    };
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = std::fs::remove_dir_all(&profile);

    let verdict = verdict.unwrap_or_else(|| {
        panic!(
            "no verdict from the page within {CHECK_LIMIT:?}; rows seen:\n{}",
            rows.join("\n")
        )
    });
    println!("tessera check: {verdict}");
    let (passed, failed, skipped) =
        counts(&verdict).unwrap_or_else(|| panic!("unreadable verdict {verdict:?}"));
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
