//! Tasks owned by whoever spawned them: kept, joined at shutdown, aborted if dropped unjoined.
//!
//! A detached `tokio::spawn` outlives the part that started it and is never waited for; an
//! [`OwnedTask`] is a field of its owner, which joins it in its shutdown stage. When a stage is
//! cut off (see `app::shutdown`) the handle stays with its owner, and dropping the owner aborts
//! what is still running.

use std::future::Future;

use tokio::task::JoinHandle;

/// A spawned task and its name, for the log.
#[derive(Debug)]
pub(crate) struct OwnedTask {
    name: &'static str,
    handle: Option<JoinHandle<()>>,
}

impl OwnedTask {
    /// Spawns `future` on the current runtime.
    pub(crate) fn spawn(
        name: &'static str,
        future: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        Self::of(name, tokio::spawn(future))
    }

    /// Takes ownership of a task spawned elsewhere.
    pub(crate) fn of(name: &'static str, handle: JoinHandle<()>) -> Self {
        OwnedTask {
            name,
            handle: Some(handle),
        }
    }

    /// Waits for the task to end. Cancel-safe: if this future is dropped, the task stays owned
    /// (and is aborted when the owner drops it).
    pub(crate) async fn join(&mut self) {
        let Some(handle) = self.handle.as_mut() else {
            return;
        };
        let result = handle.await;
        self.handle = None;
        if let Err(e) = result
            && e.is_panic()
        {
            tracing::error!(task = self.name, error = %e, "task panicked");
        }
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && !handle.is_finished()
        {
            tracing::debug!(task = self.name, "task aborted");
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_joined_is_done_and_one_dropped_is_aborted() {
        let mut done = OwnedTask::spawn("done", async {});
        done.join().await;
        assert!(done.handle.is_none());

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let hanging = OwnedTask::spawn("hanging", async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(hanging);
        // the task's end drops the sender
        assert!(rx.await.is_err());
    }
}
