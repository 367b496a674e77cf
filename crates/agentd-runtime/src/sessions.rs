//! Sessions: conversations with an agent, created on a run's first use or explicitly, listed with
//! filters, renamed, updated and deleted (with their runs).

use std::sync::Arc;

use agentd_core::run::{Run, Session, SessionId, SessionKind, SessionPolicy};
use agentd_core::{RunId, TenantId};
use agentd_store::{RunFilter, SessionCursor, SessionFilter, Store};
use serde_json::{Map, Value};

use crate::{Error, Page, PageRequest};

/// How long a name taken from a session's first message may be, in characters.
pub const DERIVED_NAME_CHARS: usize = 50;

/// A new session.
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    pub id: Option<SessionId>,
    pub kind: Option<SessionKind>,
    pub component_id: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub state: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub policy: Option<SessionPolicy>,
}

/// Changes to a session: absent fields are kept; `Some(None)` clears an optional one.
#[derive(Clone, Debug, Default)]
pub struct SessionPatch {
    pub name: Option<Option<String>>,
    pub state: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub summary: Option<Option<String>>,
    pub policy: Option<SessionPolicy>,
}

/// A page of sessions with the number matching the filter.
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

/// The session service.
pub struct SessionService {
    store: Arc<dyn Store>,
}

impl SessionService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Creates a session; an id in use is a conflict.
    pub async fn create(&self, tenant: TenantId, new: NewSession) -> Result<Session, Error> {
        if let Some(name) = &new.name {
            check_name(name)?;
        }
        let kind = new.kind.unwrap_or(SessionKind::Agent);
        if kind == SessionKind::Agent {
            let agent = new
                .component_id
                .parse()
                .map_err(|_| Error::invalid("agent_id", "must be an agent id (a UUID)"))?;
            crate::registry::load_agent(self.store.as_ref(), tenant, agent).await?;
        }
        let now = agentd_core::now();
        let session = Session {
            tenant_id: tenant,
            id: new.id.unwrap_or_default(),
            kind,
            component_id: new.component_id,
            user_id: new.user_id,
            name: new.name,
            state: new.state,
            metadata: new.metadata,
            summary: None,
            policy: new.policy.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        };
        if !self.store.create_session(&session).await? {
            return Err(Error::Conflict(format!(
                "a session with id `{}` exists already",
                session.id
            )));
        }
        Ok(session)
    }

    pub async fn get(&self, tenant: TenantId, id: &SessionId) -> Result<Session, Error> {
        self.store
            .get_session(tenant, id)
            .await?
            .ok_or(Error::NotFound("session"))
    }

    /// Sessions matching `filter`, newest first. The cursor is opaque to clients.
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &SessionFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SessionPage, Error> {
        let page = PageRequest::<Position>::parse(limit, cursor)?;
        let after = page.after.map(|position| position.0);
        let (sessions, total) = self
            .store
            .list_sessions(tenant, filter, after.as_ref(), page.limit + 1)
            .await?;
        let page = Page::from_overfetch(sessions, page.limit, encode_cursor);
        Ok(SessionPage {
            sessions: page.items,
            total,
            next_cursor: page.next_cursor,
        })
    }

    /// Applies `patch`.
    pub async fn update(
        &self,
        tenant: TenantId,
        id: &SessionId,
        patch: SessionPatch,
    ) -> Result<Session, Error> {
        let mut session = self.get(tenant, id).await?;
        if let Some(name) = patch.name {
            if let Some(name) = &name {
                check_name(name)?;
            }
            session.name = name;
        }
        if let Some(state) = patch.state {
            session.state = state;
        }
        if let Some(metadata) = patch.metadata {
            session.metadata = metadata;
        }
        if let Some(summary) = patch.summary {
            session.summary = summary;
        }
        if let Some(policy) = patch.policy {
            session.policy = policy;
        }
        session.updated_at = agentd_core::now();
        if !self.store.update_session(&session).await? {
            return Err(Error::NotFound("session"));
        }
        Ok(session)
    }

    /// Deletes one session and its runs.
    pub async fn delete(&self, tenant: TenantId, id: &SessionId) -> Result<(), Error> {
        match self
            .store
            .delete_sessions(tenant, std::slice::from_ref(id))
            .await?
        {
            0 => Err(Error::NotFound("session")),
            _ => Ok(()),
        }
    }

    /// Deletes several sessions and their runs; how many existed.
    pub async fn delete_many(&self, tenant: TenantId, ids: &[SessionId]) -> Result<u64, Error> {
        Ok(self.store.delete_sessions(tenant, ids).await?)
    }

    /// What to call the session: its name, or (as AgentOS does for an unnamed one) the first
    /// [`DERIVED_NAME_CHARS`] characters of its first message; `""` before it has one.
    pub async fn display_name(&self, session: &Session) -> Result<String, Error> {
        if let Some(name) = &session.name {
            return Ok(name.clone());
        }
        let filter = RunFilter {
            session_id: Some(session.id.clone()),
            ..RunFilter::default()
        };
        let first = self
            .store
            .list_runs(session.tenant_id, &filter, None, 1)
            .await?;
        Ok(first
            .first()
            .map(|run| run.input.chars().take(DERIVED_NAME_CHARS).collect())
            .unwrap_or_default())
    }

    /// The session's runs, oldest first.
    pub async fn runs(
        &self,
        tenant: TenantId,
        id: &SessionId,
        page: PageRequest<RunId>,
    ) -> Result<Page<Run>, Error> {
        self.get(tenant, id).await?;
        let filter = RunFilter {
            session_id: Some(id.clone()),
            ..RunFilter::default()
        };
        let runs = self
            .store
            .list_runs(tenant, &filter, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(runs, page.limit, |run| {
            run.id.to_string()
        }))
    }

    /// One run of the session.
    pub async fn run(&self, tenant: TenantId, id: &SessionId, run: RunId) -> Result<Run, Error> {
        match self.store.get_run(tenant, run).await? {
            Some(run) if &run.session_id == id => Ok(run),
            _ => Err(Error::NotFound("run")),
        }
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "session_name",
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(())
}

/// `<created_at millis>.<session id>`: session ids may contain `.`, so split at the first one.
fn encode_cursor(session: &Session) -> String {
    format!("{}.{}", session.created_at.timestamp_millis(), session.id)
}

/// A parsed session-list cursor (what [`encode_cursor`] wrote).
struct Position(SessionCursor);

impl std::str::FromStr for Position {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        let (millis, id) = raw.split_once('.').ok_or(())?;
        let millis: i64 = millis.parse().map_err(|_| ())?;
        Ok(Self(SessionCursor {
            created_at: chrono::DateTime::from_timestamp_millis(millis).ok_or(())?,
            id: SessionId::parse(id).map_err(|_| ())?,
        }))
    }
}
