//! Checks of [`BuildStore`](crate::BuildStore): numbering, the state machine, claims,
//! fencing, the one terminal result, re-queue and the listings.

use super::{Start, broke, check, claimed_build, fresh_build, get, new_build, ok, unique};
use crate::{BuildId, BuildState, Store, StoreError, StoreResult};
use pipewright_core::{BuildStatus, StepId, StepStatus};
use pipewright_versions::VersionId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn stale<T: std::fmt::Debug>(rule: &str, what: &str, r: StoreResult<T>) {
    match r {
        Err(StoreError::Stale { .. }) => {}
        other => broke(
            rule,
            format!("{what}: expected a stale-attempt error, got {other:?}"),
        ),
    }
}

fn conflict<T: std::fmt::Debug>(rule: &str, what: &str, r: StoreResult<T>) {
    match r {
        Err(StoreError::Conflict { .. }) => {}
        other => broke(rule, format!("{what}: expected a conflict, got {other:?}")),
    }
}

const NUMBERING: &str = "numbering";

/// Concurrent creates of one job are numbered 1..=n without gaps or duplicates, with distinct
/// ids; another job counts on its own; inputs are kept as given.
pub async fn numbering(store: Arc<dyn Store>) {
    let p = unique(NUMBERING);
    let mut tasks = Vec::new();
    let start = Start::new(48);
    for i in 0..48u64 {
        let (store, p, start) = (store.clone(), p.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.go(store.as_ref()).await;
            let job = if i % 4 == 0 { "other" } else { "job" };
            let mut nb = new_build(&p, job);
            nb.inputs.insert("git.app".into(), VersionId(i));
            store.create_build(nb).await.map(|b| (i, b))
        }));
    }
    let (mut numbers, mut other, mut ids) = (Vec::new(), Vec::new(), BTreeSet::new());
    for t in tasks {
        let joined = t.await.unwrap_or_else(|e| broke(NUMBERING, e));
        let (i, b) = ok(NUMBERING, "create_build", joined);
        check(
            NUMBERING,
            ids.insert(b.id),
            format!("id {} given twice", b.id),
        );
        check(
            NUMBERING,
            b.inputs.get("git.app") == Some(&VersionId(i)),
            format!("build {} lost its inputs: {:?}", b.id, b.inputs),
        );
        check(
            NUMBERING,
            b.state == BuildState::Pending && b.attempt == 0 && b.worker.is_none(),
            format!("a new build is {} at attempt {}", b.state, b.attempt),
        );
        if b.job == "other" {
            &mut other
        } else {
            &mut numbers
        }
        .push(b.number);
    }
    numbers.sort_unstable();
    other.sort_unstable();
    check(
        NUMBERING,
        numbers == (1..=36).collect::<Vec<_>>(),
        format!("36 concurrent creates got numbers {numbers:?}"),
    );
    check(
        NUMBERING,
        other == (1..=12).collect::<Vec<_>>(),
        format!("another job's 12 creates got numbers {other:?}"),
    );
    let newest = ok(
        NUMBERING,
        "job_builds",
        store.job_builds(&p, "job", 1, None).await,
    );
    check(
        NUMBERING,
        newest.first().map(|b| b.number) == Some(36),
        "the newest build of the job is not number 36",
    );
}

const STATES: &str = "state machine";

