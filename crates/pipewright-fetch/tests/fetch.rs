//! Against a real HTTP server on 127.0.0.1: good, 404, hash mismatch, slow, cache behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_config::{LoadOptions, load_str};
use pipewright_fetch::{FetchError, HttpFetcher};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const DEF: &str = "runner_type \"remote\" {\n  run {\n    path = \"kubectl\"\n  }\n}\n";

/// Serves `/ok.hcl` (DEF), `/slow.hcl` (after 3 s), `/big.hcl` (2 MiB), `/moved` (redirect to
/// an http URL off loopback) and 404 for anything else; counts requests.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let big = "#".repeat(2 << 20);
                let (status, body, extra) = match path.as_str() {
                    "/ok.hcl" => ("200 OK", DEF, String::new()),
                    "/slow.hcl" => {
                        std::thread::sleep(Duration::from_secs(3));
                        ("200 OK", DEF, String::new())
                    }
                    "/big.hcl" => ("200 OK", big.as_str(), String::new()),
                    "/moved" => (
                        "302 Found",
                        "",
                        "Location: http://example.com/ok.hcl\r\n".to_owned(),
                    ),
                    _ => ("404 Not Found", "no such file\n", String::new()),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Server { base, hits }
}

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn good_url_is_fetched_once_and_then_served_from_cache() {
    let srv = server();
    let cache = tempfile::tempdir().unwrap();
    let f = HttpFetcher::new(cache.path());
    let url = format!("{}/ok.hcl", srv.base);
    assert_eq!(f.fetch_text(&url, None).unwrap(), DEF);
    assert_eq!(f.fetch_text(&url, None).unwrap(), DEF);
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        1,
        "second fetch used the cache"
    );

    // Pinned: stored by hash, served without the network even by a fresh fetcher.
    let pin = sha(DEF);
    assert_eq!(f.fetch_text(&url, Some(&pin)).unwrap(), DEF);
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
    let offline = HttpFetcher::new(cache.path());
    let dead = "http://127.0.0.1:9/ok.hcl";
    assert_eq!(
        offline.fetch_text(dead, Some(&pin.to_uppercase())).unwrap(),
        DEF
    );
}

#[test]
fn stale_unpinned_copy_is_refetched_and_used_when_the_server_is_gone() {
    let srv = server();
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{}/ok.hcl", srv.base);
    let f = HttpFetcher::new(cache.path()).max_age(Duration::ZERO);
    f.fetch_text(&url, None).unwrap();
    f.fetch_text(&url, None).unwrap();
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        2,
        "max_age 0 fetches again"
    );
    // The same cache entry under another URL key is not shared; a dead server with a cached
    // copy of *this* URL falls back to the copy.
    let dead_cache = tempfile::tempdir().unwrap();
    let dead = "http://127.0.0.1:9/ok.hcl";
    let g = HttpFetcher::new(dead_cache.path()).max_age(Duration::ZERO);
    assert!(matches!(
        g.fetch_text(dead, None),
        Err(FetchError::Transport(_))
    ));
    std::fs::create_dir_all(dead_cache.path().join("url")).unwrap();
    std::fs::write(dead_cache.path().join("url").join(sha(dead)), DEF).unwrap();
    assert_eq!(g.fetch_text(dead, None).unwrap(), DEF);
}

#[test]
fn not_found_is_an_error_naming_the_status() {
    let srv = server();
    let cache = tempfile::tempdir().unwrap();
    let f = HttpFetcher::new(cache.path());
    let err = f
        .fetch_text(&format!("{}/missing.hcl", srv.base), None)
        .unwrap_err();
    assert!(matches!(err, FetchError::Status(s) if s.as_u16() == 404));
    assert_eq!(err.to_string(), "the server answered 404 Not Found");
    assert!(
        !cache.path().join("url").exists()
            || std::fs::read_dir(cache.path().join("url"))
                .unwrap()
                .next()
                .is_none(),
        "nothing cached"
    );
}

#[test]
fn slow_server_times_out() {
    let srv = server();
    let cache = tempfile::tempdir().unwrap();
    let f = HttpFetcher::new(cache.path()).timeout(Duration::from_millis(500));
    let err = f
        .fetch_text(&format!("{}/slow.hcl", srv.base), None)
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err}");
    assert!(err.to_string().contains("no complete answer within 500ms"));
}

