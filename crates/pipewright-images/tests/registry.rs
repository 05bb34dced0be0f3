//! `registry-image` against a real registry (Debian's `docker-registry`) on 127.0.0.1, with and
//! without basic auth, and the real Docker engine for builds and pulls. Without them: a failure
//! in CI, a loud skip elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Ctx, ErrorKind, Params, Resource, Version};
use pipewright_images::RegistryImage;
use pipewright_testing::log::RecordingSink;
use pipewright_testing::servers::{
    DOCKER_TEST_IMAGE as BASE, ImageRegistry, require, require_docker,
};
use std::path::Path;
use std::process::Command;

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-registry-pw";

fn ready() -> bool {
    require("docker-registry", "apt-get install docker-registry")
        && require("htpasswd", "apt-get install apache2-utils")
        && require_docker()
}

fn params(pairs: &[(&str, &str)]) -> Params {
    let mut p = Params::new();
    for (k, v) in pairs {
        p.insert(*k, *v);
    }
    p
}

fn with_auth(host: &str, repo: &str, password: &str, extra: &[(&str, &str)]) -> Params {
    let repository = format!("{host}/{repo}");
    let mut pairs = vec![
        ("repository", repository.as_str()),
        ("username", USER),
        ("password", password),
        ("insecure", "true"),
    ];
    pairs.extend_from_slice(extra);
    params(&pairs)
}

/// A build context whose image carries `content` in /hello.txt.
fn context(dir: &Path, content: &str) {
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {BASE}\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"),
    )
    .unwrap();
    std::fs::write(dir.join("hello.txt"), content).unwrap();
}

