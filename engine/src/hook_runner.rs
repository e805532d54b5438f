//! Running the target root's transaction hooks that a transaction's changes trigger, and
//! turning what they did into progress and notices (or, for an AbortOnFail pre-transaction
//! hook, into the transaction's failure).

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::notice::Notice;
use crate::progress::HookState;
use crate::transact::Work;

impl Engine {
    /// Run the hooks of the target root that `changes` trigger at `when` (see `hooks`). A
    /// pre-transaction hook with AbortOnFail that fails stops the transaction; any other failure
    /// is a notice: what was committed stays.
    pub(crate) async fn run_hooks(
        &self,
        when: crate::hooks::When,
        changes: &crate::hooks::Changes,
        work: &mut Work<'_>,
    ) -> Result<()> {
        use crate::hooks::Ran;
        if changes.is_empty() {
            return Ok(());
        }
        let (all, problems) = crate::hooks::load(&self.layout.root);
        for problem in problems {
            work.notice_all(vec![Notice::hook(
                "(files)",
                &format!("not read: {problem}"),
            )]);
        }
        let timeout = std::time::Duration::from_secs(self.config.hook_timeout);
        for (hook, targets) in crate::hooks::triggered(&all, when, changes) {
            let description = if hook.description.is_empty() {
                hook.name.clone()
            } else {
                hook.description.clone()
            };
            tracing::info!(hook = %hook.name, targets = targets.len(), "running hook");
            work.reporter
                .hook(&hook.name, &description, HookState::Running, "");
            let outcome = crate::hooks::run(&self.layout.root, hook, &targets, timeout).await;
            for line in outcome.output.lines() {
                tracing::info!(hook = %hook.name, "{line}");
            }
            let last = outcome
                .output
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_owned();
            let (state, problem) = match &outcome.ran {
                Ran::Succeeded => (HookState::Succeeded, None),
                Ran::Missing(why) => {
                    tracing::info!(hook = %hook.name, "skipped: {why}");
                    (HookState::Skipped, None)
                }
                Ran::Skipped(why) => (HookState::Skipped, Some(format!("not run: {why}"))),
                Ran::Failed(code) => (
                    HookState::Failed,
                    Some(match code {
                        Some(c) => format!("failed with exit code {c}"),
                        None => "was killed by a signal".to_owned(),
                    }),
                ),
                Ran::TimedOut => (
                    HookState::TimedOut,
                    Some(format!(
                        "did not finish within hook_timeout ({} s) and was killed",
                        self.config.hook_timeout
                    )),
                ),
            };
            let tail = crate::error::bounded(outcome.output.clone());
            work.reporter.hook(&hook.name, &description, state, &tail);
            let Some(problem) = problem else { continue };
            let problem = if last.is_empty() {
                problem
            } else {
                format!("{problem}: {last}")
            };
            tracing::warn!(hook = %hook.name, "{problem}");
            if when == crate::hooks::When::PreTransaction && hook.abort_on_fail {
                return Err(Error::HookAborted {
                    hook: hook.name.clone(),
                    reason: problem,
                });
            }
            work.notice_all(vec![Notice::hook(&hook.name, &problem)]);
        }
        Ok(())
    }
}
