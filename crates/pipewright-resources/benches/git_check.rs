//! `check` of a git repository with 10,000 commits when 10 are new, against the bare commands it
//! runs (`git fetch` into the mirror + `git rev-list last..branch`), in the same run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use pipewright_core::{Ctx, Params, Resource, Version};
use pipewright_resources::GitResource;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with `n` commits, made quickly with `git fast-import`.
fn make_repo(dir: &Path, n: usize) {
    git(dir, &["init", "-q", "-b", "main"]);
    let mut script = String::new();
    for i in 1..=n {
        let data = format!("{i}\n");
        script.push_str(&format!(
            "commit refs/heads/main\ncommitter Bench <b@example.com> {} +0000\ndata 2\nc\nM 644 inline f\ndata {}\n{data}\n",
            1_700_000_000 + i,
            data.len()
        ));
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("fast-import starts");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("fast-import input");
    assert!(child.wait().expect("fast-import ends").success());
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).expect("repo dir");
    make_repo(&repo, 10_000);
    let base = git(&repo, &["rev-parse", "main~10"]);
    let url = repo.display().to_string();
    let mut p = Params::new();
    p.insert("url", url.clone());
    p.insert("branch", "main");
    let cache = dir.path().join("cache");
    let res = GitResource::from_params(&p, &cache).expect("resource");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = Ctx::new();
    let last = Version::from_pairs([("ref", base.clone())]);
    // Creates the mirror; every measured check then fetches (nothing new) and lists 10 commits.
    let first = rt.block_on(res.check(&ctx, Some(&last))).expect("check");
    assert_eq!(first.len(), 10);
    let mirror = std::fs::read_dir(cache.join("git"))
        .expect("mirror")
        .next()
        .expect("one mirror")
        .expect("entry")
        .path();

    let mut g = c.benchmark_group("git_check_10k_commits_10_new");
    g.sample_size(20);
    g.bench_function("pipewright check", |b| {
        b.iter(|| {
            let v = rt.block_on(res.check(&ctx, Some(&last))).expect("check");
            assert_eq!(v.len(), 10);
        })
    });
    g.bench_function("bare git fetch + rev-list", |b| {
        b.iter(|| {
            git(
                &mirror,
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--force",
                    &url,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            );
            let out = git(
                &mirror,
                &[
                    "rev-list",
                    "--reverse",
                    "-n100",
                    &format!("{base}..refs/heads/main"),
                ],
            );
            assert_eq!(out.lines().count(), 10);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
