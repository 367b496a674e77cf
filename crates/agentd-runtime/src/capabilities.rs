//! Agents' capabilities: what an agent can do, how well (proficiency 0–1), how often it has
//! (experience), and who vouches for it (one endorsement per principal).

use std::sync::Arc;

use agentd_core::agent::{Agent, AgentEvent, AgentEventKind, Capability, Endorsement};
use agentd_core::{AgentId, TenantId};
use agentd_store::{Store, StoreError, Update};

use crate::registry::{load_agent, load_live_agent};
use crate::{Error, Principal};

/// A capability to add.
#[derive(Clone, Debug)]
pub struct NewCapability {
    pub name: String,
    pub description: Option<String>,
    pub proficiency: Option<f64>,
    pub experience: Option<u64>,
}

/// Changes to a capability; absent fields are kept.
#[derive(Clone, Debug, Default)]
pub struct CapabilityPatch {
    pub description: Option<Option<String>>,
    pub proficiency: Option<f64>,
    pub experience: Option<u64>,
}

/// Capabilities and endorsements.
pub struct CapabilityService {
    store: Arc<dyn Store>,
}

fn invalid(error: agentd_core::agent::SpecError) -> Error {
    Error::invalid(error.field, error.message)
}

impl CapabilityService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn agent(&self, tenant: TenantId, id: AgentId) -> Result<Agent, Error> {
        load_agent(self.store.as_ref(), tenant, id).await
    }

    async fn live_agent(
        &self,
        tenant: TenantId,
        id: AgentId,
        action: &str,
    ) -> Result<Agent, Error> {
        load_live_agent(self.store.as_ref(), tenant, id, action).await
    }

    /// The agent's capabilities, by name.
    pub async fn list(&self, tenant: TenantId, agent: AgentId) -> Result<Vec<Capability>, Error> {
        self.agent(tenant, agent).await?;
        Ok(self.store.list_capabilities(tenant, agent).await?)
    }

    /// One capability.
    pub async fn get(
        &self,
        tenant: TenantId,
        agent: AgentId,
        name: &str,
    ) -> Result<Capability, Error> {
        self.agent(tenant, agent).await?;
        self.store
            .get_capability(tenant, agent, name)
            .await?
            .ok_or(Error::NotFound("capability"))
    }

    /// Adds a capability (proficiency defaults to 0, experience to 0).
    pub async fn add(
        &self,
        principal: &Principal,
        agent: AgentId,
        new: NewCapability,
    ) -> Result<Capability, Error> {
        Capability::check_name(&new.name).map_err(invalid)?;
        let proficiency = new.proficiency.unwrap_or(0.0);
        Capability::check_proficiency(proficiency).map_err(invalid)?;
        let owner = self
            .live_agent(principal.tenant_id, agent, "add a capability to")
            .await?;
        let now = agentd_core::now();
        let capability = Capability {
            tenant_id: principal.tenant_id,
            agent_id: agent,
            name: new.name,
            description: new.description,
            proficiency,
            experience: new.experience.unwrap_or(0),
            endorsements: 0,
            created_at: now,
            updated_at: now,
        };
        let event = AgentEvent::new(
            &owner,
            AgentEventKind::CapabilityChanged,
            "add capability",
            principal.actor(),
        )
        .with_detail(
            serde_json::json!({"capability": capability.name, "proficiency": proficiency}),
        );
        match self.store.add_capability(&capability, &event).await {
            Err(StoreError::Conflict(_)) => Err(Error::Conflict(format!(
                "the agent already has capability `{}`; change it with PATCH",
                capability.name
            ))),
            other => Ok(other.map(|()| capability)?),
        }
    }

    /// Changes a capability's description, proficiency or experience.
    pub async fn update(
        &self,
        principal: &Principal,
        agent: AgentId,
        name: &str,
        patch: CapabilityPatch,
    ) -> Result<Capability, Error> {
        if let Some(proficiency) = patch.proficiency {
            Capability::check_proficiency(proficiency).map_err(invalid)?;
        }
        let owner = self
            .live_agent(principal.tenant_id, agent, "change a capability of")
            .await?;
        let mut capability = self.get(principal.tenant_id, agent, name).await?;
        if let Some(description) = patch.description {
            capability.description = description;
        }
        if let Some(proficiency) = patch.proficiency {
            capability.proficiency = proficiency;
        }
        if let Some(experience) = patch.experience {
            capability.experience = experience;
        }
        capability.updated_at = agentd_core::now();
        let event = AgentEvent::new(
            &owner,
            AgentEventKind::CapabilityChanged,
            "update capability",
            principal.actor(),
        )
        .with_detail(serde_json::json!({
            "capability": capability.name,
            "proficiency": capability.proficiency,
            "experience": capability.experience,
        }));
        match self.store.update_capability(&capability, &event).await? {
            Update::Applied => Ok(capability),
            Update::Missing | Update::Stale(_) => Err(Error::NotFound("capability")),
        }
    }

    /// Records the caller's endorsement of a capability; each principal endorses a capability once.
    pub async fn endorse(
        &self,
        principal: &Principal,
        agent: AgentId,
        name: &str,
        comment: Option<String>,
    ) -> Result<Capability, Error> {
        let owner = self
            .live_agent(principal.tenant_id, agent, "endorse")
            .await?;
        self.get(principal.tenant_id, agent, name).await?;
        let endorser = principal.actor();
        let endorsement = Endorsement {
            tenant_id: principal.tenant_id,
            agent_id: agent,
            capability: name.to_owned(),
            endorser: endorser.clone(),
            comment,
            created_at: agentd_core::now(),
        };
        let event = AgentEvent::new(
            &owner,
            AgentEventKind::CapabilityChanged,
            "endorse",
            &endorser,
        )
        .with_detail(serde_json::json!({"capability": name}));
        match self.store.add_endorsement(&endorsement, &event).await {
            Err(StoreError::Conflict(_)) => Err(Error::Conflict(format!(
                "this principal has already endorsed `{name}`; one endorsement per endorser"
            ))),
            Err(other) => Err(other.into()),
            Ok(()) => self.get(principal.tenant_id, agent, name).await,
        }
    }
}
