//! Masker throughput: a 4 MiB build log streamed in 64 KiB chunks with 0, 10 and 100 secrets
//! registered. Baseline in the same run: copying the same chunks without masking.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipewright_secrets::{Masker, StreamMasker};
use std::hint::black_box;

fn log_text() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < 4 << 20 {
        s.push_str(&format!(
            "[{i:08}] Compiling crate-{} v0.{}.{} (/build/src/crate-{})  finished in {} ms\n",
            i % 97,
            i % 13,
            i % 7,
            i % 97,
            (i * 37) % 1000
        ));
        // A secret appears now and then, as in a real leak.
        if i.is_multiple_of(5000) {
            s.push_str("export TOKEN=secret-value-number-7-abcdef\n");
        }
        i += 1;
    }
    s.into_bytes()
}

fn secrets(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("secret-value-number-{i}-abcdef"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let log = log_text();
    let mut g = c.benchmark_group("masker");
    g.throughput(Throughput::Bytes(log.len() as u64));
    g.sample_size(20);
    g.bench_function("copy_baseline", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(log.len());
            for chunk in log.chunks(64 << 10) {
                out.extend_from_slice(chunk);
            }
            black_box(out)
        })
    });
    for n in [0usize, 10, 100] {
        let masker = Masker::new(secrets(n));
        g.bench_function(format!("stream_{n}_secrets"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(log.len());
                let mut s = StreamMasker::new();
                for chunk in log.chunks(64 << 10) {
                    s.push(&masker, chunk, &mut out);
                }
                s.finish(&masker, &mut out);
                black_box(out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
