//! Agent keys: API keys bound to one agent. Their scopes name only that agent (`agents:<id>:run`…),
//! so such a key reaches that agent's record, runs and event log and nothing else of the tenant; the
//! principal it authenticates carries the agent (`Principal::agent_id`). They are made, listed,
//! revoked and rotated here, beside the rest of [`AccessService`].

use agentd_core::{AgentId, ApiKey, KeyId, KeyName, NewApiKey, PlainKey, Scope, ScopeSet};
use agentd_core::{TenantId, Timestamp};

use crate::registry::{load_agent, load_live_agent};
use crate::{AccessService, Error, Page, PageRequest, Principal};

/// The actions an agent key holds on its agent when its creator names no scopes: read it (and its
/// runs and events), run it, sign as it, and manage its own keys (so it can rotate itself).
pub const DEFAULT_AGENT_KEY_ACTIONS: &[&str] = &["read", "run", "sign", "keys"];
/// The one scope an agent key may hold that does not name its agent: verifying signatures reveals
/// nothing but public keys.
const VERIFY_SCOPE: &str = "identity:verify";
/// The name of an agent key made without one.
const DEFAULT_NAME: &str = "agent key";

/// What it takes to make an agent key. Unset fields take their defaults.
#[derive(Clone, Debug, Default)]
pub struct NewAgentKey {
    pub name: Option<KeyName>,
    /// `None`: [`default_agent_key_scopes`].
    pub scopes: Option<ScopeSet>,
    pub expires_at: Option<Timestamp>,
}

/// `agents:<agent>:<action>` for each of [`DEFAULT_AGENT_KEY_ACTIONS`].
pub fn default_agent_key_scopes(agent: AgentId) -> ScopeSet {
    ScopeSet::new(
        DEFAULT_AGENT_KEY_ACTIONS
            .iter()
            .filter_map(|action| Scope::parse(&format!("agents:{agent}:{action}")).ok()),
    )
}

/// Succeeds if every scope stays within the agent: `<resource>:<agent>:<action>` (the action may be
/// `*`), or `identity:verify`. The error names the first scope that does not.
fn check_within_agent(agent: AgentId, scopes: &ScopeSet) -> Result<(), Error> {
    if scopes.is_empty() {
        return Err(Error::invalid("scopes", "a key needs at least one scope"));
    }
    let agent = agent.to_string();
    for (index, scope) in scopes.iter().enumerate() {
        let within = match scope.as_str().split(':').collect::<Vec<_>>().as_slice() {
            [resource, id, _] => *resource != "*" && *id == agent,
            _ => scope.as_str() == VERIFY_SCOPE,
        };
        if !within {
            return Err(Error::invalid(
                format!("scopes[{index}]"),
                format!(
                    "`{scope}` reaches beyond the agent: an agent key's scopes name its agent \
                     (`agents:{agent}:run`) or are `{VERIFY_SCOPE}`"
                ),
            ));
        }
    }
    Ok(())
}

impl AccessService {
    /// Makes a key bound to `agent` (which must be live). Its scopes must stay within the agent and
    /// within the creator's own.
    #[tracing::instrument(skip_all, fields(tenant.id = %creator.tenant_id, agent.id = %agent))]
    pub async fn create_agent_key(
        &self,
        creator: &Principal,
        agent: AgentId,
        new: NewAgentKey,
    ) -> Result<(ApiKey, PlainKey), Error> {
        let tenant = creator.tenant_id;
        load_live_agent(self.store.as_ref(), tenant, agent, "create a key for").await?;
        let scopes = new
            .scopes
            .unwrap_or_else(|| default_agent_key_scopes(agent));
        check_within_agent(agent, &scopes)?;
        if let Some(scope) = creator.scopes.first_not_covered(&scopes) {
            return Err(Error::Escalation {
                what: "an agent key",
                scope: scope.clone(),
            });
        }
        if new.expires_at.is_some_and(|at| at <= agentd_core::now()) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let name = match new.name {
            Some(name) => name,
            None => KeyName::parse(DEFAULT_NAME).map_err(|e| Error::Internal(e.to_string()))?,
        };
        let (key, plain) = NewApiKey {
            name,
            scopes,
            expires_at: new.expires_at,
        }
        .issue_for_agent(tenant, agent);
        self.store.insert_key(&key).await?;
        tracing::info!(key.id = %key.id, key.prefix = %key.prefix, "agent key created");
        Ok((key, plain))
    }

