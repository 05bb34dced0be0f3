//! The built-in resources against real git repositories, directories and tarballs.
#![allow(clippy::unwrap_used)]

use pipewright_core::{Ctx, Params, Resource, Version};
use pipewright_resources::*;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Ada",
            "-c",
            "user.email=ada@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(repo: &Path, file: &str, text: &str, msg: &str) -> String {
    let p = repo.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", msg]);
    git(repo, &["rev-parse", "HEAD"])
}

fn git_params(url: &str, extra: &[(&str, serde_json::Value)]) -> Params {
    let mut p = Params::new();
    p.insert("url", url);
    for (k, v) in extra {
        p.insert(*k, v.clone());
    }
    p
}

fn refs(vs: &[Version]) -> Vec<String> {
    vs.iter()
        .map(|v| v.get("ref").unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn git_check_returns_new_commits_oldest_first_with_path_filters() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    let c1 = commit(&repo, "src/a.rs", "1", "first");
    let url = repo.display().to_string();
    let cache = dir.path().join("cache");
    let all =
        GitResource::from_params(&git_params(&url, &[("branch", "main".into())]), &cache).unwrap();
    let src_only =
        GitResource::from_params(&git_params(&url, &[("paths", vec!["src"].into())]), &cache)
            .unwrap();
    let ctx = Ctx::new();

    // The first check returns only the newest commit.
    let first = all.check(&ctx, None).await.unwrap();
    assert_eq!(refs(&first), [c1]);

    let c2 = commit(&repo, "src/a.rs", "2", "second");
    let c3 = commit(&repo, "docs/readme.md", "3", "docs only");
    let c4 = commit(&repo, "src/b.rs", "4", "fourth");
    let next = all.check(&ctx, Some(&first[0])).await.unwrap();
    assert_eq!(
        refs(&next),
        [c2.clone(), c3.clone(), c4.clone()],
        "oldest first"
    );
    let filtered = src_only.check(&ctx, Some(&first[0])).await.unwrap();
    assert_eq!(
        refs(&filtered),
        [c2.clone(), c4.clone()],
        "docs-only commit skipped"
    );
    // Nothing new: nothing returned.
    assert!(all.check(&ctx, Some(&next[2])).await.unwrap().is_empty());

    // History rewritten under the last version: start over from the newest.
    git(&repo, &["reset", "-q", "--hard", &c2]);
    let c5 = commit(&repo, "src/c.rs", "5", "rewritten");
    let after_rewrite = all.check(&ctx, Some(&next[2])).await.unwrap();
    assert_eq!(refs(&after_rewrite), [c5]);

    // get: the exact commit, with metadata.
    let dest = dir.path().join("ws/app");
    std::fs::create_dir_all(&dest).unwrap();
    let meta = all.get(&ctx, &next[0], &dest).await.unwrap();
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), c2);
    assert_eq!(std::fs::read_to_string(dest.join("src/a.rs")).unwrap(), "2");
    assert!(!dest.join("src/b.rs").exists());
    assert_eq!(meta.get("author"), Some("Ada <ada@example.com>"));
    assert_eq!(meta.get("message"), Some("second"));
}

#[tokio::test(flavor = "multi_thread")]
async fn git_tags_and_put_to_a_bare_remote() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("remote.git");
    std::fs::create_dir(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    let work = dir.path().join("work");
    git(
        dir.path(),
        &["clone", "-q", &bare.display().to_string(), "work"],
    );
    commit(&work, "a", "1", "one");
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git(&work, &["tag", "v1.0.0"]);
    git(&work, &["push", "-q", "origin", "v1.0.0"]);

    let url = bare.display().to_string();
    let url = url.as_str();
    let cache = dir.path().join("cache");
    let tags =
        GitResource::from_params(&git_params(url, &[("tag_filter", "v*".into())]), &cache).unwrap();
    let ctx = Ctx::new();
    let first = tags.check(&ctx, None).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].get("tag"), Some("v1.0.0"));

    // put: a workspace clone commits, pushes to main and tags.
    let res =
        GitResource::from_params(&git_params(url, &[("branch", "main".into())]), &cache).unwrap();
    let ws = dir.path().join("ws");
    git(dir.path(), &["clone", "-q", url, "ws"]);
    let sha = commit(&ws, "b", "2", "two");
    let mut p = Params::new();
    p.insert("tag", "v1.1.0");
    let produced = res.put(&ctx, &ws, &p).await.unwrap();
    assert_eq!(produced[0].get("ref"), Some(sha.as_str()));
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), sha);
    let next = tags.check(&ctx, Some(&first[0])).await.unwrap();
    assert_eq!(
        next.iter()
            .map(|v| v.get("tag").unwrap())
            .collect::<Vec<_>>(),
        ["v1.1.0"]
    );

    // A concurrent push makes a plain put fail and a rebasing put succeed.
    commit(&work, "c", "3", "three");
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    commit(&ws, "d", "4", "four");
    assert!(res.put(&ctx, &ws, &Params::new()).await.is_err());
    let mut p = Params::new();
    p.insert("rebase", true);
    let produced = res.put(&ctx, &ws, &p).await.unwrap();
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/main"]),
        produced[0].get("ref").unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_versions_follow_content() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), "1").unwrap();
    let fs = FsResource::new(&src);
    let ctx = Ctx::new();
    let v1 = fs.check(&ctx, None).await.unwrap();
    assert_eq!(v1.len(), 1);
    assert!(fs.check(&ctx, Some(&v1[0])).await.unwrap().is_empty());
    std::fs::write(src.join("a"), "2").unwrap();
    let v2 = fs.check(&ctx, Some(&v1[0])).await.unwrap();
    assert_ne!(v2[0], v1[0]);
    let dest = dir.path().join("dest");
    fs.get(&ctx, &v2[0], &dest).await.unwrap();
    assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "2");

    let out = FsResource::new(dir.path().join("published"));
    let mut p = Params::new();
    p.insert("from", "dest");
    let produced = out.put(&ctx, dir.path(), &p).await.unwrap();
    assert_eq!(produced[0].get("hash"), v2[0].get("hash"));
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_round_trip_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Params::new();
    p.insert("dir", dir.path().join("store").display().to_string());
    let art = ArtifactResource::from_params(&p).unwrap();
    let ctx = Ctx::new();
    assert!(art.check(&ctx, None).await.unwrap().is_empty());
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("dist/bin")).unwrap();
    std::fs::write(ws.join("dist/bin/app"), "binary").unwrap();
    let mut put = Params::new();
    put.insert("from", "dist");
    let v = art.put(&ctx, &ws, &put).await.unwrap();
    assert!(v[0].get("digest").unwrap().starts_with("sha256:"));
    // Same content, same digest; the store holds it once.
    assert_eq!(art.put(&ctx, &ws, &put).await.unwrap(), v);
    assert_eq!(art.check(&ctx, None).await.unwrap(), v);
    let dest = dir.path().join("got");
    art.get(&ctx, &v[0], &dest).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("bin/app")).unwrap(),
        "binary"
    );
}

