//! Parse and validate a generated pipeline of 1,000 jobs (and 100 for scale).
//!
//! Run: `cargo bench --bench config`. Figures and how to read them: docs/performance.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipewright_config::{LoadOptions, load_str};
use std::fmt::Write as _;
use std::hint::black_box;

/// A pipeline of `jobs` jobs over 10 git resources: each job gets a resource (with `passed` on
/// the previous job of the same resource, so the DAG is 10 chains), runs two tasks, one inside an
/// `if`, and has hooks.
fn generate(jobs: usize) -> String {
    let mut s = String::new();
    s.push_str("variable \"image\" {\n  type    = string\n  default = \"alpine:3.20\"\n}\n\n");
    for r in 0..10 {
        let _ = writeln!(
            s,
            "resource \"git\" \"repo{r}\" {{\n  params {{\n    url    = \"https://example.com/r{r}.git\"\n    branch = \"main\"\n  }}\n  check_interval = \"@every 1m\"\n}}\n"
        );
    }
    for j in 0..jobs {
        let r = j % 10;
        let passed = if j >= 10 {
            format!("\n    passed  = [\"job{}\"]", j - 10)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            r#"job "job{j}" {{
  timeout = "30m"
  tags    = ["linux"]
  get "git" "repo{r}" {{
    trigger = true{passed}
  }}
  task "build" {{
    run "docker" {{
      image = var.image
      cmd   = "make -C repo{r} build-${{lower("JOB{j}")}}"
    }}
    attempts = 2
    timeout  = "10m"
  }}
  if "release" {{
    condition = "$TASK_BUILD_CHANNEL == 'stable' && $BUILD_NUMBER > 1"
    task "publish" {{
      run "shell" {{
        cmd = "echo publish"
      }}
    }}
  }}
  on_failure "shell" {{
    cmd = "echo failed: $BUILD_STATUS"
  }}
}}
"#
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    for jobs in [100usize, 1000] {
        let src = generate(jobs);
        // Fail loudly if the generator drifts out of the language.
        let loaded = load_str("bench.hcl", &src, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert_eq!(loaded.pipeline.jobs.len(), jobs);
        group.throughput(Throughput::Bytes(src.len() as u64));
        group.bench_function(format!("{jobs}_jobs"), |b| {
            b.iter(|| load_str("bench.hcl", black_box(&src), &LoadOptions::default()))
        });
        // The syntax-only baseline: hcl-edit parsing the same text, so the report can say how much
        // evaluation and validation add on top.
        group.bench_function(format!("{jobs}_jobs_parse_only"), |b| {
            b.iter(|| hcl_edit::parser::parse_body(black_box(&src)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
