//! Control steps: `in_parallel` and `if` / `else_if` / `else`.

use super::*;

impl Build<'_> {
    pub(super) async fn run_parallel(
        &self,
        p: &InParallel,
        exports: &mut Exports,
        token: &CancellationToken,
    ) -> Flow {
        let mut dag = Dag::new();
        for s in &p.steps {
            dag.add_node(s);
        }
        let results: Mutex<BTreeMap<usize, Exports>> = Mutex::new(BTreeMap::new());
        let snapshot = exports.clone();
        let exec = pipewright_dag::Executor::new(&dag)
            .limit(p.limit as usize)
            .fail_fast(p.fail_fast)
            .cancel_token(token.clone());
        let report = exec
            .run(|id, step, child| {
                let mut mine = snapshot.clone();
                let results = &results;
                async move {
                    let flow = self.run_step(step, &mut mine, &child).await;
                    if let Ok(mut r) = results.lock() {
                        r.insert(id.0, mine);
                    }
                    match flow {
                        Flow::Ok => Outcome::Succeeded,
                        Flow::Failed(r) => Outcome::Failed(r),
                        Flow::Cancelled => Outcome::Failed("cancelled".into()),
                    }
                }
            })
            .await;
        // Siblings do not see each other's exports; all of them are visible afterwards.
        for (_, e) in results.into_inner().unwrap_or_default() {
            exports.extend(e);
        }
        let mut failure = None;
        for (i, state) in report.states().iter().enumerate() {
            match state {
                NodeState::Skipped { reason } => {
                    self.skip_all(std::slice::from_ref(&p.steps[i]), reason)
                        .await;
                }
                NodeState::Failed { reason } if failure.is_none() && reason != "cancelled" => {
                    failure = Some(reason.clone());
                }
                _ => {}
            }
        }
        match failure {
            Some(r) => Flow::Failed(r),
            None if token.is_cancelled() => Flow::Cancelled,
            None if !report.all_succeeded() => {
                Flow::Failed("a parallel step did not finish".into())
            }
            None => Flow::Ok,
        }
    }

    pub(super) async fn run_if(
        &self,
        chain: &IfChain,
        exports: &mut Exports,
        token: &CancellationToken,
    ) -> Flow {
        let lookup = |name: &str| -> Option<String> {
            exports
                .get(name)
                .or_else(|| self.base_env.get(name))
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let chosen = chain
            .branches
            .iter()
            .position(|b| b.condition.eval(&lookup));
        for (i, b) in chain.branches.iter().enumerate() {
            if Some(i) != chosen {
                let why = match chosen {
                    Some(c) => format!("branch `{}` was taken", chain.branches[c].label),
                    None => format!("condition `{}` was false", b.condition_text),
                };
                self.skip_all(&b.steps, &why).await;
            }
        }
        match chosen {
            Some(i) => {
                tracing::debug!(branch = %chain.branches[i].label, "if: branch taken");
                if let Some(e) = &chain.else_steps {
                    self.skip_all(
                        e,
                        &format!("branch `{}` was taken", chain.branches[i].label),
                    )
                    .await;
                }
                self.run_steps(&chain.branches[i].steps, exports, token)
                    .await
            }
            None => match &chain.else_steps {
                Some(e) => self.run_steps(e, exports, token).await,
                None => Flow::Ok,
            },
        }
    }
}
