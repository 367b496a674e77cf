//! The audit log service. Faces hand it [`AuditRecord`]s; a background appender writes them to the
//! store in batches, each batch in one transaction in which the store extends the tenants' hash
//! chains (see `agentd_core::audit`). Recording costs a request one channel send, not a database
//! write.
//!
//! The trade-off: an entry is durable only once its batch is written, usually within milliseconds of
//! the response; a crash (not a graceful shutdown, which [`AuditService::flush`]es) can lose the last
//! unwritten batch. When the database falls more than [`QUEUE_CAPACITY`] entries behind, recording
//! waits for room rather than dropping entries, so requests slow down instead of going unrecorded.
//! Readers ([`AuditService::list`], [`AuditService::verify`]) flush first, so they see every entry
//! this node has recorded.

use std::sync::Arc;
use std::time::Duration;

use agentd_core::audit::{AuditEntry, AuditRecord, ChainBreak, ChainVerifier};
use agentd_core::{AgentId, TenantId};
use agentd_store::{AuditFilter, Store};
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Page, PageRequest};

/// Entries waiting to be written at most; recording waits beyond this.
pub const QUEUE_CAPACITY: usize = 4096;
/// Entries written in one transaction at most.
const BATCH_MAX: usize = 512;
/// Waits between attempts to write a batch; after the last, the batch is logged and dropped.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];
/// Entries read per round trip while verifying a chain.
const VERIFY_PAGE: u32 = 1000;

enum Command {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// Records audit entries in the background and reads them back.
pub struct AuditService {
    store: Arc<dyn Store>,
    sender: mpsc::Sender<Command>,
}

/// What verifying one chain found.
#[derive(Clone, Debug)]
pub struct ChainReport {
    /// The chain's tenant (the nil id for the platform chain).
    pub tenant_id: TenantId,
    /// Entries checked and found sound (up to the break, if there is one).
    pub entries: u64,
    /// The first entry that does not fit, if any.
    pub broken: Option<ChainBreak>,
}

impl AuditService {
    /// Starts the service and its appender task (so it must be called within a Tokio runtime).
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(append_loop(store.clone(), receiver));
        Self { store, sender }
    }

    /// Queues a record for the log; waits only when the queue is full.
    pub async fn record(&self, record: AuditRecord) {
        if self
            .sender
            .send(Command::Record(Box::new(record)))
            .await
            .is_err()
        {
            tracing::error!("audit appender has stopped; an audit record was not written");
        }
    }

    /// Returns once every record queued before the call is written (or given up on).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Command::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// A page of the tenant's entries matching `filter`, newest first; the cursor is a `seq`.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        page: PageRequest<u64>,
    ) -> Result<Page<AuditEntry>, Error> {
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from >= to {
                return Err(Error::invalid("to", "must be after `from`"));
            }
        }
        self.flush().await;
        let entries = self
            .store
            .list_audit(tenant, filter, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(entries, page.limit, |entry| {
            entry.seq.to_string()
        }))
    }

    /// A page of the entries concerning one agent of the tenant, newest first; an agent the tenant
    /// does not have is not found.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, agent.id = %agent))]
    pub async fn agent_trail(
        &self,
        tenant: TenantId,
        agent: AgentId,
        filter: AuditFilter,
        page: PageRequest<u64>,
    ) -> Result<Page<AuditEntry>, Error> {
        if self.store.get_agent(tenant, agent).await?.is_none() {
            return Err(Error::NotFound("agent"));
        }
        let filter = AuditFilter {
            agent_id: Some(agent),
            ..filter
        };
        self.list(tenant, &filter, page).await
    }

    /// Walks every chain (or only `tenant`'s) from its first entry to its head and reports, per
    /// chain, how many entries were sound and the first that is not.
    pub async fn verify(&self, tenant: Option<TenantId>) -> Result<Vec<ChainReport>, Error> {
        self.flush().await;
        let mut chains = self.store.audit_chains().await?;
        if let Some(only) = tenant {
            chains.retain(|(id, _)| *id == only);
            if chains.is_empty() {
                chains.push((only, None));
            }
        }
        let mut reports = Vec::with_capacity(chains.len());
        for (tenant_id, head) in chains {
            reports.push(self.verify_chain(tenant_id, head).await?);
        }
        Ok(reports)
    }

    async fn verify_chain(
        &self,
        tenant_id: TenantId,
        head: Option<(u64, String)>,
    ) -> Result<ChainReport, Error> {
        let mut verifier = ChainVerifier::new();
        let mut checked = 0;
        let mut after = 0;
        loop {
            let page = self
                .store
                .audit_chain(tenant_id, after, VERIFY_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                if let Err(broken) = verifier.check(entry) {
                    return Ok(ChainReport {
                        tenant_id,
                        entries: checked,
                        broken: Some(broken),
                    });
                }
                checked += 1;
            }
        }
        let finished = verifier.finish(head.as_ref().map(|(seq, hash)| (*seq, hash.as_str())));
        Ok(ChainReport {
            tenant_id,
            entries: checked,
            broken: finished.err(),
        })
    }
}

/// Writes queued records in batches until every sender is gone, answering flushes once everything
/// queued before them is written.
async fn append_loop(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Command>) {
    let mut batch: Vec<AuditRecord> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Record(record) => batch.push(*record),
                Command::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH_MAX {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            write_batch(store.as_ref(), &batch).await;
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes one batch, retrying a failing database a few times; a batch that cannot be written is
/// logged entry by entry, so the log line is the record of last resort.
async fn write_batch(store: &dyn Store, batch: &[AuditRecord]) {
    let mut delays = RETRY_DELAYS.iter();
    loop {
        let error = match store.append_audit(batch).await {
            Ok(_) => return,
            Err(error) => error,
        };
        match delays.next() {
            Some(delay) => {
                tracing::warn!(error = %error, entries = batch.len(), "audit batch not written; retrying");
                tokio::time::sleep(*delay).await;
            }
            None => {
                tracing::error!(error = %error, entries = batch.len(), "audit batch dropped after retries");
                for record in batch {
                    tracing::error!(
                        audit.id = %record.id,
                        tenant.id = %record.tenant_id,
                        actor = %record.actor,
                        action = %record.action,
                        target = %record.target,
                        status = record.status,
                        "unwritten audit entry"
                    );
                }
                return;
            }
        }
    }
}