    /// A page of the keys bound to an agent of the tenant, oldest first.
    pub async fn list_agent_keys(
        &self,
        tenant: TenantId,
        agent: AgentId,
        page: PageRequest<KeyId>,
    ) -> Result<Page<ApiKey>, Error> {
        load_agent(self.store.as_ref(), tenant, agent).await?;
        let keys = self
            .store
            .list_agent_keys(tenant, agent, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(keys, page.limit, |key| {
            key.id.to_string()
        }))
    }

    /// Deletes a key bound to the agent; it stops working at once on this node.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, agent.id = %agent, key.id = %id))]
    pub async fn revoke_agent_key(
        &self,
        tenant: TenantId,
        agent: AgentId,
        id: KeyId,
    ) -> Result<(), Error> {
        self.agent_key(tenant, agent, id).await?;
        self.delete_key(tenant, id).await
    }

    /// Gives an agent key a new secret, keeping its id, name, scopes and expiry. `key` names it; left
    /// out, the caller's own key is rotated, if it is one of the agent's. The old secret fails on the
    /// very next request (to this node; other nodes within the key cache's 5 s). The caller must hold
    /// every scope of the key it rotates, since it receives the new secret.
    #[tracing::instrument(skip_all, fields(tenant.id = %caller.tenant_id, agent.id = %agent))]
    pub async fn rotate_agent_key(
        &self,
        caller: &Principal,
        agent: AgentId,
        key: Option<KeyId>,
    ) -> Result<(ApiKey, PlainKey), Error> {
        let tenant = caller.tenant_id;
        load_live_agent(self.store.as_ref(), tenant, agent, "rotate a key of").await?;
        let own_key = caller.key_id().filter(|_| caller.agent_id == Some(agent));
        let id = key.or(own_key).ok_or_else(|| {
            Error::invalid(
                "key_id",
                "name the agent key to rotate (only the agent's own key may leave it out)",
            )
        })?;
        let current = self.agent_key(tenant, agent, id).await?;
        if let Some(scope) = caller.scopes.first_not_covered(&current.scopes) {
            return Err(Error::Escalation {
                what: "rotating a key",
                scope: scope.clone(),
            });
        }
        if current.is_expired(agentd_core::now()) {
            return Err(Error::invalid(
                "key_id",
                "the key has expired: make a new one instead",
            ));
        }
        let (rotated, plain) = current.with_new_secret();
        let replaced = self
            .store
            .replace_key_secret(&rotated, &current.hash)
            .await?;
        self.forget(id);
        if !replaced {
            return Err(Error::Conflict(
                "the key was rotated or deleted meanwhile; read it again".to_owned(),
            ));
        }
        tracing::info!(key.id = %id, key.prefix = %rotated.prefix, "agent key rotated");
        Ok((rotated, plain))
    }

    /// A key of the tenant bound to `agent` (which must exist); any other is `NotFound`.
    async fn agent_key(
        &self,
        tenant: TenantId,
        agent: AgentId,
        id: KeyId,
    ) -> Result<ApiKey, Error> {
        load_agent(self.store.as_ref(), tenant, agent).await?;
        self.store
            .get_key(tenant, id)
            .await?
            .filter(|key| key.agent_id == Some(agent))
            .ok_or(Error::NotFound("API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(raw: &[&str]) -> ScopeSet {
        ScopeSet::new(raw.iter().map(|s| Scope::parse(s).unwrap()))
    }

    #[test]
    fn agent_key_scopes_stay_within_the_agent() {
        let agent = AgentId::new();
        let other = AgentId::new();
        assert!(check_within_agent(agent, &default_agent_key_scopes(agent)).is_ok());
        let mine = format!("agents:{agent}:*");
        assert!(check_within_agent(agent, &scopes(&[&mine, "identity:verify"])).is_ok());
        for (wanted, field) in [
            (vec![mine.clone(), "agents:read".to_owned()], "scopes[1]"),
            (vec![format!("agents:{other}:read")], "scopes[0]"),
            (vec![format!("*:{agent}:read")], "scopes[0]"),
            (vec!["keys:read".to_owned()], "scopes[0]"),
            (vec![], "scopes"),
        ] {
            let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let error = check_within_agent(agent, &scopes(&wanted)).unwrap_err();
            assert_eq!(error.field(), Some(field), "{wanted:?}");
        }
    }
}
