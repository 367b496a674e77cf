//! Access: who is calling (authentication by API key), what they may do (scopes), and the keys
//! themselves. Tenancy starts here: a principal carries its tenant, and every later call passes it on.

use std::sync::Arc;

use agentd_core::User;
use agentd_core::{
    AgentId, ApiKey, KeyId, KeyName, NewApiKey, PlainKey, Scope, ScopeSet, Tenant, TenantId,
    TenantSlug, UserId,
};
use agentd_store::Store;

use crate::cache::TtlCache;
use crate::tokens::{TokenService, Verified};
use chrono::Duration;

use crate::{Error, Page, PageRequest};

/// Last-use times are written at most this often per key, so authentication stays a read.
const TOUCH_INTERVAL_SECONDS: i64 = 60;
/// How long a verified key is trusted from memory before it is read again. Deleting a key evicts it
/// at once on this node; other nodes sharing the database notice within this time.
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Keys held in memory at most; the cache is emptied when it would grow past this.
const KEY_CACHE_MAX: usize = 10_000;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub tenant_id: TenantId,
    /// Who presented the credential: an API key, or a user holding a JWT.
    pub subject: Subject,
    /// For an agent-bound key: the one agent it acts for.
    pub agent_id: Option<AgentId>,
    pub scopes: ScopeSet,
}

/// Who a principal is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An API key (a tenant's, or an agent's own).
    Key(KeyId),
    /// A logged-in user, authenticated by one of agentd's JWTs.
    User(UserId),
    /// The subject of an external issuer's JWT, as `<issuer name>:<sub>`.
    External(Arc<str>),
}

impl Subject {
    /// The subject as `key:<id>`, `user:<id>` or `external:<issuer>:<sub>`.
    pub fn label(&self) -> String {
        match self {
            Self::Key(id) => format!("key:{id}"),
            Self::User(id) => format!("user:{id}"),
            Self::External(subject) => format!("external:{subject}"),
        }
    }
}

impl Principal {
    /// A principal for an API key.
    pub fn for_key(key: &ApiKey) -> Self {
        Self {
            tenant_id: key.tenant_id,
            subject: Subject::Key(key.id),
            agent_id: key.agent_id,
            scopes: key.scopes.clone(),
        }
    }

    /// The API key behind the request, if it was a key (usage is metered per key).
    pub fn key_id(&self) -> Option<KeyId> {
        match self.subject {
            Subject::Key(id) => Some(id),
            Subject::User(_) | Subject::External(_) => None,
        }
    }

    /// The user a signed-in principal is (agentd's user id, or an external JWT's `<issuer>:<sub>`):
    /// the only user whose memories it reaches and whose runs it starts. `None` for API keys, which
    /// act for an application's many users and name the user in each request.
    pub fn own_user(&self) -> Option<String> {
        match &self.subject {
            Subject::Key(_) => None,
            Subject::User(id) => Some(id.to_string()),
            Subject::External(subject) => Some(subject.to_string()),
        }
    }

    /// The user a request is about, given the `user_id` it names: for an API key, that user (or
    /// none); for a signed-in user, always themselves, so naming another is an error and naming none
    /// means oneself. This is AgentOS's user isolation: people signed in to the same tenant never
    /// reach each other's memories or run as each other.
    pub fn acting_user(&self, requested: Option<String>) -> Result<Option<String>, Error> {
        let Some(own) = self.own_user() else {
            return Ok(requested);
        };
        match requested {
            Some(named) if named != own => Err(Error::invalid(
                "user_id",
                format!("a signed-in user reaches only their own memories and runs (`{own}`)"),
            )),
            _ => Ok(Some(own)),
        }
    }

    /// Who acted, as recorded in agent events, owners and endorsements: the key or user id.
    pub fn actor(&self) -> String {
        match &self.subject {
            Subject::Key(id) => id.to_string(),
            Subject::User(id) => id.to_string(),
            Subject::External(subject) => subject.to_string(),
        }
    }

    /// Succeeds if the principal holds `required`; otherwise the error names it.
    pub fn require(&self, required: &Scope) -> Result<(), Error> {
        if self.scopes.allows(required) {
            Ok(())
        } else {
            Err(Error::MissingScope(required.clone()))
        }
    }
}

