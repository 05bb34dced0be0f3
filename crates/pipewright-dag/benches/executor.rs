//! The executor's own overhead on no-op nodes: 10k and 100k nodes, wide (no edges) and deep (a
//! chain). Divide the time by the node count for µs per node (docs/performance.md).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pipewright_dag::{Dag, Executor, NodeId, Outcome};

fn build(n: usize, deep: bool) -> Dag<()> {
    let mut dag = Dag::new();
    for i in 0..n {
        let id = dag.add_node(());
        if deep && i > 0 {
            // Chains only append forward edges, so the cycle check stays cheap.
            let _ = dag.add_edge(NodeId(i - 1), id);
        }
    }
    dag
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut g = c.benchmark_group("dag");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        for (shape, deep) in [("wide", false), ("deep", true)] {
            let dag = build(n, deep);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(shape, n), &dag, |b, dag| {
                b.to_async(&rt).iter(|| async {
                    let r = Executor::new(dag)
                        .limit(2)
                        .run(|_, _, _| async { Outcome::Succeeded })
                        .await;
                    assert!(r.all_succeeded());
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
