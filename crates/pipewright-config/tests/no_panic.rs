//! The loader never panics: arbitrary bytes and mutated valid pipelines give `Ok` or diagnostics
//! that render, and every diagnostic location lies inside its file.

use pipewright_config::{LoadOptions, load_str};
use proptest::prelude::*;

const BASES: [&str; 5] = [
    include_str!("../../../examples/pipelines/hello.hcl"),
    include_str!("../../../examples/pipelines/fan-out-fan-in.hcl"),
    include_str!("../../../examples/pipelines/hooks-and-conditions.hcl"),
    include_str!("../../../examples/pipelines/four-abstractions.hcl"),
    include_str!("fixtures/seed.hcl"),
];

const TOKENS: [&str; 24] = [
    "{", "}", "\"", "=", "[", "]", "(", ")", "${", "%{", "\n", "#", "//", "/*", ",", ".", "var.",
    "each.key", "job", "passed", "\\", "<<EOF\n", "é", "\u{0}",
];

fn check(src: &str) {
    match load_str("fuzz.hcl", src, &LoadOptions::default()) {
        Ok(l) => {
            let _ = pipewright_config::render(&l.warnings, &l.sources, false);
            let _ = pipewright_config::to_mermaid(&l.pipeline);
            let _ = pipewright_config::to_dot(&l.pipeline);
            assert!(serde_json::to_string(&l.pipeline).is_ok());
        }
        Err(e) => {
            assert!(e.error_count() > 0);
            for d in &e.diagnostics {
                if let Some(loc) = d.loc {
                    let len = e.sources.text(loc.file).len();
                    assert!(
                        loc.start <= loc.end && loc.end <= len,
                        "{d:?} outside a file of {len} bytes"
                    );
                }
            }
            assert!(!e.render(false).is_empty());
            let _ = e.render(true);
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), proptest::sample::select(TOKENS.to_vec()))
            .prop_map(|(a, t)| Mutation::Insert(a, t)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut s = src.to_owned();
    for m in muts {
        let boundary = |s: &str, mut i: usize| {
            i %= s.len().max(1);
            while i > 0 && !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match m {
            Mutation::Delete(a, n) => {
                let start = boundary(&s, *a);
                let end = boundary(&s, (start + n).min(s.len()));
                if end > start {
                    s.replace_range(start..end, "");
                }
            }
            Mutation::Insert(a, t) => {
                let at = boundary(&s, *a);
                s.insert_str(at, t);
            }
            Mutation::DuplicateLine(i) => {
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = i % lines.len();
                    lines.insert(i, lines[i]);
                }
                s = lines.join("\n");
            }
            Mutation::SwapLines(a, b) => {
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let (a, b) = (a % lines.len(), b % lines.len());
                    lines.swap(a, b);
                }
                s = lines.join("\n");
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_token_soup(tokens in proptest::collection::vec(proptest::sample::select(TOKENS.to_vec()), 0..64)) {
        check(&tokens.concat());
    }

    #[test]
    fn mutated_examples(base in 0..BASES.len(), muts in proptest::collection::vec(mutation(), 1..6)) {
        check(&apply(BASES[base], &muts));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "job \"x\" {{\n  concurrency = {}1{}\n}}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    check(&deep);
    let blocks = format!("{}{}", "job \"x\" {\n".repeat(3000), "}\n".repeat(3000));
    check(&blocks);
    let list = format!(
        "variable \"v\" {{\n  type = string\n  default = {}\"x\"{}\n}}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    check(&list);
}