#[test]
fn too_large_insecure_and_bad_redirects_are_refused() {
    let srv = server();
    let cache = tempfile::tempdir().unwrap();
    let f = HttpFetcher::new(cache.path());
    assert!(matches!(
        f.fetch_text(&format!("{}/big.hcl", srv.base), None),
        Err(FetchError::TooLarge(_))
    ));
    let err = f
        .fetch_text("http://types.example.com/a.hcl", None)
        .unwrap_err();
    assert!(err.to_string().contains("is not an https:// URL"), "{err}");
    assert!(matches!(
        f.fetch_text("ftp://127.0.0.1/a.hcl", None),
        Err(FetchError::Insecure(_))
    ));
    let err = f
        .fetch_text(&format!("{}/moved", srv.base), None)
        .unwrap_err();
    assert!(err.to_string().contains("insecure URL"), "{err}");
}

fn pipeline(url: &str, pin: Option<&str>) -> String {
    let pin = pin
        .map(|p| format!("  sha256 = \"{p}\"\n"))
        .unwrap_or_default();
    format!(
        "runner_type \"k8s\" {{\n  source = \"{url}\"\n{pin}}}\njob \"a\" {{\n  task \"t\" {{\n    run \"k8s\" {{}}\n  }}\n}}\n"
    )
}

#[test]
fn the_loader_uses_it_and_reports_a_pin_mismatch_with_both_hashes() {
    let srv = server();
    let cache = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        fetcher: Some(Arc::new(HttpFetcher::new(cache.path()))),
        ..LoadOptions::default()
    };
    let url = format!("{}/ok.hcl", srv.base);
    let ok = load_str("p.hcl", &pipeline(&url, Some(&sha(DEF))), &opts).unwrap();
    assert_eq!(
        ok.pipeline.runner_types["k8s"].run.as_ref().unwrap().path,
        "kubectl"
    );

    let wrong = "0".repeat(64);
    let err = load_str("p.hcl", &pipeline(&url, Some(&wrong)), &opts).unwrap_err();
    let text = err.render(false);
    assert!(text.contains("does not match its pinned sha256"), "{text}");
    assert!(text.contains(&wrong) && text.contains(&sha(DEF)), "{text}");
    assert!(
        !cache.path().join("sha256").join(&wrong).exists(),
        "a mismatching download is not cached"
    );

    let err = load_str(
        "p.hcl",
        &pipeline(&format!("{}/gone.hcl", srv.base), None),
        &opts,
    )
    .unwrap_err();
    let text = err.render(false);
    assert!(text.contains("the server answered 404 Not Found"), "{text}");
    assert!(
        text.contains("p.hcl:2:"),
        "points at the source line: {text}"
    );
}

/// Four type definitions by URL are fetched at once: the server answers only when all four
/// requests are in flight (or after 10 s), so one-after-another fetching sees at most one.
#[test]
fn the_loader_fetches_every_url_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (f, m) = (in_flight.clone(), most.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (f, m) = (f.clone(), m.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                        break;
                    }
                }
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                for _ in 0..200 {
                    if f.load(Ordering::SeqCst) >= 4 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let name = first
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/x")
                    .trim_start_matches('/')
                    .trim_end_matches(".hcl")
                    .to_owned();
                let body =
                    format!("runner_type \"{name}\" {{\n  run {{\n    path = \"true\"\n  }}\n}}\n");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let mut src = String::new();
    for n in ["r1", "r2", "r3", "r4"] {
        src.push_str(&format!(
            "runner_type \"{n}\" {{\n  source = \"{base}/{n}.hcl\"\n}}\n"
        ));
    }
    src.push_str("job \"a\" {\n  task \"t\" {\n    run \"r1\" {}\n  }\n}\n");
    let cache = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        fetcher: Some(Arc::new(HttpFetcher::new(cache.path()))),
        ..LoadOptions::default()
    };
    let loaded = load_str("p.hcl", &src, &opts)
        .map_err(|e| e.render(false))
        .unwrap();
    assert_eq!(loaded.pipeline.runner_types.len(), 4);
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "the fetches did not overlap"
    );
}
