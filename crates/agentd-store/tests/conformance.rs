//! The store conformance suite: one story per entity, run on SQLite and on PostgreSQL.

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentEvent, AgentEventKind, AgentHealth, AgentResources, AgentSpec, AgentStatus,
    Capability, Endorsement, ResourceLimits, ResourceUsage,
};
use agentd_core::{ApiKey, KeyId, KeyName, NewApiKey, Scope, ScopeSet, Tenant, TenantSlug};
use agentd_store::{AgentFilter, Store, StoreError, Update};
use agentd_testkit::{backend_tests, TestDb};

async fn open(db: &TestDb) -> Arc<dyn Store> {
    agentd_store::connect(&db.url())
        .await
        .expect("the store opens and migrates")
}

fn tenant(slug: &str) -> Tenant {
    Tenant::new(TenantSlug::parse(slug).unwrap(), slug)
}

fn key(tenant: &Tenant, name: &str, scopes: &[&str]) -> ApiKey {
    let new = NewApiKey {
        name: KeyName::parse(name).unwrap(),
        scopes: ScopeSet::new(scopes.iter().map(|s| Scope::parse(s).unwrap())),
        expires_at: None,
    };
    new.issue(tenant.id).0
}

async fn tenants_are_created_found_and_unique_by_slug(db: TestDb) {
    let store = open(&db).await;
    let acme = tenant("acme");
    store.create_tenant(&acme).await.unwrap();
    assert_eq!(store.get_tenant(acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(
        store.get_tenant_by_slug(&acme.slug).await.unwrap(),
        Some(acme.clone())
    );
    assert_eq!(store.get_tenant(tenant("other").id).await.unwrap(), None);
    let twin = tenant("acme");
    assert!(matches!(
        store.create_tenant(&twin).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn first_tenant_and_key_are_created_once(db: TestDb) {
    let store = open(&db).await;
    let first = tenant("default");
    let first_key = key(&first, "admin", &["agent_os:admin"]);
    assert!(store
        .create_tenant_with_key(&first, &first_key)
        .await
        .unwrap());
    let second = tenant("default");
    let second_key = key(&second, "admin", &["agent_os:admin"]);
    assert!(!store
        .create_tenant_with_key(&second, &second_key)
        .await
        .unwrap());
    assert_eq!(
        store.get_tenant(second.id).await.unwrap(),
        None,
        "nothing of the loser is written"
    );
    assert_eq!(
        store.find_key_by_hash(&second_key.hash).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_key_by_hash(&first_key.hash).await.unwrap(),
        Some(first_key)
    );
}

async fn keys_round_trip_and_stay_in_their_tenant(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let mut a_key = key(&a, "ci", &["agents:read", "agents:a1:run"]);
    a_key.expires_at = Some(agentd_core::now() + chrono::Duration::days(1));
    store.insert_key(&a_key).await.unwrap();

    assert_eq!(
        store.get_key(a.id, a_key.id).await.unwrap(),
        Some(a_key.clone())
    );
    assert_eq!(
        store.get_key(b.id, a_key.id).await.unwrap(),
        None,
        "tenant B cannot read A's key"
    );
    assert!(store.list_keys(b.id, None, 10).await.unwrap().is_empty());
    assert!(
        !store.delete_key(b.id, a_key.id).await.unwrap(),
        "tenant B cannot delete A's key"
    );
    store
        .touch_key(b.id, a_key.id, agentd_core::now())
        .await
        .unwrap();
    assert_eq!(
        store
            .get_key(a.id, a_key.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        None
    );

    let used_at = agentd_core::now();
    store.touch_key(a.id, a_key.id, used_at).await.unwrap();
    let found = store.find_key_by_hash(&a_key.hash).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(used_at));
    assert_eq!(found.tenant_id, a.id);

    assert!(store.delete_key(a.id, a_key.id).await.unwrap());
    assert_eq!(store.find_key_by_hash(&a_key.hash).await.unwrap(), None);
    assert!(!store.delete_key(a.id, a_key.id).await.unwrap());
}

async fn keys_page_in_creation_order(db: TestDb) {
    let store = open(&db).await;
    let t = tenant("paged");
    store.create_tenant(&t).await.unwrap();
    let mut ids: Vec<KeyId> = Vec::new();
    for n in 0..7 {
        let k = key(&t, &format!("key {n}"), &["keys:read"]);
        store.insert_key(&k).await.unwrap();
        ids.push(k.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_keys(t.id, after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|k| k.id);
        seen.extend(page.into_iter().map(|k| k.id));
    }
    assert_eq!(seen, ids);
}

async fn duplicate_key_ids_are_conflicts(db: TestDb) {
    let store = open(&db).await;
    let t = tenant("dups");
    store.create_tenant(&t).await.unwrap();
    let k = key(&t, "k", &["keys:read"]);
    store.insert_key(&k).await.unwrap();
    assert!(matches!(
        store.insert_key(&k).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn reopening_keeps_data_and_migrations_are_idempotent(db: TestDb) {
    let store = open(&db).await;
    let t = tenant("kept");
    let k = key(&t, "k", &["keys:read"]);
    assert!(store.create_tenant_with_key(&t, &k).await.unwrap());
    store.close().await;
    assert!(store.ping().await.is_err(), "a closed store refuses work");
    assert!(store.ping().await.unwrap_err().is_unavailable());
    let reopened = open(&db).await;
    reopened.ping().await.unwrap();
    assert_eq!(reopened.find_key_by_hash(&k.hash).await.unwrap(), Some(k));
}

fn agent(tenant: &Tenant, name: &str, tags: &[&str]) -> Agent {
    let mut spec: AgentSpec =
        serde_json::from_value(serde_json::json!({"name": name, "kind": "local"})).unwrap();
    spec.tags = tags.iter().map(|t| t.to_string()).collect();
    let now = agentd_core::now();
    Agent {
        id: agentd_core::AgentId::new(),
        tenant_id: tenant.id,
        version: 1,
        spec,
        status: AgentStatus::Idle,
        health: AgentHealth::Unknown,
        created_at: now,
        updated_at: now,
        last_heartbeat_at: None,
    }
}

async fn agents_keep_versions_events_and_tenants(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("agents-a"), tenant("agents-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let first = agent(&a, "first", &["blue", "red"]);
    let created = AgentEvent::new(&first, AgentEventKind::Created, "create", "k");
    store
        .create_agent(&first, std::slice::from_ref(&created))
        .await
        .unwrap();
    assert_eq!(
        store.get_agent(a.id, first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_agent(b.id, first.id).await.unwrap(), None);

    // A spec update is compare-and-set on the version.
    let mut second = first.clone();
    second.version = 2;
    second.spec.tags = vec!["green".to_owned()];
    let updated = AgentEvent::new(&second, AgentEventKind::ConfigUpdated, "update", "k");
    assert_eq!(
        store.update_agent_spec(&second, 1, &updated).await.unwrap(),
        Update::Applied
    );
    assert_eq!(
        store.update_agent_spec(&second, 1, &updated).await.unwrap(),
        Update::Stale("2".to_owned())
    );
    let mut foreign = second.clone();
    foreign.tenant_id = b.id;
    assert_eq!(
        store
            .update_agent_spec(&foreign, 2, &updated)
            .await
            .unwrap(),
        Update::Missing
    );
    let versions = store.list_agent_versions(a.id, first.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(store
        .list_agent_versions(b.id, first.id)
        .await
        .unwrap()
        .is_empty());

    // Tags follow the current version.
    let by_tag = |tag: &str| AgentFilter {
        tag: Some(tag.to_owned()),
        ..AgentFilter::default()
    };
    assert!(store
        .list_agents(a.id, &by_tag("blue"), None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .list_agents(a.id, &by_tag("green"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .list_agents(b.id, &by_tag("green"), None, 10)
        .await
        .unwrap()
        .is_empty());

    // A status change is compare-and-set on the status, with its events in the same transaction.
    let paused = AgentEvent::new(&second, AgentEventKind::StatusChanged, "pause", "k")
        .transition(AgentStatus::Idle, AgentStatus::Paused);
    let moved = store
        .transition_agent(
            a.id,
            first.id,
            AgentStatus::Idle,
            AgentStatus::Paused,
            std::slice::from_ref(&paused),
        )
        .await
        .unwrap();
    assert_eq!(moved, Update::Applied);
    let again = store
        .transition_agent(
            a.id,
            first.id,
            AgentStatus::Idle,
            AgentStatus::Paused,
            std::slice::from_ref(&paused),
        )
        .await
        .unwrap();
    assert_eq!(again, Update::Stale("paused".to_owned()));
    let missing = store
        .transition_agent(b.id, first.id, AgentStatus::Paused, AgentStatus::Idle, &[])
        .await
        .unwrap();
    assert_eq!(missing, Update::Missing);
    let paused_filter = AgentFilter {
        status: Some(AgentStatus::Paused),
        ..AgentFilter::default()
    };
    assert_eq!(
        store
            .list_agents(a.id, &paused_filter, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let events = store
        .list_agent_events(a.id, first.id, None, 10)
        .await
        .unwrap();
    assert_eq!(events, vec![created.clone(), updated, paused]);
    let after_first = store
        .list_agent_events(a.id, first.id, Some(created.id), 1)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 1);
    assert!(store
        .list_agent_events(b.id, first.id, None, 10)
        .await
        .unwrap()
        .is_empty());

    // Terminated agents are listed only when asked for.
    store
        .transition_agent(
            a.id,
            first.id,
            AgentStatus::Paused,
            AgentStatus::Terminated,
            &[],
        )
        .await
        .unwrap();
    assert!(store
        .list_agents(a.id, &AgentFilter::default(), None, 10)
        .await
        .unwrap()
        .is_empty());
    let terminated = AgentFilter {
        status: Some(AgentStatus::Terminated),
        ..AgentFilter::default()
    };
    assert_eq!(
        store
            .list_agents(a.id, &terminated, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn capabilities_and_resources_round_trip(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("caps-a"), tenant("caps-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let mut owner = agent(&a, "skilled", &[]);
    owner.spec.skills = vec!["research".to_owned()];
    store.create_agent(&owner, &[]).await.unwrap();
    let event = || {
        AgentEvent::new(
            &owner,
            AgentEventKind::CapabilityChanged,
            "add capability",
            "k",
        )
    };

    let declared = store.list_capabilities(a.id, owner.id).await.unwrap();
    assert_eq!(
        declared.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["research"]
    );
    let now = agentd_core::now();
    let mut coding = Capability {
        tenant_id: a.id,
        agent_id: owner.id,
        name: "coding".to_owned(),
        description: None,
        proficiency: 0.25,
        experience: 2,
        endorsements: 0,
        created_at: now,
        updated_at: now,
    };
    store.add_capability(&coding, &event()).await.unwrap();
    assert!(matches!(
        store.add_capability(&coding, &event()).await,
        Err(StoreError::Conflict(_))
    ));
    coding.proficiency = 0.75;
    assert_eq!(
        store.update_capability(&coding, &event()).await.unwrap(),
        Update::Applied
    );
    let mut foreign = coding.clone();
    foreign.tenant_id = b.id;
    assert_eq!(
        store.update_capability(&foreign, &event()).await.unwrap(),
        Update::Missing
    );
    let endorsement = Endorsement {
        tenant_id: a.id,
        agent_id: owner.id,
        capability: "coding".to_owned(),
        endorser: "k1".to_owned(),
        comment: Some("good".to_owned()),
        created_at: now,
    };
    store.add_endorsement(&endorsement, &event()).await.unwrap();
    assert!(matches!(
        store.add_endorsement(&endorsement, &event()).await,
        Err(StoreError::Conflict(_))
    ));
    let stored = store
        .get_capability(a.id, owner.id, "coding")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.proficiency, stored.endorsements), (0.75, 1));
    assert_eq!(
        store
            .get_capability(b.id, owner.id, "coding")
            .await
            .unwrap(),
        None
    );
    let by_capability = AgentFilter {
        capability: Some("coding".to_owned()),
        ..AgentFilter::default()
    };
    assert_eq!(
        store
            .list_agents(a.id, &by_capability, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(store.get_resources(a.id, owner.id).await.unwrap(), None);
    let mut resources = AgentResources {
        tenant_id: a.id,
        agent_id: owner.id,
        limits: ResourceLimits {
            api_quota: Some(5),
            ..ResourceLimits::default()
        },
        usage: ResourceUsage::default(),
        reset_at: now,
        updated_at: now,
        version: 1,
    };
    assert_eq!(
        store.save_resources(&resources, 0, &[]).await.unwrap(),
        Update::Applied
    );
    assert_eq!(
        store.save_resources(&resources, 0, &[]).await.unwrap(),
        Update::Stale("0".to_owned())
    );
    resources.usage.api_calls = 4;
    resources.version = 2;
    assert_eq!(
        store.save_resources(&resources, 1, &[]).await.unwrap(),
        Update::Applied
    );
    assert_eq!(
        store.save_resources(&resources, 1, &[]).await.unwrap(),
        Update::Stale("1".to_owned())
    );
    assert_eq!(
        store.get_resources(a.id, owner.id).await.unwrap(),
        Some(resources)
    );
    assert_eq!(store.get_resources(b.id, owner.id).await.unwrap(), None);
}

backend_tests!(
    capabilities_and_resources_round_trip,
    agents_keep_versions_events_and_tenants,
    tenants_are_created_found_and_unique_by_slug,
    first_tenant_and_key_are_created_once,
    keys_round_trip_and_stay_in_their_tenant,
    keys_page_in_creation_order,
    duplicate_key_ids_are_conflicts,
    reopening_keeps_data_and_migrations_are_idempotent,
);