/// `pending → claimed(1) → running → succeeded`, each transition recorded, every call out of
/// order rejected; unknown builds are not found.
pub async fn state_machine(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let b = fresh_build(s, STATES).await;
    check(
        STATES,
        b.state == BuildState::Pending,
        "a new build is not pending",
    );
    check(
        STATES,
        b.status() == BuildStatus::Pending,
        "pending shows as pending",
    );
    check(
        STATES,
        b.number == 1,
        format!("the first build is number {}", b.number),
    );
    conflict(STATES, "start before claim", s.start_build(b.id, 0).await);
    conflict(
        STATES,
        "requeue of a pending build",
        s.requeue_build(b.id, 0).await,
    );
    conflict(
        STATES,
        "approve without a gate",
        s.approve_build(b.id, "alice").await,
    );

    let c = ok(STATES, "claim", s.claim_build(b.id, 1, "worker-a").await);
    check(
        STATES,
        c.state == BuildState::Claimed,
        format!("claimed build is {}", c.state),
    );
    check(
        STATES,
        c.attempt == 1,
        format!("first claim is attempt {}", c.attempt),
    );
    check(
        STATES,
        c.worker.as_deref() == Some("worker-a"),
        "claim did not record the worker",
    );
    check(
        STATES,
        c.status() == BuildStatus::Pending,
        "a claimed build shows as pending",
    );
    conflict(
        STATES,
        "second claim",
        s.claim_build(b.id, 2, "worker-b").await,
    );

    let r = ok(STATES, "start", s.start_build(b.id, 1).await);
    check(
        STATES,
        r.state == BuildState::Running,
        format!("started build is {}", r.state),
    );
    check(
        STATES,
        r.started_at_ms.is_some(),
        "start did not record a time",
    );
    let again = ok(STATES, "repeated start", s.start_build(b.id, 1).await);
    check(STATES, again == r, "a repeated start changed the build");

    let inv = s.finish_build(b.id, 1, BuildStatus::Running, None).await;
    check(
        STATES,
        matches!(inv, Err(StoreError::Invalid(_))),
        format!("finishing as running: expected invalid, got {inv:?}"),
    );
    let f = ok(
        STATES,
        "finish",
        s.finish_build(b.id, 1, BuildStatus::Succeeded, None).await,
    );
    check(
        STATES,
        f.state == BuildState::Succeeded,
        format!("finished build is {}", f.state),
    );
    check(
        STATES,
        f.finished_at_ms.is_some(),
        "finish did not record a time",
    );
    check(
        STATES,
        get(s, STATES, b.id).await == f,
        "the stored build differs from finish's",
    );
    conflict(
        STATES,
        "claim after finish",
        s.claim_build(b.id, 2, "worker-b").await,
    );
    conflict(STATES, "start after finish", s.start_build(b.id, 1).await);
    conflict(
        STATES,
        "requeue after finish",
        s.requeue_build(b.id, 1).await,
    );

    let missing = BuildId(u64::MAX / 2);
    check(
        STATES,
        matches!(s.build(missing).await, Ok(None)),
        "an unknown build is not `None`",
    );
    let nf = s.claim_build(missing, 1, "w").await;
    check(
        STATES,
        matches!(nf, Err(StoreError::NotFound { .. })),
        format!("claiming an unknown build: expected not found, got {nf:?}"),
    );

    let p = unique(STATES);
    let mut rerun = new_build(&p, "job");
    rerun.rerun_of = Some(b.id);
    let rr = ok(STATES, "create a rerun", s.create_build(rerun).await);
    check(STATES, rr.rerun_of == Some(b.id), "rerun_of is not kept");
}

const APPROVAL: &str = "approval";

/// A build needing two approvals waits until two distinct people approve it.
pub async fn approval(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let mut nb = new_build(&unique(APPROVAL), "deploy");
    nb.approvals_required = 2;
    let b = ok(APPROVAL, "create", s.create_build(nb).await);
    check(
        APPROVAL,
        b.state == BuildState::WaitingForApproval,
        format!("it is {}", b.state),
    );
    check(
        APPROVAL,
        b.status() == BuildStatus::WaitingForApproval,
        "status is not waiting",
    );
    conflict(
        APPROVAL,
        "claim before approval",
        s.claim_build(b.id, 1, "w").await,
    );
    for _ in 0..2 {
        let a = ok(
            APPROVAL,
            "approve by alice",
            s.approve_build(b.id, "alice").await,
        );
        check(
            APPROVAL,
            a.state == BuildState::WaitingForApproval,
            "one approver counted twice",
        );
        check(
            APPROVAL,
            a.approved_by == ["alice"],
            format!("approvers {:?}", a.approved_by),
        );
    }
    let a = ok(
        APPROVAL,
        "approve by bob",
        s.approve_build(b.id, "bob").await,
    );
    check(
        APPROVAL,
        a.state == BuildState::Pending,
        format!("approved build is {}", a.state),
    );
    check(
        APPROVAL,
        a.approved_by == ["alice", "bob"],
        format!("approvers {:?}", a.approved_by),
    );
    conflict(
        APPROVAL,
        "approve a pending build",
        s.approve_build(b.id, "carol").await,
    );
    ok(
        APPROVAL,
        "claim after approval",
        s.claim_build(b.id, 1, "w").await,
    );
}

