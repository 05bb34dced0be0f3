//! The streaming masker: every split point, random chunkings, encodings, and a run over millions
//! of chunkings that must find zero leaks.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use pipewright_secrets::{MASK, Masker, StreamMasker};
use proptest::prelude::*;

fn stream(m: &Masker, text: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut s = StreamMasker::new();
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts {
        s.push(m, &text[prev..c], &mut out);
        prev = c;
    }
    s.push(m, &text[prev..], &mut out);
    s.finish(m, &mut out);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every line of every secret long enough to be masked: none may survive masking.
fn lines(secrets: &[String]) -> Vec<Vec<u8>> {
    secrets
        .iter()
        .filter(|s| !pipewright_secrets::too_short(s))
        .flat_map(|s| s.split('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !pipewright_secrets::too_short(l))
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

fn text_and_secrets() -> impl Strategy<Value = (Vec<String>, Vec<u8>)> {
    // A small alphabet makes overlaps, repeats and near-misses common.
    let secret = proptest::string::string_regex("[ab\\-c\n]{1,10}").unwrap();
    prop::collection::vec(secret, 1..5).prop_flat_map(|secrets| {
        let pieces = prop::collection::vec(
            prop_oneof![
                proptest::string::string_regex("[abc\\- \n]{0,6}").unwrap(),
                prop::sample::select(secrets.clone()),
            ],
            0..12,
        );
        (Just(secrets), pieces.prop_map(|p| p.concat().into_bytes()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Cut at every single split point: the output equals masking the whole text at once, and
    /// no secret line survives.
    #[test]
    fn every_split_point_matches_the_whole_text((secrets, text) in text_and_secrets()) {
        let m = Masker::new(&secrets);
        let whole = m.mask(&text).into_owned();
        for l in lines(&secrets) {
            prop_assert!(!contains(&whole, &l), "leak of {:?} in {:?}", l, whole);
        }
        for cut in 0..=text.len() {
            prop_assert_eq!(&stream(&m, &text, &[cut]), &whole, "cut at {}", cut);
        }
    }

    /// Random multi-chunk splits, including empty chunks.
    #[test]
    fn random_chunkings_match_the_whole_text(
        (secrets, text) in text_and_secrets(),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let m = Masker::new(&secrets);
        let mut cuts: Vec<usize> = raw_cuts.iter().map(|i| i.index(text.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(stream(&m, &text, &cuts), m.mask(&text).into_owned());
    }
}

/// A tiny deterministic generator: the test must not depend on a seed it cannot print.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn millions_of_chunkings_leak_nothing() {
    let secrets = vec![
        "pa$$w0rd-Ω-9f8e7d".to_owned(),
        "ghp_0123456789abcdefABCDEF".to_owned(),
        "-----BEGIN KEY-----\nMIIBOgIBAAJBAK\nz9x8w7v6u5\n-----END KEY-----".to_owned(),
    ];
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut log = String::new();
    log.push_str("step 1: connecting with pa$$w0rd-Ω-9f8e7d now\n");
    log.push_str(&format!(
        "auth: Basic {}\n",
        b64.encode(format!("user:{}", secrets[0]))
    ));
    log.push_str(&format!(
        "b64 a1: {}\n",
        b64.encode(format!("x{}", secrets[1]))
    ));
    log.push_str(&format!(
        "b64 a2: {}\n",
        b64.encode(format!("xy{}", secrets[1]))
    ));
    log.push_str("url: https://h/?t=pa%24%24w0rd-%CE%A9-9f8e7d&x=1\n");
    log.push_str(&format!(
        "json: {}\n",
        serde_json::json!({ "key": secrets[2] })
    ));
    log.push_str(&format!(
        "{}\nghp_0123456789abcdefABCDEFghp_0123456789abcdefABCDEF\n",
        secrets[2]
    ));
    let m = Masker::new(&secrets);
    let text = log.as_bytes();
    let whole = m.mask(text).into_owned();
    let forbidden: Vec<Vec<u8>> = {
        let mut f = lines(&secrets);
        f.push(b64.encode(format!("user:{}", secrets[0])).into_bytes());
        f.push(b"pa%24%24w0rd-%CE%A9-9f8e7d".to_vec());
        f.push(b"MIIBOgIBAAJBAK\\nz9x8w7v6u5".to_vec());
        f
    };
    for f in &forbidden {
        assert!(
            !contains(&whole, f),
            "one-shot leak of {:?}",
            String::from_utf8_lossy(f)
        );
    }
    assert!(contains(&whole, MASK.as_bytes()));

    let runs: u64 = std::env::var("MASKER_CHUNKINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut leaks = 0u64;
    let mut s = StreamMasker::new();
    for run in 0..runs {
        out.clear();
        let mut pos = 0;
        while pos < text.len() {
            // Mostly small chunks (down to single bytes), sometimes large ones.
            let r = rng.next();
            let max = if r.is_multiple_of(8) { 200 } else { 12 };
            let n = ((r >> 8) as usize % max).min(text.len() - pos);
            s.push(&m, &text[pos..pos + n], &mut out);
            pos += n;
        }
        s.finish(&m, &mut out);
        if out != whole {
            leaks += 1;
            assert!(
                leaks < 5,
                "run {run}: streamed output differs from the whole-text masking"
            );
        }
    }
    assert_eq!(leaks, 0, "{leaks} of {runs} chunkings differed");
}

#[test]
fn complete_lines_are_released_at_once_and_little_is_held() {
    let m = Masker::new(["a-rather-long-secret-value-of-forty-bytes!"]);
    let mut s = StreamMasker::new();
    let mut out = Vec::new();
    s.push(&m, b"line one\nline two without newline", &mut out);
    assert_eq!(out, b"line one\n");
    assert!(s.pending() < m.longest());
    s.push(&m, b"\n", &mut out);
    assert_eq!(out, b"line one\nline two without newline\n");
    assert_eq!(s.pending(), 0);
}

#[test]
fn empty_masker_passes_everything_through() {
    let m = Masker::empty();
    assert_eq!(stream(&m, b"abc\ndef", &[1, 5]), b"abc\ndef");
    assert_eq!(Masker::new(["", "  "]).secrets(), 0);
}

#[test]
fn url_and_json_forms_are_masked() {
    let secret = "p@ss word/\"quoted\"";
    let m = Masker::new([secret]);
    let url = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    assert_eq!(m.mask_str(&format!("?q={url}&")), "?q=***&");
    let json = serde_json::to_string(secret).unwrap();
    assert_eq!(m.mask_str(&json), "\"***\"");
}

#[test]
fn short_values_and_short_lines_are_not_masked() {
    let m = Masker::new([
        "ab",
        " xyz ",
        "abcd",
        "{\n  \"k\": \"long-enough-value\"\n}",
    ]);
    assert_eq!(m.secrets(), 2, "the two short values are not registered");
    assert_eq!(
        m.mask_str("ab xyz abcd cab"),
        "ab xyz *** cab",
        "a short value would blank out every occurrence"
    );
    // The value's own lines are masked, its one-character lines are not.
    assert_eq!(
        m.mask_str("{\n  \"k\": \"long-enough-value\"\n}\nif x { y }"),
        "{\n***\n}\nif x { y }"
    );
    assert!(pipewright_secrets::too_short("abc"));
    assert!(pipewright_secrets::too_short("  é  "));
    assert!(!pipewright_secrets::too_short("ééé1"));
}

/// Each form below is what the named tool printed for the secret (Python's `urllib.parse`,
/// Node's `encodeURIComponent` and `URLSearchParams`); each must be masked inside a URL.
#[test]
fn every_common_url_encoding_is_masked() {
    let secret = "Tr0ub4dor&3 horse~!/*'(x)@é";
    let m = Masker::new([secret]);
    for (tool, form) in [
        (
            "quote(safe=''), curl, rawurlencode",
            "Tr0ub4dor%263%20horse~%21%2F%2A%27%28x%29%40%C3%A9",
        ),
        (
            "quote() keeping /",
            "Tr0ub4dor%263%20horse~%21/%2A%27%28x%29%40%C3%A9",
        ),
        (
            "quote_plus, Go QueryEscape",
            "Tr0ub4dor%263+horse~%21%2F%2A%27%28x%29%40%C3%A9",
        ),
        (
            "encodeURIComponent",
            "Tr0ub4dor%263%20horse~!%2F*'(x)%40%C3%A9",
        ),
        (
            "URLSearchParams, HTML forms",
            "Tr0ub4dor%263+horse%7E%21%2F*%27%28x%29%40%C3%A9",
        ),
        (
            "PHP urlencode",
            "Tr0ub4dor%263+horse%7E%21%2F%2A%27%28x%29%40%C3%A9",
        ),
        (
            "everything encoded",
            "Tr0ub4dor%263%20horse%7E%21%2F%2A%27%28x%29%40%C3%A9",
        ),
        (
            "lower-case hex",
            "Tr0ub4dor%263%20horse~%21%2f%2a%27%28x%29%40%c3%a9",
        ),
        (
            "lower-case hex, form",
            "Tr0ub4dor%263+horse%7e%21%2f*%27%28x%29%40%c3%a9",
        ),
    ] {
        assert_eq!(
            m.mask_str(&format!("https://h/cb?token={form}&next=1")),
            "https://h/cb?token=***&next=1",
            "{tool}: {form}"
        );
    }
}

#[test]
fn masked_text_is_only_made_by_the_masker() {
    let m = Masker::new(["hunter2-password"]);
    let reason = m.masked("login failed for hunter2-password");
    assert_eq!(reason, "login failed for ***");
    assert_eq!(reason.to_string(), "login failed for ***");
    assert!(reason.contains("***"));
}