fn docker_out(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn tag_put(tag: &str, more: &[&str]) -> Params {
    let mut p = params(&[("tag", tag)]);
    p.insert("tags", serde_json::json!(more));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn build_push_check_and_get_through_a_registry_with_basic_auth() {
    if !ready() {
        return;
    }
    let registry = ImageRegistry::with_basic_auth(USER, PASSWORD).unwrap();
    let host = registry.host();
    let app = RegistryImage::from_params(&with_auth(
        &host,
        "team/app",
        PASSWORD,
        &[("tag_regex", r"\d+\.\d+\.\d+")],
    ))
    .unwrap();
    let ctx = Ctx::new();
    assert!(
        app.check(&ctx, None).await.unwrap().is_empty(),
        "no image yet"
    );

    let ws = tempfile::tempdir().unwrap();
    context(ws.path(), "one");
    let log = RecordingSink::new();
    let v1 = app
        .put(
            &Ctx::new().with_log(log.clone()),
            ws.path(),
            &tag_put("1.0.0", &[]),
        )
        .await
        .unwrap();
    let v1 = v1[0].clone();
    assert_eq!(v1.get("tag"), Some("1.0.0"));
    let d1 = v1.get("digest").unwrap().to_owned();
    assert!(d1.starts_with("sha256:"), "{d1}");
    assert!(!log.text(pipewright_core::Stream::System).contains(PASSWORD));

    // The first check reports the newest tag only.
    assert_eq!(app.check(&ctx, None).await.unwrap(), vec![v1.clone()]);

    context(ws.path(), "two");
    let v2 = app
        .put(&ctx, ws.path(), &tag_put("1.1.0", &["latest"]))
        .await
        .unwrap()[0]
        .clone();
    let d2 = v2.get("digest").unwrap().to_owned();
    assert_ne!(d1, d2);
    // A later check finds the new tag (`latest` does not match the regex).
    assert_eq!(app.check(&ctx, Some(&v1)).await.unwrap(), vec![v2.clone()]);
    assert!(app.check(&ctx, Some(&v2)).await.unwrap().is_empty());

    // get pulls exactly that digest into the engine.
    docker_out(&["image", "rm", "-f", &format!("{host}/team/app:1.1.0")]);
    let dest = tempfile::tempdir().unwrap();
    let meta = app.get(&ctx, &v2, dest.path()).await.unwrap();
    assert_eq!(meta.get("digest"), Some(d2.as_str()));
    let image = std::fs::read_to_string(dest.path().join("image")).unwrap();
    assert_eq!(image.trim(), format!("{host}/team/app@{d2}"));
    assert_eq!(docker_out(&["run", "--rm", image.trim()]), "two");
    assert_eq!(
        docker_out(&["run", "--rm", &format!("{host}/team/app:1.1.0")]),
        "two"
    );

    // As an OCI layout, without the engine; and pushed back from one to another repository.
    let oci = RegistryImage::from_params(&with_auth(
        &host,
        "team/app",
        PASSWORD,
        &[("format", "oci")],
    ))
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    oci.get(&ctx, &v1, out.path()).await.unwrap();
    let index = std::fs::read_to_string(out.path().join("oci/index.json")).unwrap();
    assert!(index.contains(&d1), "{index}");
    let copy = RegistryImage::from_params(&with_auth(&host, "team/copy", PASSWORD, &[])).unwrap();
    let mut put = params(&[("image", "oci"), ("tag", "copied")]);
    put.insert("tags", serde_json::json!(["stable"]));
    let copied = copy.put(&ctx, out.path(), &put).await.unwrap();
    assert_eq!(copied[0].get("digest"), Some(d1.as_str()));
    // The copy runs: pulled through the resource, whose credentials the engine lacks.
    let pulled = tempfile::tempdir().unwrap();
    copy.get(&ctx, &copied[0], pulled.path()).await.unwrap();
    assert_eq!(
        docker_out(&["run", "--rm", &format!("{host}/team/copy:copied")]),
        "one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tag_is_watched_by_digest_on_an_open_registry() {
    if !ready() {
        return;
    }
    let registry = ImageRegistry::start().unwrap();
    let repository = format!("{}/watched", registry.host());
    let r = RegistryImage::from_params(&params(&[
        ("repository", &repository),
        ("tag", "edge"),
        ("insecure", "true"),
    ]))
    .unwrap();
    let ctx = Ctx::new();
    assert!(r.check(&ctx, None).await.unwrap().is_empty());
    let ws = tempfile::tempdir().unwrap();
    context(ws.path(), "first");
    let pushed = r.put(&ctx, ws.path(), &Params::new()).await.unwrap();
    assert_eq!(
        pushed[0].get("tag"),
        Some("edge"),
        "the resource's tag by default"
    );
    let found = r.check(&ctx, None).await.unwrap();
    assert_eq!(found, pushed);
    assert!(r.check(&ctx, Some(&found[0])).await.unwrap().is_empty());
    // The tag moves: a new digest is a new version.
    context(ws.path(), "second");
    let moved = r.put(&ctx, ws.path(), &Params::new()).await.unwrap();
    assert_ne!(moved[0].get("digest"), found[0].get("digest"));
    assert_eq!(r.check(&ctx, Some(&found[0])).await.unwrap(), moved);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_clear_error_naming_the_registry_not_the_password() {
    if !ready() {
        return;
    }
    let registry = ImageRegistry::with_basic_auth(USER, PASSWORD).unwrap();
    let host = registry.host();
    let wrong = "not-the-right-pw-42";
    let r = RegistryImage::from_params(&with_auth(&host, "team/app", wrong, &[])).unwrap();
    let ctx = Ctx::new();

    let e = r.check(&ctx, None).await.unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{text}");
    assert!(text.contains(&host) && text.contains("user `ci`"), "{text}");
    assert!(!text.contains(wrong), "{text}");

    let ws = tempfile::tempdir().unwrap();
    context(ws.path(), "x");
    let e = r.put(&ctx, ws.path(), &Params::new()).await.unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{text}");
    assert!(text.contains(&host), "{text}");
    assert!(!text.contains(wrong), "{text}");

    let e = r
        .get(
            &ctx,
            &Version::from_pairs([
                ("tag", "x"),
                ("digest", &format!("sha256:{}", "a".repeat(64))),
            ]),
            tempfile::tempdir().unwrap().path(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&host) && !e.to_string().contains(wrong),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_put_params_fail_before_anything_is_built() {
    if !ready() {
        return;
    }
    let registry = ImageRegistry::start().unwrap();
    let repository = format!("{}/app", registry.host());
    let r = RegistryImage::from_params(&params(&[
        ("repository", &repository),
        ("insecure", "true"),
    ]))
    .unwrap();
    let ws = tempfile::tempdir().unwrap();
    let ctx = Ctx::new();
    let e = r.put(&ctx, ws.path(), &Params::new()).await.unwrap_err();
    assert!(e.to_string().contains("there is no `Dockerfile`"), "{e}");
    let e = r
        .put(&ctx, ws.path(), &params(&[("tag", "-bad")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a valid image tag"), "{e}");
    let e = r
        .put(&ctx, ws.path(), &params(&[("build", "../elsewhere")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("inside the workspace"), "{e}");
    let e = r
        .put(&ctx, ws.path(), &params(&[("image", "missing")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("index.json"), "{e}");
}