const CLAIMS: &str = "concurrent claims";

/// Of many concurrent claims of one attempt, exactly one wins and the build names its worker.
pub async fn concurrent_claims(store: Arc<dyn Store>) {
    // Several builds at once, so the claims of each overlap however the backend schedules.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(fresh_build(store.as_ref(), CLAIMS).await.id);
    }
    let mut tasks = Vec::new();
    let start = Start::new(ids.len() * 12);
    for &id in &ids {
        for i in 0..12 {
            let (store, start) = (store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.go(store.as_ref()).await;
                let worker = format!("worker-{i}");
                (id, store.claim_build(id, 1, &worker).await, worker)
            }));
        }
    }
    let mut winners: BTreeMap<BuildId, Vec<String>> = BTreeMap::new();
    for t in tasks {
        match t.await.unwrap_or_else(|e| broke(CLAIMS, e)) {
            (id, Ok(_), w) => winners.entry(id).or_default().push(w),
            (_, Err(StoreError::Conflict { .. } | StoreError::Stale { .. }), _) => {}
            (_, Err(e), _) => broke(CLAIMS, format!("a losing claim failed with {e}")),
        }
    }
    for id in ids {
        let won = winners.get(&id).cloned().unwrap_or_default();
        check(
            CLAIMS,
            won.len() == 1,
            format!("build {id}: winners {won:?}"),
        );
        let now = get(store.as_ref(), CLAIMS, id).await;
        check(
            CLAIMS,
            now.attempt == 1 && now.worker.as_ref() == won.first(),
            format!(
                "build {id} is at attempt {} held by {:?}",
                now.attempt, now.worker
            ),
        );
    }
}

const FENCING: &str = "fencing";

/// After attempt 1 is re-queued and attempt 2 claimed, every write of attempt 1 is stale and
/// changes nothing.
pub async fn fencing(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let id = claimed_build(s, FENCING, "old").await;
    ok(FENCING, "start", s.start_build(id, 1).await);
    ok(FENCING, "requeue", s.requeue_build(id, 1).await);
    stale(
        FENCING,
        "claim of the re-queued attempt",
        s.claim_build(id, 1, "old").await,
    );
    ok(
        FENCING,
        "claim attempt 2",
        s.claim_build(id, 2, "new").await,
    );
    let before = get(s, FENCING, id).await;

    let step = step_summary("unit", StepStatus::Failed);
    stale(FENCING, "start by attempt 1", s.start_build(id, 1).await);
    stale(
        FENCING,
        "step by attempt 1",
        s.record_step(id, 1, &step).await,
    );
    stale(
        FENCING,
        "finish by attempt 1",
        s.finish_build(id, 1, BuildStatus::Failed, None).await,
    );
    stale(
        FENCING,
        "requeue by attempt 1",
        s.requeue_build(id, 1).await,
    );
    stale(
        FENCING,
        "events by attempt 1",
        s.append_events(id, 1, &[]).await,
    );
    stale(FENCING, "a future attempt", s.start_build(id, 3).await);
    check(
        FENCING,
        get(s, FENCING, id).await == before,
        "a stale write changed the build",
    );
    check(
        FENCING,
        ok(FENCING, "build_steps", s.build_steps(id).await).is_empty(),
        "a stale step summary was kept",
    );
    let r = ok(FENCING, "start attempt 2", s.start_build(id, 2).await);
    check(
        FENCING,
        r.worker.as_deref() == Some("new"),
        "the new worker was replaced",
    );
    let f = ok(
        FENCING,
        "finish",
        s.finish_build(id, 2, BuildStatus::Succeeded, None).await,
    );
    check(
        FENCING,
        f.state == BuildState::Succeeded,
        "attempt 2 could not finish",
    );
    stale(
        FENCING,
        "finish by attempt 1 after the end",
        s.finish_build(id, 1, BuildStatus::Failed, None).await,
    );
}