/// Authentication and API key management.
pub struct AccessService {
    pub(crate) store: Arc<dyn Store>,
    /// Verified keys by hash, with the time they were read from the store.
    cache: TtlCache<String, ApiKey>,
    /// Users behind agentd's own JWTs, with the time they were read.
    users: TtlCache<UserId, User>,
    /// Verifies JWTs; `None` in a service that accepts API keys only.
    tokens: Option<Arc<TokenService>>,
}

impl AccessService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: TtlCache::new(KEY_CACHE_TTL, KEY_CACHE_MAX),
            users: TtlCache::new(KEY_CACHE_TTL, KEY_CACHE_MAX),
            tokens: None,
        }
    }

    /// The same service, also accepting the JWTs `tokens` verifies.
    pub fn with_tokens(mut self, tokens: Arc<TokenService>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The key with this hash: from memory while fresh, else from the store.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error> {
        let cached = self.cache.get(hash);
        if cached.is_some() {
            return Ok(cached);
        }
        let stored = self.store.find_key_by_hash(hash).await?;
        if let Some(key) = &stored {
            self.remember(key.clone());
        }
        Ok(stored)
    }

    fn remember(&self, key: ApiKey) {
        self.cache.insert(key.hash.clone(), key);
    }

    /// Drops a key from this node's cache, so a deleted or rotated key fails on the next request.
    pub(crate) fn forget(&self, id: KeyId) {
        self.cache.remove_where(|key| key.id == id);
    }

    /// Resolves a bearer credential to a principal. Unknown, malformed and expired keys are all
    /// `InvalidCredentials`; the reason goes to the client but never the key.
    pub async fn authenticate(&self, credential: &str) -> Result<Principal, Error> {
        if credential.matches('.').count() == 2 {
            return self.authenticate_jwt(credential).await;
        }
        let plain = PlainKey::parse(credential).ok_or(Error::InvalidCredentials(
            "neither an agentd API key nor a JWT",
        ))?;
        let mut key = self
            .key_by_hash(&plain.hash())
            .await?
            .ok_or(Error::InvalidCredentials("unknown or deleted API key"))?;
        let now = agentd_core::now();
        if key.is_expired(now) {
            return Err(Error::InvalidCredentials("the API key has expired"));
        }
        let stale = key
            .last_used_at
            .is_none_or(|at| now - at >= Duration::seconds(TOUCH_INTERVAL_SECONDS));
        if stale {
            // Best effort: a busy database must not turn a valid key into a failed request.
            match self.store.touch_key(key.tenant_id, key.id, now).await {
                Ok(()) => {
                    key.last_used_at = Some(now);
                    self.remember(key.clone());
                }
                Err(error) => {
                    tracing::warn!(error = %error, key.id = %key.id, "cannot record a key's last use")
                }
            }
        }
        Ok(Principal::for_key(&key))
    }

    /// A JWT's principal. For agentd's own tokens the user is read again (from memory for a few
    /// seconds), so a removed user or a changed role takes effect at once, not when the token expires.
    async fn authenticate_jwt(&self, token: &str) -> Result<Principal, Error> {
        let Some(tokens) = &self.tokens else {
            return Err(Error::InvalidCredentials("this server accepts no JWTs"));
        };
        match tokens.verify(token).await? {
            Verified::Own { tenant_id, user_id } => {
                let user =
                    self.user(tenant_id, user_id)
                        .await?
                        .ok_or(Error::InvalidCredentials(
                            "the token's user no longer exists",
                        ))?;
                Ok(Principal {
                    tenant_id,
                    subject: Subject::User(user_id),
                    agent_id: None,
                    scopes: user.role.scopes(),
                })
            }
            Verified::External(identity) => {
                let slug = TenantSlug::parse(&identity.tenant)
                    .map_err(|_| Error::InvalidCredentials("the token's tenant is not a slug"))?;
                let tenant = self.store.get_tenant_by_slug(&slug).await?.ok_or(
                    Error::InvalidCredentials("the token's tenant does not exist"),
                )?;
                Ok(Principal {
                    tenant_id: tenant.id,
                    subject: Subject::External(identity.subject.into()),
                    agent_id: None,
                    scopes: identity.scopes,
                })
            }
        }
    }

    async fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, Error> {
        let cached = self.users.get(&id).filter(|user| user.tenant_id == tenant);
        if cached.is_some() {
            return Ok(cached);
        }
        let stored = self.store.get_user(tenant, id).await?;
        match &stored {
            Some(user) => self.users.insert(id, user.clone()),
            None => self.users.remove(&id),
        }
        Ok(stored)
    }

    /// Drops a user from memory, after a change of role or a removal.
    pub fn forget_user(&self, id: UserId) {
        self.users.remove(&id);
    }

    /// Makes a key in the caller's tenant. A key never grants more than its creator holds.
    #[tracing::instrument(skip_all, fields(tenant.id = %creator.tenant_id))]
    pub async fn create_key(
        &self,
        creator: &Principal,
        new: NewApiKey,
    ) -> Result<(ApiKey, PlainKey), Error> {
        if let Some(scope) = creator.scopes.first_not_covered(&new.scopes) {
            return Err(Error::Escalation {
                what: "a key",
                scope: scope.clone(),
            });
        }
        self.issue_key(creator.tenant_id, new).await
    }

    /// Makes a key in the tenant with the given slug, with no creator to check against: for the
    /// operator's command line, which has the database in hand anyway.
    pub async fn create_key_as_operator(
        &self,
        tenant: &TenantSlug,
        new: NewApiKey,
    ) -> Result<(ApiKey, PlainKey), Error> {
        let tenant = self
            .store
            .get_tenant_by_slug(tenant)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        self.issue_key(tenant.id, new).await
    }

    async fn issue_key(
        &self,
        tenant: TenantId,
        new: NewApiKey,
    ) -> Result<(ApiKey, PlainKey), Error> {
        if new.scopes.is_empty() {
            return Err(Error::invalid("scopes", "a key needs at least one scope"));
        }
        if new.expires_at.is_some_and(|at| at <= agentd_core::now()) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let (key, plain) = new.issue(tenant);
        self.store.insert_key(&key).await?;
        tracing::info!(key.id = %key.id, key.prefix = %key.prefix, "API key created");
        Ok((key, plain))
    }

    /// One key of the tenant.
    pub async fn get_key(&self, tenant: TenantId, id: KeyId) -> Result<ApiKey, Error> {
        self.store
            .get_key(tenant, id)
            .await?
            .ok_or(Error::NotFound("API key"))
    }

    /// A page of the tenant's keys, oldest first.
    pub async fn list_keys(
        &self,
        tenant: TenantId,
        page: PageRequest<KeyId>,
    ) -> Result<Page<ApiKey>, Error> {
        let keys = self
            .store
            .list_keys(tenant, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(keys, page.limit, |key| {
            key.id.to_string()
        }))
    }

    /// Deletes a key of the tenant; it stops working at once.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, key.id = %id))]
    pub async fn delete_key(&self, tenant: TenantId, id: KeyId) -> Result<(), Error> {
        let deleted = self.store.delete_key(tenant, id).await?;
        self.forget(id);
        if deleted {
            tracing::info!("API key deleted");
            Ok(())
        } else {
            Err(Error::NotFound("API key"))
        }
    }

    /// On the very first start, creates the `default` tenant and an admin key for it and returns the
    /// key so it can be shown once. Later starts (and other nodes racing this one) get `None`.
    pub async fn bootstrap_default_tenant(&self) -> Result<Option<PlainKey>, Error> {
        let tenant = Tenant::new(TenantSlug::default_tenant(), "Default");
        let admin = NewApiKey {
            name: KeyName::parse("admin (created on first start)")
                .map_err(|e| Error::Config(e.to_string()))?,
            scopes: ScopeSet::new([Scope::admin()]),
            expires_at: None,
        };
        let (key, plain) = admin.issue(tenant.id);
        let created = self.store.create_tenant_with_key(&tenant, &key).await?;
        if created {
            tracing::info!(tenant.id = %tenant.id, key.id = %key.id, "first start: default tenant and admin key created");
        }
        Ok(created.then_some(plain))
    }
}