#[tokio::test]
async fn cron_yields_one_version_per_tick() {
    let mut p = Params::new();
    p.insert("schedule", "@every 1h");
    let cron = CronResource::from_params(&p).unwrap();
    let ctx = Ctx::new();
    let v = cron.check(&ctx, None).await.unwrap();
    assert_eq!(v.len(), 1);
    assert!(
        cron.check(&ctx, Some(&v[0])).await.unwrap().is_empty(),
        "same tick"
    );
    let old = Version::from_pairs([("time", "2000-01-01T00:00:00+00:00")]);
    assert_eq!(
        cron.check(&ctx, Some(&old)).await.unwrap(),
        v,
        "missed ticks collapse into one"
    );
    let mut bad = Params::new();
    bad.insert("schedule", "@every 1s");
    assert!(
        CronResource::from_params(&bad)
            .unwrap_err()
            .to_string()
            .contains("minimum")
    );
}

/// Collects everything written to the build log.
#[derive(Default)]
struct Captured(std::sync::Mutex<Vec<u8>>);

impl pipewright_core::LogSink for Captured {
    fn write(&self, _stream: pipewright_core::Stream, chunk: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(chunk);
    }
}

/// Serves a bare repository over git's "dumb" HTTP protocol on 127.0.0.1, answering 401 unless
/// the request carries Basic credentials `user:token`. Records every request line and header.
fn serve_with_basic_auth(
    root: std::path::PathBuf,
    user: &str,
    token: &str,
) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut authorized = false;
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
                if let Some(v) = l.strip_prefix("Authorization: ") {
                    authorized = v.trim() == want;
                }
                log.lock().unwrap().push_str(&l);
            }
            log.lock().unwrap().push_str(&first);
            let path = first.split_whitespace().nth(1).unwrap_or("/");
            let path = path
                .split('?')
                .next()
                .unwrap_or("/")
                .trim_start_matches('/');
            let file = root.join(path);
            let _ = if !authorized {
                write!(
                    conn,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            } else if path.contains("..") || !file.is_file() {
                write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            } else {
                let body = std::fs::read(&file).unwrap();
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|()| conn.write_all(&body))
            };
        }
    });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn git_token_reaches_git_through_askpass_never_argv_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    let c1 = commit(&repo, "a.txt", "1", "first");
    let served = dir.path().join("www");
    std::fs::create_dir(&served).unwrap();
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            repo.to_str().unwrap(),
            served.join("app.git").to_str().unwrap(),
        ],
    );
    git(&served.join("app.git"), &["update-server-info"]);
    let token = "s3cr3t-t0ken-value";
    let (base, seen) = serve_with_basic_auth(served, "ci-bot", token);
    let url = format!("{base}/app.git");
    let cache = dir.path().join("cache");

    // Without credentials the server refuses, and git does not hang on a prompt.
    let anon = GitResource::from_params(&git_params(&url, &[]), &cache).unwrap();
    let err = anon.check(&Ctx::new(), None).await.unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");

    let log = std::sync::Arc::new(Captured::default());
    let ctx = Ctx::new().with_log(log.clone());
    let res = GitResource::from_params(
        &git_params(
            &url,
            &[("token", token.into()), ("username", "ci-bot".into())],
        ),
        &dir.path().join("cache2"),
    )
    .unwrap();
    assert!(!format!("{res:?}").contains(token), "Debug hides the token");
    let vs = res.check(&ctx, None).await.unwrap();
    assert_eq!(refs(&vs), [c1]);
    let dest = dir.path().join("checkout");
    res.get(&ctx, &vs[0], &dest).await.unwrap();
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "1");
    assert!(
        seen.lock().unwrap().contains("Authorization: Basic"),
        "git authenticated"
    );
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(!logged.contains(token), "token in the log: {logged}");
    // No credential file is left behind in the temp directory.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("askpass")).is_ok()
                && e.file_name()
                    .to_string_lossy()
                    .starts_with("pipewright-git-")
        })
        .collect();
    assert!(leftovers.is_empty(), "askpass helpers left: {leftovers:?}");

    let both = GitResource::from_params(
        &git_params(&url, &[("token", "t".into()), ("private_key", "k".into())]),
        &cache,
    )
    .unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");
}