const TERMINAL: &str = "exactly one terminal";

/// A finished build keeps its one result: the same finish again is accepted unchanged, any
/// other is a conflict; of concurrent finishes with different statuses exactly one wins.
pub async fn exactly_one_terminal(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let id = claimed_build(s, TERMINAL, "w").await;
    ok(TERMINAL, "start", s.start_build(id, 1).await);
    let reason = Some("step `unit` failed".to_owned());
    let f = ok(
        TERMINAL,
        "finish",
        s.finish_build(id, 1, BuildStatus::Failed, reason.clone())
            .await,
    );
    check(
        TERMINAL,
        f.reason == reason,
        format!("the reason is {:?}", f.reason),
    );
    let again = ok(
        TERMINAL,
        "the same finish again",
        s.finish_build(id, 1, BuildStatus::Failed, reason).await,
    );
    check(TERMINAL, again == f, "a repeated finish changed the build");
    for other in [BuildStatus::Succeeded, BuildStatus::Cancelled] {
        conflict(
            TERMINAL,
            "another finish",
            s.finish_build(id, 1, other, None).await,
        );
    }
    check(
        TERMINAL,
        get(s, TERMINAL, id).await == f,
        "a rejected finish changed the build",
    );

    // Several builds at once, so the finishes of each overlap however the backend schedules.
    let statuses = [
        BuildStatus::Succeeded,
        BuildStatus::Failed,
        BuildStatus::Warning,
        BuildStatus::Errored,
        BuildStatus::Cancelled,
    ];
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(claimed_build(s, TERMINAL, "w").await);
    }
    let mut tasks = Vec::new();
    let start = Start::new(ids.len() * statuses.len());
    for &id in &ids {
        for st in statuses {
            let (store, start) = (store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.go(store.as_ref()).await;
                (id, st, store.finish_build(id, 1, st, None).await)
            }));
        }
    }
    let mut won: BTreeMap<BuildId, Vec<BuildStatus>> = BTreeMap::new();
    for t in tasks {
        match t.await.unwrap_or_else(|e| broke(TERMINAL, e)) {
            (id, st, Ok(_)) => won.entry(id).or_default().push(st),
            (_, _, Err(StoreError::Conflict { .. })) => {}
            (_, _, Err(e)) => broke(TERMINAL, format!("a losing finish failed with {e}")),
        }
    }
    for id in ids {
        let winners = won.get(&id).cloned().unwrap_or_default();
        check(
            TERMINAL,
            winners.len() == 1,
            format!("concurrent finishes of build {id} that won: {winners:?}"),
        );
        let end = get(s, TERMINAL, id).await;
        check(
            TERMINAL,
            Some(&end.status()) == winners.first(),
            format!("build {id}: the kept status is not the winner's"),
        );
    }

    let pending = fresh_build(s, TERMINAL).await;
    let c = ok(
        TERMINAL,
        "cancel a pending build",
        s.finish_build(pending.id, 0, BuildStatus::Cancelled, None)
            .await,
    );
    check(
        TERMINAL,
        c.state == BuildState::Cancelled,
        "a pending build could not be cancelled",
    );
}

