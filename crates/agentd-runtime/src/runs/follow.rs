//! Following a run: its stored events after a position, then the live ones from the hub, each once
//! and in `seq` order, until the run ends or pauses.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use agentd_core::run::{RunEvent, RunEventData, RunStatus};
use agentd_core::{RunId, TenantId};
use agentd_store::Store;
use tokio::sync::broadcast::error::RecvError;

use super::hub::{LiveRun, RunHub};
use crate::Error;

/// A run's events in `seq` order, each once: stored ones first, then live ones, until the run ends
/// (a terminal event) or pauses (`RunPaused` as its latest event).
pub struct RunEvents {
    store: Arc<dyn Store>,
    hub: Arc<RunHub>,
    tenant: TenantId,
    run_id: RunId,
    last: u64,
    queue: VecDeque<Arc<RunEvent>>,
    live: Option<(
        Arc<LiveRun>,
        tokio::sync::broadcast::Receiver<Arc<RunEvent>>,
    )>,
    done: bool,
}

impl RunEvents {
    /// Follows `run_id` from after `after_seq`.
    pub(super) fn new(
        store: Arc<dyn Store>,
        hub: Arc<RunHub>,
        tenant: TenantId,
        run_id: RunId,
        after_seq: u64,
    ) -> Self {
        Self {
            store,
            hub,
            tenant,
            run_id,
            last: after_seq,
            queue: VecDeque::new(),
            live: None,
            done: false,
        }
    }

    /// The next event, or `None` once the run has ended or paused.
    pub async fn next(&mut self) -> Option<Arc<RunEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.queue.pop_front() {
                if event.seq <= self.last {
                    continue;
                }
                self.last = event.seq;
                let pauses = matches!(event.data, RunEventData::RunPaused { .. });
                if event.data.is_terminal() {
                    self.done = true;
                } else if pauses && self.queue.is_empty() {
                    self.done = self.paused_here().await.unwrap_or(true);
                    if self.done {
                        self.live = None;
                    }
                }
                return Some(event);
            }
            if let Err(error) = self.refill().await {
                tracing::error!(error = %error, run.id = %self.run_id, "reading run events failed");
                self.done = true;
            }
        }
    }

    /// Turns this into a `Stream`.
    pub fn into_stream(self) -> impl futures::Stream<Item = Arc<RunEvent>> + Send {
        futures::stream::unfold(self, |mut events| async move {
            events.next().await.map(|event| (event, events))
        })
    }

    async fn refill(&mut self) -> Result<(), Error> {
        if let Some((live, receiver)) = &mut self.live {
            match receiver.recv().await {
                Ok(event) => self.queue.push_back(event),
                Err(RecvError::Lagged(_)) => {
                    let missed = live.buffered_after(self.last);
                    self.queue.extend(missed);
                }
                Err(RecvError::Closed) => self.live = None,
            }
            return Ok(());
        }
        if let Some(live) = self.hub.get(self.run_id) {
            let attachment = live.attach(self.last);
            if self.last < attachment.base_seq {
                let stored = self
                    .store
                    .list_run_events(self.tenant, self.run_id, self.last, u32::MAX)
                    .await?;
                self.queue.extend(
                    stored
                        .into_iter()
                        .filter(|e| e.seq <= attachment.base_seq)
                        .map(Arc::new),
                );
            }
            self.queue.extend(attachment.buffered);
            if !attachment.finished {
                self.live = Some((live, attachment.receiver));
            }
            if !self.queue.is_empty() || self.live.is_some() {
                return Ok(());
            }
        }
        let stored = self
            .store
            .list_run_events(self.tenant, self.run_id, self.last, 1000)
            .await?;
        if !stored.is_empty() {
            self.queue.extend(stored.into_iter().map(Arc::new));
            return Ok(());
        }
        // Nothing newer is stored: the run has paused or ended, or runs elsewhere.
        let run = self.store.get_run(self.tenant, self.run_id).await?;
        match run {
            Some(run) if run.status.is_terminal() || run.status == RunStatus::Paused => {
                if self.hub.get(self.run_id).is_none() {
                    self.done = true;
                }
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            None => self.done = true,
        }
        Ok(())
    }

    /// Whether the run is paused with nothing after `self.last`: a stream ends at such a pause.
    async fn paused_here(&self) -> Result<bool, Error> {
        let later = self
            .store
            .list_run_events(self.tenant, self.run_id, self.last, 1)
            .await?;
        if !later.is_empty() {
            return Ok(false);
        }
        let run = self.store.get_run(self.tenant, self.run_id).await?;
        Ok(run.is_some_and(|run| run.status == RunStatus::Paused))
    }
}
