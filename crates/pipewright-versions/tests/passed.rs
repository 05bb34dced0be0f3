//! `passed` resolution against a brute-force model, and the trigger decisions on a real pipeline.

use pipewright_core::{BuildStatus, Version};
use pipewright_versions::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const R: &str = "git.app";

fn v(s: &str) -> Version {
    Version::from_pairs([("ref", s)])
}

fn statuses() -> impl Strategy<Value = BuildStatus> {
    prop_oneof![
        Just(BuildStatus::Succeeded),
        Just(BuildStatus::Warning),
        Just(BuildStatus::Failed),
        Just(BuildStatus::Errored),
        Just(BuildStatus::Cancelled),
        Just(BuildStatus::Running),
    ]
}

/// (job index, status, input version, produced version) of one build.
type Build = (usize, BuildStatus, u64, Option<u64>);

/// (job index, status, input version, produced version) per build.
fn histories() -> impl Strategy<Value = (u64, Vec<Build>, Vec<usize>)> {
    (1u64..12).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec(
                (0usize..4, statuses(), 1..=n, proptest::option::of(1..=n)),
                0..40,
            ),
            proptest::collection::btree_set(0usize..4, 1..4).prop_map(|s| s.into_iter().collect()),
        )
    })
}

/// The model: walk versions from the newest down; the first one that every job passed wins.
fn brute_force(history: &History, passed: &[String], n: u64) -> Option<VersionId> {
    (1..=n).rev().map(VersionId).find(|id| {
        passed.iter().all(|job| {
            history.builds.iter().any(|b| {
                &b.job == job
                    && matches!(b.status, BuildStatus::Succeeded | BuildStatus::Warning)
                    && (b.inputs.get(R) == Some(id)
                        || b.outputs.get(R).is_some_and(|o| o.contains(id)))
            })
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn passed_resolution_matches_the_model((n, builds, passed) in histories()) {
        let mut h = History::default();
        let versions: Vec<Version> = (1..=n).map(|i| v(&format!("c{i}"))).collect();
        h.add_versions(R, &versions);
        for (i, (job, status, input, output)) in builds.iter().enumerate() {
            h.builds.push(BuildRecord {
                job: format!("j{job}"),
                number: i as u64 + 1,
                status: *status,
                inputs: BTreeMap::from([(R.to_owned(), VersionId(*input))]),
                outputs: output.map(|o| BTreeMap::from([(R.to_owned(), vec![VersionId(o)])])).unwrap_or_default(),
            });
        }
        let passed: Vec<String> = passed.iter().map(|j| format!("j{j}")).collect();
        let got = resolve_passed(&h, R, &passed);
        let want = brute_force(&h, &passed, n);
        prop_assert_eq!(got.as_ref().ok().copied(), want);
        if let Err(e) = got {
            prop_assert!(e.reason.contains("git.app"));
        }
    }
}

#[test]
fn versions_are_ordered_and_deduplicated() {
    let mut h = History::default();
    assert_eq!(
        h.add_versions(R, &[v("a"), v("b")]),
        [VersionId(1), VersionId(2)]
    );
    assert_eq!(
        h.add_versions(R, &[v("b"), v("c"), v("a")]),
        [VersionId(2), VersionId(3), VersionId(1)]
    );
    assert_eq!(
        h.latest(R).map(|(id, v)| (id, v.get("ref"))),
        Some((VersionId(3), Some("c")))
    );
    assert_eq!(h.versions[R].len(), 3);
}

#[test]
fn reasons_name_the_jobs() {
    let mut h = History::default();
    h.add_versions(R, &[v("a"), v("b")]);
    let build = |job: &str, n, id| BuildRecord {
        job: job.into(),
        number: n,
        status: BuildStatus::Succeeded,
        inputs: BTreeMap::from([(R.to_owned(), VersionId(id))]),
        outputs: BTreeMap::new(),
    };
    let err = resolve_passed(&h, R, &["unit".into()]).unwrap_err();
    assert_eq!(err.reason, "no version of `git.app` has passed `unit` yet");
    h.builds.push(build("unit", 1, 1));
    h.builds.push(build("lint", 1, 2));
    let err = resolve_passed(&h, R, &["unit".into(), "lint".into()]).unwrap_err();
    assert_eq!(
        err.reason,
        "no single version of `git.app` has passed all of `unit`, `lint` yet"
    );
    h.builds.push(build("lint", 2, 1));
    assert_eq!(
        resolve_passed(&h, R, &["unit".into(), "lint".into()]),
        Ok(VersionId(1))
    );
}

const PIPELINE: &str = r#"
resource "git" "app" {
  params {
    url = "https://example.com/app.git"
  }
}
job "unit" {
  get "git" "app" { trigger = true }
  task "t" {
    run "shell" { cmd = "true" }
  }
}
job "lint" {
  get "git" "app" { trigger = false }
  task "t" {
    run "shell" { cmd = "true" }
  }
}
job "ship" {
  get "git" "app" {
    trigger = true
    passed  = ["unit"]
  }
  task "t" {
    run "shell" { cmd = "true" }
  }
}
job "pinned" {
  get "git" "app" {
    version = { ref = "a" }
  }
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#;

#[tokio::test]
async fn triggers_and_input_resolution_follow_the_pipeline() {
    let p = pipewright_config::load_str("p.hcl", PIPELINE, &Default::default())
        .unwrap()
        .pipeline;
    assert_eq!(jobs_triggered_by_version(&p, R), ["unit"]);
    assert_eq!(jobs_triggered_by_build(&p, "unit"), ["ship"]);
    assert!(jobs_triggered_by_build(&p, "lint").is_empty());

    let store = MemoryStore::new();
    let ids = store
        .save_versions(R, &[v("a"), v("b"), v("c")])
        .await
        .unwrap();
    let h = store.snapshot();
    // A triggered build uses the triggering version; trigger = false takes the newest.
    assert_eq!(
        resolve_inputs(&p, "unit", &h, Some((R, ids[1]))).unwrap()[R],
        ids[1]
    );
    assert_eq!(resolve_inputs(&p, "lint", &h, None).unwrap()[R], ids[2]);
    assert_eq!(resolve_inputs(&p, "pinned", &h, None).unwrap()[R], ids[0]);
    // ship has nothing that passed unit yet: no build, with a reason.
    let err = resolve_inputs(&p, "ship", &h, None).unwrap_err();
    assert_eq!(err.reason, "no version of `git.app` has passed `unit` yet");

    store
        .record_build(BuildRecord {
            job: "unit".into(),
            number: 1,
            status: BuildStatus::Succeeded,
            inputs: BTreeMap::from([(R.to_owned(), ids[1])]),
            outputs: BTreeMap::new(),
        })
        .await
        .unwrap();
    let h = store.snapshot();
    assert_eq!(resolve_inputs(&p, "ship", &h, None).unwrap()[R], ids[1]);

    // Pinning the resource overrides the newest for gets without passed.
    store.pin(R, Some(ids[0])).await.unwrap();
    let h = store.snapshot();
    assert_eq!(resolve_inputs(&p, "lint", &h, None).unwrap()[R], ids[0]);
    store.pin(R, None).await.unwrap();
    assert_eq!(
        resolve_inputs(&p, "lint", &store.snapshot(), None).unwrap()[R],
        ids[2]
    );
}

/// The query-shaped store answers what the rule needs without a snapshot, and agrees with it.
#[tokio::test]
async fn facts_gathered_from_the_store_match_the_snapshot() {
    let p = pipewright_config::load_str("p.hcl", PIPELINE, &Default::default())
        .unwrap()
        .pipeline;
    let store = MemoryStore::new();
    let ids = store
        .save_versions(R, &[v("a"), v("b"), v("c")])
        .await
        .unwrap();
    store
        .record_build(BuildRecord {
            job: "unit".into(),
            number: 1,
            status: BuildStatus::Succeeded,
            inputs: BTreeMap::from([(R.to_owned(), ids[1])]),
            outputs: BTreeMap::new(),
        })
        .await
        .unwrap();
    for job in p.jobs.values() {
        for g in job.gets() {
            let gathered = InputFacts::gather(&store, g).await.unwrap();
            let from_snapshot = InputFacts::from_history(&store.snapshot(), g);
            assert_eq!(
                choose_input(g, &gathered, None).map(|(id, _)| id),
                choose_input(g, &from_snapshot, None).map(|(id, _)| id),
                "job {}",
                job.name
            );
        }
    }
    // Paging: newest first, `before` excludes.
    let page = store.versions(R, 2, None).await.unwrap();
    assert_eq!(
        page.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let page = store.versions(R, 2, Some(ids[1])).await.unwrap();
    assert_eq!(page.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(
        store.latest_version(R).await.unwrap().map(|(id, _)| id),
        Some(ids[2])
    );
    assert_eq!(store.find_version(R, &v("b")).await.unwrap(), Some(ids[1]));
}