const REQUEUE: &str = "re-queue";

/// A re-queued build is pending at the same attempt without a worker or step summaries, and
/// the next claim is attempt + 1.
pub async fn requeue(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let id = claimed_build(s, REQUEUE, "a").await;
    let q = ok(
        REQUEUE,
        "requeue a claimed build",
        s.requeue_build(id, 1).await,
    );
    check(
        REQUEUE,
        q.state == BuildState::Pending,
        format!("re-queued build is {}", q.state),
    );
    check(
        REQUEUE,
        q.attempt == 1,
        format!("re-queue changed the attempt to {}", q.attempt),
    );
    check(REQUEUE, q.worker.is_none(), "re-queue kept the worker");
    let c = ok(REQUEUE, "claim attempt 2", s.claim_build(id, 2, "b").await);
    check(
        REQUEUE,
        c.attempt == 2 && c.worker.as_deref() == Some("b"),
        "claim after re-queue",
    );
    ok(REQUEUE, "start", s.start_build(id, 2).await);
    ok(
        REQUEUE,
        "step",
        s.record_step(id, 2, &step_summary("unit", StepStatus::Running))
            .await,
    );
    let q = ok(
        REQUEUE,
        "requeue a running build",
        s.requeue_build(id, 2).await,
    );
    check(
        REQUEUE,
        q.state == BuildState::Pending && q.attempt == 2,
        "second re-queue",
    );
    check(
        REQUEUE,
        q.started_at_ms.is_none(),
        "re-queue kept the start time",
    );
    check(
        REQUEUE,
        ok(REQUEUE, "build_steps", s.build_steps(id).await).is_empty(),
        "re-queue kept the lapsed attempt's steps",
    );
    let bad = s.claim_build(id, 4, "c").await;
    check(
        REQUEUE,
        matches!(bad, Err(StoreError::Invalid(_))),
        format!("a claim skipping attempt 3: expected invalid, got {bad:?}"),
    );
    let c = ok(REQUEUE, "claim attempt 3", s.claim_build(id, 3, "c").await);
    check(
        REQUEUE,
        c.attempt == 3,
        format!("third claim is attempt {}", c.attempt),
    );
}

const PAGING: &str = "paging";

/// A job's builds come newest first, in pages by `limit` and `before`, and only its own.
pub async fn paging(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let p = unique(PAGING);
    for job in [
        "job", "other", "job", "job", "job", "other", "job", "job", "job",
    ] {
        ok(PAGING, "create", s.create_build(new_build(&p, job)).await);
    }
    let numbers = |bs: Vec<crate::Build>| -> Vec<u64> {
        check(
            PAGING,
            bs.iter().all(|b| b.job == "job" && b.pipeline == p),
            "foreign build",
        );
        bs.into_iter().map(|b| b.number).collect()
    };
    let pages = [
        (None, vec![7, 6, 5]),
        (Some(5), vec![4, 3, 2]),
        (Some(2), vec![1]),
        (Some(1), vec![]),
    ];
    for (before, want) in pages {
        let got = numbers(ok(
            PAGING,
            "job_builds",
            s.job_builds(&p, "job", 3, before).await,
        ));
        check(
            PAGING,
            got == want,
            format!("page before {before:?}: {got:?}, want {want:?}"),
        );
    }
    let all = numbers(ok(
        PAGING,
        "job_builds",
        s.job_builds(&p, "job", 100, None).await,
    ));
    check(
        PAGING,
        all == [7, 6, 5, 4, 3, 2, 1],
        format!("all builds: {all:?}"),
    );
    let none = ok(
        PAGING,
        "job_builds",
        s.job_builds(&p, "nothing", 10, None).await,
    );
    check(PAGING, none.is_empty(), "a job without builds lists some");
}

const RECOVERY: &str = "recovery listing";

