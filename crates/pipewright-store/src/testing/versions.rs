//! Checks of the [`VersionStore`] part of a store.

use super::{check, ok, unique};
use crate::{Store, VersionId, VersionStore};
use pipewright_core::{BuildStatus, Version};
use pipewright_versions::BuildRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn v(r: &str) -> Version {
    Version::from_pairs([("ref", r)])
}

const QUERIES: &str = "version queries";

/// Saved versions keep their ids (duplicates too), the newest is the latest, pages run newest
/// first by `before`, and a version is found by value.
pub async fn queries(store: Arc<dyn Store>) {
    let s: &dyn VersionStore = store.as_ref();
    let r = unique("git.app");
    let none = ok(QUERIES, "latest_version", s.latest_version(&r).await);
    check(
        QUERIES,
        none.is_none(),
        "a resource without versions has a latest one",
    );
    let ids = ok(
        QUERIES,
        "save",
        s.save_versions(&r, &[v("a"), v("b"), v("c")]).await,
    );
    check(
        QUERIES,
        ids.len() == 3,
        format!("3 versions got {} ids", ids.len()),
    );
    check(
        QUERIES,
        ids.windows(2).all(|w| w[0] < w[1]),
        format!("ids not growing: {ids:?}"),
    );
    let again = ok(
        QUERIES,
        "save",
        s.save_versions(&r, &[v("c"), v("d")]).await,
    );
    check(
        QUERIES,
        again.first() == ids.get(2),
        "a saved-again version got a new id",
    );
    check(
        QUERIES,
        again[1] > ids[2],
        "a new version's id is not the highest",
    );
    let d = again[1];

    let latest = ok(QUERIES, "latest_version", s.latest_version(&r).await);
    check(
        QUERIES,
        latest == Some((d, v("d"))),
        format!("latest is {latest:?}"),
    );
    let got = ok(QUERIES, "version", s.version(&r, ids[1]).await);
    check(
        QUERIES,
        got == Some(v("b")),
        format!("version by id is {got:?}"),
    );
    let found = ok(QUERIES, "find_version", s.find_version(&r, &v("a")).await);
    check(QUERIES, found == Some(ids[0]), format!("find a: {found:?}"));
    let lost = ok(QUERIES, "find_version", s.find_version(&r, &v("zzz")).await);
    check(QUERIES, lost.is_none(), "an unknown version was found");

    let refs = |page: Vec<(VersionId, Version)>| -> Vec<String> {
        page.into_iter()
            .filter_map(|(_, ver)| ver.get("ref").map(str::to_owned))
            .collect()
    };
    let p1 = refs(ok(QUERIES, "versions", s.versions(&r, 2, None).await));
    check(QUERIES, p1 == ["d", "c"], format!("first page {p1:?}"));
    let p2 = refs(ok(
        QUERIES,
        "versions",
        s.versions(&r, 2, Some(ids[2])).await,
    ));
    check(QUERIES, p2 == ["b", "a"], format!("second page {p2:?}"));
    let p3 = refs(ok(
        QUERIES,
        "versions",
        s.versions(&r, 2, Some(ids[0])).await,
    ));
    check(QUERIES, p3.is_empty(), format!("third page {p3:?}"));
    let other = ok(
        QUERIES,
        "versions",
        s.versions(&unique("git.none"), 5, None).await,
    );
    check(
        QUERIES,
        other.is_empty(),
        "an unknown resource has versions",
    );
}

const PASSED: &str = "passed versions and pins";

/// Versions used or produced by a succeeded or warning build pass its job, a failed build's do
/// not; replacing a record by (job, number) updates it; pins are set, read and cleared.
pub async fn passed_and_pins(store: Arc<dyn Store>) {
    let s: &dyn VersionStore = store.as_ref();
    let r = unique("git.app");
    let job = unique("unit");
    let ids = ok(
        PASSED,
        "save",
        s.save_versions(&r, &[v("a"), v("b"), v("c"), v("d")]).await,
    );
    let record =
        |number: u64, status: BuildStatus, input: VersionId, out: Vec<VersionId>| BuildRecord {
            job: job.clone(),
            number,
            status,
            inputs: BTreeMap::from([(r.clone(), input)]),
            outputs: BTreeMap::from([(r.clone(), out)]),
        };
    ok(
        PASSED,
        "record",
        s.record_build(record(1, BuildStatus::Succeeded, ids[0], vec![]))
            .await,
    );
    ok(
        PASSED,
        "record",
        s.record_build(record(2, BuildStatus::Failed, ids[1], vec![]))
            .await,
    );
    ok(
        PASSED,
        "record",
        s.record_build(record(3, BuildStatus::Warning, ids[2], vec![ids[3]]))
            .await,
    );
    ok(
        PASSED,
        "record",
        s.record_build(record(4, BuildStatus::Running, ids[1], vec![]))
            .await,
    );
    let passed = ok(PASSED, "passed_versions", s.passed_versions(&job, &r).await);
    let want = BTreeSet::from([ids[0], ids[2], ids[3]]);
    check(
        PASSED,
        passed == want,
        format!("passed {passed:?}, want {want:?}"),
    );
    ok(
        PASSED,
        "re-record",
        s.record_build(record(4, BuildStatus::Succeeded, ids[1], vec![]))
            .await,
    );
    let passed = ok(PASSED, "passed_versions", s.passed_versions(&job, &r).await);
    check(
        PASSED,
        passed.contains(&ids[1]),
        "a re-recorded succeeded build does not pass",
    );
    let elsewhere = ok(
        PASSED,
        "passed_versions",
        s.passed_versions(&unique("other"), &r).await,
    );
    check(
        PASSED,
        elsewhere.is_empty(),
        "another job has passed versions",
    );

    check(
        PASSED,
        ok(PASSED, "pinned", s.pinned(&r).await).is_none(),
        "pinned at first",
    );
    ok(PASSED, "pin", s.pin(&r, Some(ids[1])).await);
    let pin = ok(PASSED, "pinned", s.pinned(&r).await);
    check(PASSED, pin == Some(ids[1]), format!("pinned to {pin:?}"));
    ok(PASSED, "unpin", s.pin(&r, None).await);
    check(
        PASSED,
        ok(PASSED, "pinned", s.pinned(&r).await).is_none(),
        "unpin kept the pin",
    );
}
