//! Users and tenants: who belongs to a tenant and with which role, and the making of tenants.
//!
//! Rules: only an owner (or a key holding the admin scope) makes, changes or removes owners; the
//! last owner of a tenant cannot be removed or demoted; a user cannot change their own role.

use std::sync::Arc;

use agentd_core::{
    Email, KeyName, NewApiKey, PlainKey, Role, Scope, ScopeSet, Tenant, TenantId, TenantSlug, User,
    UserId,
};
use agentd_store::{Store, StoreError};

use crate::{Error, Page, PageRequest, Principal, Subject};

/// The fields a user may be created with.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: Email,
    pub name: Option<String>,
    pub role: Role,
}

/// A change to a user; unset fields stay.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub name: Option<Option<String>>,
    pub role: Option<Role>,
}

/// Users of a tenant, and tenants.
pub struct UserService {
    store: Arc<dyn Store>,
    /// Told of changed and removed users, so their tokens follow at once.
    access: Arc<crate::AccessService>,
}

impl UserService {
    pub fn new(store: Arc<dyn Store>, access: Arc<crate::AccessService>) -> Self {
        Self { store, access }
    }

    /// Whether the caller may hand out or take away the owner role.
    async fn may_manage_owners(&self, caller: &Principal) -> Result<bool, Error> {
        if caller.scopes.allows(&Scope::admin()) {
            return Ok(true);
        }
        Ok(match caller.subject {
            Subject::User(id) => self
                .store
                .get_user(caller.tenant_id, id)
                .await?
                .is_some_and(|user| user.role == Role::Owner),
            Subject::Key(_) | Subject::External(_) => false,
        })
    }

    /// Adds a user to the caller's tenant.
    #[tracing::instrument(skip_all, fields(tenant.id = %caller.tenant_id))]
    pub async fn create(&self, caller: &Principal, new: NewUser) -> Result<User, Error> {
        if new.role == Role::Owner && !self.may_manage_owners(caller).await? {
            return Err(Error::invalid("role", "only an owner can make an owner"));
        }
        let user = User::new(caller.tenant_id, new.email, new.name, new.role);
        match self.store.insert_user(&user).await {
            Err(StoreError::Conflict(_)) => Err(Error::Conflict(format!(
                "the tenant already has a user with email {}",
                user.email
            ))),
            other => other.map(|()| user).map_err(Error::from),
        }
    }

    /// One user of the tenant.
    pub async fn get(&self, tenant: TenantId, id: UserId) -> Result<User, Error> {
        self.store
            .get_user(tenant, id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// A page of the tenant's users, oldest first.
    pub async fn list(
        &self,
        tenant: TenantId,
        page: PageRequest<UserId>,
    ) -> Result<Page<User>, Error> {
        let users = self
            .store
            .list_users(tenant, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(users, page.limit, |user| {
            user.id.to_string()
        }))
    }

    /// Changes a user's name or role.
    #[tracing::instrument(skip_all, fields(tenant.id = %caller.tenant_id, user.id = %id))]
    pub async fn update(
        &self,
        caller: &Principal,
        id: UserId,
        patch: UserPatch,
    ) -> Result<User, Error> {
        let mut user = self.get(caller.tenant_id, id).await?;
        if let Some(role) = patch.role.filter(|role| *role != user.role) {
            if caller.subject == Subject::User(id) {
                return Err(Error::invalid("role", "you cannot change your own role"));
            }
            let touches_owner = role == Role::Owner || user.role == Role::Owner;
            if touches_owner && !self.may_manage_owners(caller).await? {
                return Err(Error::invalid(
                    "role",
                    "only an owner can make or change an owner",
                ));
            }
            if user.role == Role::Owner {
                self.keep_an_owner(caller.tenant_id).await?;
            }
            user.role = role;
        }
        if let Some(name) = patch.name {
            user.name = name;
        }
        user.updated_at = agentd_core::now();
        if !self.store.update_user(&user).await? {
            return Err(Error::NotFound("user"));
        }
        self.access.forget_user(id);
        Ok(user)
    }

    /// Removes a user; their tokens stop working at once.
    #[tracing::instrument(skip_all, fields(tenant.id = %caller.tenant_id, user.id = %id))]
    pub async fn delete(&self, caller: &Principal, id: UserId) -> Result<(), Error> {
        let user = self.get(caller.tenant_id, id).await?;
        if user.role == Role::Owner {
            if !self.may_manage_owners(caller).await? {
                return Err(Error::invalid(
                    "user_id",
                    "only an owner can remove an owner",
                ));
            }
            self.keep_an_owner(caller.tenant_id).await?;
        }
        if !self.store.delete_user(caller.tenant_id, id).await? {
            return Err(Error::NotFound("user"));
        }
        self.access.forget_user(id);
        tracing::info!("user deleted");
        Ok(())
    }

    async fn keep_an_owner(&self, tenant: TenantId) -> Result<(), Error> {
        if self
            .store
            .count_users_with_role(tenant, Role::Owner)
            .await?
            <= 1
        {
            return Err(Error::Conflict(
                "a tenant keeps at least one owner: make another owner first".to_owned(),
            ));
        }
        Ok(())
    }

    /// The caller's tenant.
    pub async fn tenant(&self, id: TenantId) -> Result<Tenant, Error> {
        self.store
            .get_tenant(id)
            .await?
            .ok_or(Error::NotFound("tenant"))
    }

    /// Makes a tenant with its first owner (when an email is given) and an admin key for it, shown
    /// once. Only for the platform admin: the caller must hold the admin scope in the tenant made on
    /// first start.
    #[tracing::instrument(skip_all, fields(tenant.slug = %slug.as_str()))]
    pub async fn create_tenant(
        &self,
        caller: &Principal,
        slug: TenantSlug,
        name: Option<String>,
        owner: Option<Email>,
    ) -> Result<(Tenant, PlainKey, Option<User>), Error> {
        let platform = self
            .store
            .get_tenant_by_slug(&TenantSlug::default_tenant())
            .await?;
        let is_platform_admin = platform.is_some_and(|t| t.id == caller.tenant_id)
            && caller.scopes.allows(&Scope::admin());
        if !is_platform_admin {
            return Err(Error::MissingScope(Scope::admin()));
        }
        let name = name.unwrap_or_else(|| slug.as_str().to_owned());
        let tenant = Tenant::new(slug, name);
        let admin = NewApiKey {
            name: KeyName::parse("admin (created with the tenant)")
                .map_err(|e| Error::Internal(e.to_string()))?,
            scopes: ScopeSet::new([Scope::parse("*").map_err(|e| Error::Internal(e.to_string()))?]),
            expires_at: None,
        };
        let (key, plain) = admin.issue(tenant.id);
        let owner = owner.map(|email| User::new(tenant.id, email, None, Role::Owner));
        if !self
            .store
            .create_tenant_with_owner(&tenant, &key, owner.as_ref())
            .await?
        {
            return Err(Error::Conflict(format!(
                "a tenant with slug `{}` exists already",
                tenant.slug.as_str()
            )));
        }
        tracing::info!(tenant.id = %tenant.id, "tenant created");
        Ok((tenant, plain, owner))
    }
}