/// Builds in given states, oldest first, paged by `after`: what a restarted server re-attaches
/// or re-queues.
pub async fn recovery_listing(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pending = fresh_build(s, RECOVERY).await.id;
    let claimed = claimed_build(s, RECOVERY, "w").await;
    let running = claimed_build(s, RECOVERY, "w").await;
    ok(RECOVERY, "start", s.start_build(running, 1).await);
    let done = claimed_build(s, RECOVERY, "w").await;
    ok(
        RECOVERY,
        "finish",
        s.finish_build(done, 1, BuildStatus::Errored, None).await,
    );

    let held = [BuildState::Claimed, BuildState::Running];
    let after = Some(BuildId(pending.0.saturating_sub(1)));
    let mut seen = Vec::new();
    let mut cursor = after;
    loop {
        let page = ok(
            RECOVERY,
            "builds_in_state",
            s.builds_in_state(&held, 1, cursor).await,
        );
        let Some(b) = page.first() else { break };
        check(RECOVERY, page.len() == 1, "a page is longer than its limit");
        check(
            RECOVERY,
            b.state.is_held(),
            format!("build {} is {}", b.id, b.state),
        );
        check(
            RECOVERY,
            cursor.is_none_or(|c| b.id > c),
            "pages are not in id order",
        );
        seen.push(b.id);
        cursor = Some(b.id);
    }
    check(
        RECOVERY,
        seen.contains(&claimed),
        "the claimed build is not listed",
    );
    check(
        RECOVERY,
        seen.contains(&running),
        "the running build is not listed",
    );
    check(
        RECOVERY,
        !seen.contains(&pending),
        "a pending build is listed as held",
    );
    check(
        RECOVERY,
        !seen.contains(&done),
        "a finished build is listed as held",
    );
    let p = ok(
        RECOVERY,
        "builds_in_state",
        s.builds_in_state(&[BuildState::Pending], 1000, after).await,
    );
    check(
        RECOVERY,
        p.iter().any(|b| b.id == pending),
        "the pending build is not listed",
    );
}

fn step_summary(name: &str, status: StepStatus) -> crate::StepSummary {
    crate::StepSummary {
        step: StepId::new([name], pipewright_core::StepRole::Step),
        status,
        attempts: 1,
        duration_ms: None,
        reason: None,
    }
}

const STEPS: &str = "steps";

/// Step summaries replace by step id, keep their first-recorded order, and are only written
/// while a build is held.
pub async fn steps(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let id = claimed_build(s, STEPS, "w").await;
    ok(STEPS, "start", s.start_build(id, 1).await);
    let first = step_summary("get/git.app", StepStatus::Running);
    ok(STEPS, "record", s.record_step(id, 1, &first).await);
    ok(
        STEPS,
        "record",
        s.record_step(id, 1, &step_summary("unit", StepStatus::Running))
            .await,
    );
    let done = crate::StepSummary {
        status: StepStatus::Failed,
        attempts: 2,
        duration_ms: Some(1500),
        reason: Some("exit code 1 (token ***)".to_owned()),
        ..first
    };
    ok(STEPS, "replace", s.record_step(id, 1, &done).await);
    let got = ok(STEPS, "build_steps", s.build_steps(id).await);
    let names: Vec<&str> = got.iter().map(|st| st.step.leaf()).collect();
    check(
        STEPS,
        names == ["get/git.app", "unit"],
        format!("steps in order {names:?}"),
    );
    check(
        STEPS,
        got.first() == Some(&done),
        format!("replaced step reads {:?}", got.first()),
    );
    ok(
        STEPS,
        "finish",
        s.finish_build(id, 1, BuildStatus::Failed, None).await,
    );
    conflict(
        STEPS,
        "step after finish",
        s.record_step(id, 1, &done).await,
    );
    let other = fresh_build(s, STEPS).await;
    check(
        STEPS,
        ok(STEPS, "build_steps", s.build_steps(other.id).await).is_empty(),
        "a new build has steps",
    );
}
