//! The git resource's shared mirror: concurrent checks and gets, mirrors left broken by killed
//! or cancelled clones, option-like values, and the errors people read. Real repositories and
//! real `git` processes throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Ctx, ErrorKind, Params, Resource, Version};
use pipewright_resources::GitResource;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
        .args(["-c", "init.defaultBranch=main"])
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

fn commit(repo: &Path, file: &str, text: &str) -> String {
    std::fs::write(repo.join(file), text).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", text]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A repository with one commit on `main`.
fn repo(dir: &Path) -> (PathBuf, String) {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    let sha = commit(&repo, "a.txt", "1");
    (repo, sha)
}

fn params(pairs: &[(&str, &str)]) -> Params {
    let mut p = Params::new();
    for (k, v) in pairs {
        p.insert(*k, *v);
    }
    p
}

fn resource(url: &str, cache: &Path, extra: &[(&str, &str)]) -> GitResource {
    let mut pairs = vec![("url", url)];
    pairs.extend_from_slice(extra);
    GitResource::from_params(&params(&pairs), cache).unwrap()
}

/// The one mirror directory under `cache/git`.
fn mirror_dir(cache: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(cache.join("git"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one mirror: {dirs:?}");
    dirs[0].clone()
}

fn empty_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            empty_files(&path);
        } else if path.parent().is_some_and(|p| p.ends_with("info")) {
            continue;
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(&path, "").unwrap();
        }
    }
}

/// Live processes whose command line or working directory is under `dir`.
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let proc_dir = entry.path();
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(proc_dir.join("cwd")).unwrap_or_default();
        if cmdline.contains(&needle) || cwd.starts_with(dir) {
            found.push(format!("{} ({})", cmdline.trim(), cwd.display()));
        }
    }
    found
}

/// Checks, then gets the newest version into `dest`; the commit that `dest` ends up at.
async fn check_and_get(r: &GitResource, dest: &Path) -> pipewright_core::Result<String> {
    let ctx = Ctx::new();
    let found = r.check(&ctx, None).await?;
    let v = found.last().cloned().unwrap_or_else(Version::new);
    std::fs::create_dir_all(dest)?;
    r.get(&ctx, &v, dest).await?;
    Ok(git(dest, &["rev-parse", "HEAD"]))
}

/// Eight jobs check and get one repository at once, as a fan-out runs them: half the rounds
/// start from a cold cache, and every round has a new commit to fetch into a warm one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_and_gets_of_one_repository_share_the_mirror() {
    const JOBS: usize = 8;
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repo(dir.path());
    let url = repo.display().to_string();
    let cache = dir.path().join("cache");
    let started = Instant::now();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let head = commit(&repo, "a.txt", &format!("round {round}"));
        if round % 2 == 0 {
            let _ = std::fs::remove_dir_all(&cache);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for job in 0..JOBS {
            // Jobs differ the way real ones do: default branch, named branch, shallow.
            let extra: &[(&str, &str)] = match job % 3 {
                0 => &[],
                1 => &[("branch", "main")],
                _ => &[("branch", "main"), ("depth", "1")],
            };
            let r = resource(&url, &cache, extra);
            let dest = dir.path().join(format!("ws/{round}/{job}/app"));
            tasks.spawn(async move { (job, check_and_get(&r, &dest).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (job, result) = joined.unwrap();
            match result {
                Ok(sha) if sha == head => {}
                Ok(sha) => failures.push(format!("round {round} job {job}: got {sha}, not {head}")),
                Err(e) => failures.push(format!("round {round} job {job}: {e}")),
            }
        }
    }
    eprintln!(
        "{ROUNDS} rounds of {JOBS} concurrent check+get: {} failures in {:.1?}",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        ROUNDS * JOBS,
        failures.join("\n")
    );
}

/// What a `git clone` killed partway leaves, and what a killed fetch or a damaged disk leaves:
/// each time the next check and get rebuild or repair the mirror and succeed.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_mirror_is_rebuilt_instead_of_failing_every_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repo(dir.path());
    let url = repo.display().to_string();
    let cache = dir.path().join("cache");
    let r = resource(&url, &cache, &[]);
    check_and_get(&r, &dir.path().join("ws/0")).await.unwrap();
    let mirror = mirror_dir(&cache);

    type Damage = fn(&Path);
    let damages: [(&str, Damage); 6] = [
        // Killed before git wrote anything: an empty directory.
        ("empty directory", |m| {
            std::fs::remove_dir_all(m).unwrap();
            std::fs::create_dir(m).unwrap();
        }),
        // Killed during the transfer (as git 2.47 leaves it): a bare repository with no refs
        // and HEAD at clone's placeholder.
        ("clone killed during the transfer", |m| {
            std::fs::remove_dir_all(m).unwrap();
            std::fs::create_dir(m).unwrap();
            git(m, &["init", "-q", "--bare"]);
            std::fs::write(m.join("HEAD"), "ref: refs/heads/.invalid\n").unwrap();
        }),
        // Not a repository at all.
        ("stray files", |m| {
            std::fs::remove_dir_all(m).unwrap();
            std::fs::create_dir(m).unwrap();
            std::fs::write(m.join("HEAD"), "garbage").unwrap();
        }),
        // A fetch killed while it updated a ref.
        ("stale ref lock", |m| {
            std::fs::write(m.join("refs/heads/main.lock"), "").unwrap();
            std::fs::write(m.join("packed-refs.lock"), "").unwrap();
        }),
        // Objects gone: every pack and loose object removed.
        ("missing objects", |m| {
            std::fs::remove_dir_all(m.join("objects")).unwrap();
            std::fs::create_dir_all(m.join("objects/pack")).unwrap();
            std::fs::create_dir_all(m.join("objects/info")).unwrap();
        }),
        // Object files emptied (a full disk, a crash): git reports them as corrupt.
        ("emptied object files", |m| empty_files(&m.join("objects"))),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        damage(&mirror);
        let head = commit(&repo, "a.txt", &format!("after {what}"));
        let got = check_and_get(&r, &dir.path().join(format!("ws/{}", i + 1)))
            .await
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
        assert_eq!(got, head, "after {what}");
        assert_eq!(mirror_dir(&cache), mirror, "after {what}: rebuilt in place");
    }
}

/// A clone cancelled partway (the step timed out, the user pressed Ctrl-C) leaves nothing the
/// next run trips over.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_clone_leaves_the_cache_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repo(dir.path());
    // Enough incompressible data that a clone over the pack protocol takes a while.
    let mut bytes = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(repo.join("big.bin"), &bytes).unwrap();
    let head = commit(&repo, "a.txt", "big");
    let url = format!("file://{}", repo.display());
    let cache = dir.path().join("cache");
    let r = resource(&url, &cache, &[]);

    let ctx = Ctx::new();
    let cancel = ctx.cancel.clone();
    let git_dir = cache.join("git");
    let watcher = tokio::spawn(async move {
        // Cancel once a clone has started writing a repository under the cache.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let started = std::fs::read_dir(&git_dir)
                .map(|d| d.flatten().any(|e| e.path().join("HEAD").exists()))
                .unwrap_or(false);
            if started {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
    });
    let err = r.check(&ctx, None).await.unwrap_err();
    watcher.await.unwrap();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    // git's helpers (upload-pack, index-pack) are stopped with it, not left writing.
    // A generous bound: stopping is prompt, but a loaded 2-core CI machine is slow.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = processes_using(dir.path());
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = processes_using(dir.path());
    }
    assert!(left.is_empty(), "still running after the cancel: {left:?}");

    let got = check_and_get(&r, &dir.path().join("ws")).await.unwrap();
    assert_eq!(got, head);
    let entries: Vec<_> = std::fs::read_dir(cache.join("git"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "the mirror and its lock file only: {entries:?}"
    );
}

/// Values starting with `-` would reach git as options (`--upload-pack=…` runs a command):
/// they are refused with an error that names the param, and git never sees them.
#[tokio::test(flavor = "multi_thread")]
async fn option_like_values_never_reach_git() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, sha) = repo(dir.path());
    let url = repo.display().to_string();
    let cache = dir.path().join("cache");
    let marker = dir.path().join("pwned");
    let upload_pack = format!("--upload-pack=touch {};git-upload-pack", marker.display());
    for (key, value) in [
        ("url", upload_pack.as_str()),
        ("branch", "--output=/dev/null"),
        ("tag_filter", "-v"),
    ] {
        let mut pairs = vec![("url", url.as_str())];
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        let made = GitResource::from_params(&params(&pairs), &cache);
        let err = match made {
            Ok(r) => r.check(&Ctx::new(), None).await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{key}: {err}");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        assert!(err.to_string().contains("starts with `-`"), "{err}");
    }
    assert!(!marker.exists(), "git ran the injected upload-pack");

    // Version fields and put params are user values too.
    let r = resource(&url, &cache, &[("branch", "main")]);
    let dest = dir.path().join("ws");
    std::fs::create_dir_all(&dest).unwrap();
    let evil = Version::from_pairs([("ref", format!("--output={}", marker.display()))]);
    let err = r.get(&Ctx::new(), &evil, &dest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("`ref`"), "{err}");
    assert!(!marker.exists(), "git wrote the injected --output file");
    let ok = Version::from_pairs([("ref", sha.as_str())]);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(&dest).unwrap();
    r.get(&Ctx::new(), &ok, &dest).await.unwrap();
    for (key, value) in [("branch", "-f"), ("tag", "--delete")] {
        let err = r
            .put(&Ctx::new(), &dest, &params(&[(key, value)]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{key}: {err}");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
}

/// A branch the repository does not have is named, with the repository, instead of git's
/// usage line.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_branch_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repo(dir.path());
    let url = repo.display().to_string();
    let cache = dir.path().join("cache");
    let r = resource(&url, &cache, &[("branch", "release")]);
    let err = r.check(&Ctx::new(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        err.to_string(),
        format!("branch `release` does not exist in {url}")
    );
    // With a path filter too (git's message differs there).
    let r = resource(&url, &cache, &[("branch", "release"), ("paths", "src")]);
    let err = r.check(&Ctx::new(), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("branch `release` does not exist in {url}")
    );
}

/// With `depth`, a get of a commit older than the shallow history still lands on that commit.
#[tokio::test(flavor = "multi_thread")]
async fn a_shallow_get_of_an_older_commit_fetches_the_history_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, first) = repo(dir.path());
    commit(&repo, "a.txt", "2");
    commit(&repo, "a.txt", "3");
    let url = repo.display().to_string();
    let cache = dir.path().join("cache");
    let r = resource(&url, &cache, &[("branch", "main"), ("depth", "1")]);
    let ctx = Ctx::new();
    r.check(&ctx, None).await.unwrap();
    let dest = dir.path().join("ws/app");
    std::fs::create_dir_all(&dest).unwrap();
    let old = Version::from_pairs([("ref", first.as_str())]);
    r.get(&ctx, &old, &dest).await.unwrap();
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), first);
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "1");
}
