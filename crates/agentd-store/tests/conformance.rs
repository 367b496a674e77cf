//! The store conformance suite: one story per entity, run on SQLite and on PostgreSQL.

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentEvent, AgentEventKind, AgentHealth, AgentResources, AgentSpec, AgentStatus,
    Capability, Endorsement, ResourceLimits, ResourceUsage, ToolSpec,
};
use agentd_core::knowledge::{
    content_hash, Chunk, ChunkStrategy, Chunking, Content, ContentKind, ContentSource,
    ContentStatus,
};
use agentd_core::memory::Memory;
use agentd_core::run::{
    ChatMessage, Run, RunEvent, RunEventData, RunLimits, RunMetrics, RunStatus, Session, SessionId,
    SessionKind, SessionPolicy, ToolCall, ToolExecution,
};
use agentd_core::{
    AgentId, ApiKey, EventId, KeyId, KeyName, NewApiKey, RunId, Scope, ScopeSet, Tenant, TenantSlug,
};
use agentd_core::{ChunkId, ContentId, MemoryId};
use agentd_store::{
    AgentFilter, ChunkFilter, ChunkHit, ContentInsert, ContentStart, MemoryFilter, MemorySort,
    MemorySortField, MemoryStart, ModelCall, RunFilter, RunStats, ScoredChunk, SessionCursor,
    SessionFilter, Store, StoreError, Update, UsageRow, UserMemoryStats,
};
use agentd_testkit::{backend_tests, TestDb};
use serde_json::json;

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

    // A tenant made with its owner has the owner from the same transaction; a loser writes none.
    use agentd_core::{Email, Role, User};
    let owned = tenant("owned");
    let email = Email::parse("owner@example.com").unwrap();
    let owner = User::new(owned.id, email.clone(), None, Role::Owner);
    let owned_key = key(&owned, "admin", &["*"]);
    assert!(store
        .create_tenant_with_owner(&owned, &owned_key, Some(&owner))
        .await
        .unwrap());
    assert_eq!(
        store.find_user_by_email(owned.id, &email).await.unwrap(),
        Some(owner)
    );
    let loser = tenant("owned");
    let loser_owner = User::new(loser.id, email.clone(), None, Role::Owner);
    assert!(!store
        .create_tenant_with_owner(&loser, &key(&loser, "admin", &["*"]), Some(&loser_owner))
        .await
        .unwrap());
    assert_eq!(
        store.find_user_by_email(loser.id, &email).await.unwrap(),
        None
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
        public_key: None,
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
        .create_agent(&first, None, std::slice::from_ref(&created))
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
    store.create_agent(&owner, None, &[]).await.unwrap();
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

fn session(tenant: &Tenant, id: &str, kind: SessionKind, component: &str) -> Session {
    let now = agentd_core::now();
    Session {
        tenant_id: tenant.id,
        id: SessionId::parse(id).unwrap(),
        kind,
        component_id: component.to_owned(),
        user_id: None,
        name: None,
        state: serde_json::Map::new(),
        metadata: serde_json::Map::new(),
        summary: None,
        policy: SessionPolicy::default(),
        created_at: now,
        updated_at: now,
    }
}

fn run(tenant: &Tenant, agent: AgentId, session: &SessionId, status: RunStatus) -> Run {
    let now = agentd_core::now();
    Run {
        id: RunId::new(),
        tenant_id: tenant.id,
        agent_id: agent,
        agent_version: 1,
        session_id: session.clone(),
        user_id: Some("user-1".to_owned()),
        key_id: None,
        parent_run_id: None,
        status,
        input: "hello".to_owned(),
        content: None,
        model: "scripted/echo".to_owned(),
        metrics: RunMetrics::default(),
        error: None,
        messages: vec![ChatMessage::User {
            content: "hello".to_owned(),
        }],
        pending_tools: Vec::new(),
        request_tools: Vec::new(),
        limits: RunLimits::default(),
        iterations: 0,
        last_seq: 0,
        node: "node-1".to_owned(),
        created_at: now,
        updated_at: now,
    }
}

fn run_event(run: &Run, seq: u64, data: RunEventData) -> RunEvent {
    RunEvent {
        run_id: run.id,
        seq,
        created_at: agentd_core::now(),
        data,
    }
}

fn started(run: &Run, seq: u64) -> RunEvent {
    run_event(
        run,
        seq,
        RunEventData::RunStarted {
            model: "echo".to_owned(),
            model_provider: "scripted".to_owned(),
        },
    )
}

fn session_ids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.id.as_str()).collect()
}

fn run_ids(runs: &[Run]) -> Vec<RunId> {
    runs.iter().map(|r| r.id).collect()
}

async fn sessions_are_listed_newest_first_updated_and_deleted_with_their_runs(db: TestDb) {
    let store = open(&db).await;
    let t = tenant("sessions");
    store.create_tenant(&t).await.unwrap();

    // Seven sessions, two per millisecond, so the id breaks ties in the newest-first order.
    let base = agentd_core::now();
    let names = [
        Some("Weekly Report"),
        Some("weekly_report"),
        Some("100% sure"),
        None,
        Some("Other"),
        Some("WEEKLY sync"),
        Some("notes"),
    ];
    let mut sessions = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let kind = if n == 4 {
            SessionKind::Team
        } else {
            SessionKind::Agent
        };
        let component = if n % 2 == 0 {
            "agent-even"
        } else {
            "agent-odd"
        };
        let mut s = session(&t, &format!("s-{n}"), kind, component);
        s.name = name.map(str::to_owned);
        s.user_id = (n < 3).then(|| "alice".to_owned());
        s.created_at = base + chrono::Duration::milliseconds(n as i64 / 2);
        s.updated_at = s.created_at;
        s.state.insert("step".to_owned(), serde_json::json!(n));
        s.metadata.insert(
            "source".to_owned(),
            serde_json::json!({"n": n, "tags": ["x"]}),
        );
        assert!(store.create_session(&s).await.unwrap());
        sessions.push(s);
    }
    assert_eq!(
        store.get_session(t.id, &sessions[0].id).await.unwrap(),
        Some(sessions[0].clone())
    );
    assert_eq!(
        store
            .get_session(t.id, &SessionId::parse("s-none").unwrap())
            .await
            .unwrap(),
        None
    );

    // A second session with a taken id is refused and writes nothing.
    let mut twin = sessions[0].clone();
    twin.name = Some("twin".to_owned());
    assert!(!store.create_session(&twin).await.unwrap());
    assert_eq!(
        store.get_session(t.id, &twin.id).await.unwrap(),
        Some(sessions[0].clone())
    );

    // Pages of three, newest first by (created_at, id), each with the total count.
    let newest_first = ["s-6", "s-5", "s-4", "s-3", "s-2", "s-1", "s-0"];
    let all = SessionFilter::default();
    let mut seen = Vec::new();
    let mut cursor: Option<SessionCursor> = None;
    let mut pages = 0;
    loop {
        let (page, total) = store
            .list_sessions(t.id, &all, cursor.as_ref(), 3)
            .await
            .unwrap();
        assert_eq!(total, 7, "the total counts every match, not the page");
        if page.is_empty() {
            break;
        }
        pages += 1;
        assert!(pages <= 3, "a page never repeats what came before");
        cursor = page.last().map(|s| SessionCursor {
            created_at: s.created_at,
            id: s.id.clone(),
        });
        seen.extend(page);
    }
    assert_eq!(pages, 3);
    assert_eq!(session_ids(&seen), newest_first);
    assert_eq!(seen[6], sessions[0], "listed sessions are whole");

    // Every filter, alone and combined; the total follows the filter.
    let tenant_id = t.id;
    let list = |filter: SessionFilter| {
        let store = store.clone();
        async move {
            let (page, total) = store
                .list_sessions(tenant_id, &filter, None, 2)
                .await
                .unwrap();
            (
                page.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
                total,
            )
        }
    };
    let text = |value: &str| Some(value.to_owned());
    assert_eq!(
        list(SessionFilter {
            kind: Some(SessionKind::Team),
            ..SessionFilter::default()
        })
        .await,
        (vec!["s-4".to_owned()], 1)
    );
    assert_eq!(
        list(SessionFilter {
            component_id: text("agent-odd"),
            ..SessionFilter::default()
        })
        .await,
        (vec!["s-5".to_owned(), "s-3".to_owned()], 3)
    );
    assert_eq!(
        list(SessionFilter {
            user_id: text("alice"),
            ..SessionFilter::default()
        })
        .await,
        (vec!["s-2".to_owned(), "s-1".to_owned()], 3)
    );
    assert_eq!(
        list(SessionFilter {
            name_contains: text("weekLY"),
            ..SessionFilter::default()
        })
        .await,
        (vec!["s-5".to_owned(), "s-1".to_owned()], 3),
        "name matching ignores ASCII case"
    );
    assert_eq!(
        list(SessionFilter {
            name_contains: text("y_r"),
            ..SessionFilter::default()
        })
        .await,
        (vec!["s-1".to_owned()], 1),
        "`_` is a character, not a wildcard"
    );
    assert_eq!(
        list(SessionFilter {
            name_contains: text("%"),
            ..SessionFilter::default()
        })
        .await,
        (vec!["s-2".to_owned()], 1),
        "`%` is a character, not a wildcard"
    );
    assert_eq!(
        list(SessionFilter {
            kind: Some(SessionKind::Agent),
            component_id: text("agent-even"),
            user_id: text("alice"),
            name_contains: text("report"),
        })
        .await,
        (vec!["s-0".to_owned()], 1)
    );
    let (page, total) = store
        .list_sessions(
            t.id,
            &SessionFilter {
                component_id: text("agent-odd"),
                ..SessionFilter::default()
            },
            Some(&SessionCursor {
                created_at: sessions[5].created_at,
                id: sessions[5].id.clone(),
            }),
            10,
        )
        .await
        .unwrap();
    assert_eq!((session_ids(&page), total), (vec!["s-3", "s-1"], 3));

    // An update replaces the mutable fields only.
    let mut changed = sessions[3].clone();
    changed.name = Some("renamed".to_owned());
    changed.summary = Some("they talked".to_owned());
    changed.policy = SessionPolicy::Reject;
    changed
        .state
        .insert("step".to_owned(), serde_json::json!(99));
    changed.metadata.clear();
    changed.updated_at = base + chrono::Duration::seconds(5);
    let mut stored = changed.clone();
    changed.component_id = "another-agent".to_owned();
    changed.kind = SessionKind::Workflow;
    assert!(store.update_session(&changed).await.unwrap());
    assert_eq!(
        store.get_session(t.id, &changed.id).await.unwrap(),
        Some(stored.clone())
    );
    stored.id = SessionId::parse("s-none").unwrap();
    assert!(!store.update_session(&stored).await.unwrap());

    // Deleting sessions deletes their runs and the runs' events, and nothing else.
    let agent_id = AgentId::new();
    let mut doomed_runs = Vec::new();
    for s in &sessions[..2] {
        let mut r = run(&t, agent_id, &s.id, RunStatus::Completed);
        r.last_seq = 1;
        store.insert_run(&r, &[started(&r, 1)]).await.unwrap();
        doomed_runs.push(r);
    }
    let mut kept_run = run(&t, agent_id, &sessions[2].id, RunStatus::Completed);
    kept_run.last_seq = 1;
    store
        .insert_run(&kept_run, &[started(&kept_run, 1)])
        .await
        .unwrap();
    let doomed = vec![
        sessions[0].id.clone(),
        sessions[1].id.clone(),
        SessionId::parse("s-none").unwrap(),
    ];
    assert_eq!(store.delete_sessions(t.id, &doomed).await.unwrap(), 2);
    assert_eq!(store.delete_sessions(t.id, &doomed).await.unwrap(), 0);
    assert_eq!(store.delete_sessions(t.id, &[]).await.unwrap(), 0);
    assert_eq!(
        store.get_session(t.id, &sessions[0].id).await.unwrap(),
        None
    );
    for r in &doomed_runs {
        assert_eq!(store.get_run(t.id, r.id).await.unwrap(), None);
        assert!(store
            .list_run_events(t.id, r.id, 0, 10)
            .await
            .unwrap()
            .is_empty());
    }
    assert_eq!(
        store.get_run(t.id, kept_run.id).await.unwrap(),
        Some(kept_run.clone())
    );
    assert_eq!(
        store
            .list_run_events(t.id, kept_run.id, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let (rest, total) = store.list_sessions(t.id, &all, None, 10).await.unwrap();
    assert_eq!(
        (session_ids(&rest), total),
        (vec!["s-6", "s-5", "s-4", "s-3", "s-2"], 5)
    );
}

async fn runs_save_by_compare_and_set_and_keep_their_event_logs(db: TestDb) {
    let store = open(&db).await;
    let t = tenant("runs");
    store.create_tenant(&t).await.unwrap();
    let (agent_x, agent_y) = (AgentId::new(), AgentId::new());
    let (s1, s2) = (
        SessionId::parse("s1").unwrap(),
        SessionId::parse("s2").unwrap(),
    );

    // A run round-trips whole, with its first event.
    let mut first = run(&t, agent_x, &s1, RunStatus::Running);
    first.parent_run_id = Some(RunId::new());
    first.request_tools = vec![ToolSpec {
        name: "lookup".to_owned(),
        description: Some("finds things".to_owned()),
        parameters: Some(serde_json::json!({"type": "object"})),
        client_side: true,
        requires_confirmation: false,
    }];
    first.limits = RunLimits {
        max_iterations: Some(4),
        max_tokens: Some(1000),
        max_seconds: None,
    };
    first.last_seq = 1;
    let event_1 = started(&first, 1);
    store
        .insert_run(&first, std::slice::from_ref(&event_1))
        .await
        .unwrap();
    assert_eq!(
        store.get_run(t.id, first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_run(t.id, RunId::new()).await.unwrap(), None);
    assert!(matches!(
        store.insert_run(&first, &[]).await,
        Err(StoreError::Conflict(_))
    ));

    // Saving is compare-and-set on last_seq, with the new events in the same transaction.
    let call = ToolCall {
        id: "call-1".to_owned(),
        name: "lookup".to_owned(),
        arguments: r#"{"q":"rust"}"#.to_owned(),
    };
    let mut paused = first.clone();
    paused.status = RunStatus::Paused;
    paused.content = Some("Let me look".to_owned());
    paused.messages.push(ChatMessage::Assistant {
        content: Some("Let me look".to_owned()),
        tool_calls: vec![call.clone()],
    });
    paused.pending_tools = vec![ToolExecution::requested(&call)];
    paused.iterations = 1;
    paused.metrics = RunMetrics {
        input_tokens: 12,
        output_tokens: 7,
        total_tokens: 19,
        time_to_first_token: Some(0.25),
        duration: 1.5,
    };
    paused.node = "node-2".to_owned();
    paused.last_seq = 3;
    paused.updated_at = agentd_core::now();
    let event_2 = run_event(
        &paused,
        2,
        RunEventData::RunContent {
            content: "Let me look".to_owned(),
        },
    );
    let event_3 = run_event(
        &paused,
        3,
        RunEventData::RunPaused {
            tools: paused.pending_tools.clone(),
            content: "Let me look".to_owned(),
        },
    );
    let new_events = [event_2.clone(), event_3.clone()];
    assert_eq!(
        store.save_run(&paused, 1, &new_events).await.unwrap(),
        Update::Applied
    );
    assert_eq!(
        store.get_run(t.id, first.id).await.unwrap(),
        Some(paused.clone())
    );
    assert_eq!(
        store.save_run(&paused, 1, &new_events).await.unwrap(),
        Update::Stale("paused".to_owned()),
        "a stale save reports the stored status"
    );
    let mut absent = paused.clone();
    absent.id = RunId::new();
    assert_eq!(
        store.save_run(&absent, 1, &[]).await.unwrap(),
        Update::Missing
    );
    assert_eq!(
        store.list_run_events(t.id, first.id, 0, 10).await.unwrap(),
        vec![event_1.clone(), event_2.clone(), event_3.clone()],
        "a stale save writes no events"
    );
    assert_eq!(
        store.list_run_events(t.id, first.id, 1, 1).await.unwrap(),
        vec![event_2]
    );
    assert!(store
        .list_run_events(t.id, first.id, 3, 10)
        .await
        .unwrap()
        .is_empty());

    // More runs for filters, paging, history, unfinished runs and stats.
    let finished = |session: &SessionId, agent: AgentId, status: RunStatus, seconds: f64| {
        let mut r = run(&t, agent, session, status);
        r.metrics.duration = seconds;
        r.metrics.input_tokens = (seconds * 10.0) as u64;
        r.metrics.output_tokens = seconds as u64;
        r
    };
    let mut others = vec![
        finished(&s1, agent_x, RunStatus::Completed, 2.0),
        finished(&s1, agent_x, RunStatus::Error, 3.0),
        finished(&s1, agent_x, RunStatus::Completed, 4.0),
        finished(&s1, agent_x, RunStatus::Cancelled, 1.0),
        finished(&s1, agent_x, RunStatus::Completed, 6.0),
        finished(&s2, agent_x, RunStatus::Pending, 100.0),
        finished(&s2, agent_y, RunStatus::Completed, 50.0),
        finished(&s2, agent_y, RunStatus::Running, 0.0),
    ];
    others[5].node = "node-2".to_owned();
    for r in &others {
        store.insert_run(r, &[]).await.unwrap();
    }
    let all_ids: Vec<RunId> = std::iter::once(first.id)
        .chain(others.iter().map(|r| r.id))
        .collect();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_runs(t.id, &RunFilter::default(), after, 4)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(seen.len() < all_ids.len(), "paging ends");
        after = page.last().map(|r| r.id);
        seen.extend(page);
    }
    assert_eq!(run_ids(&seen), all_ids);
    assert_eq!(seen[0], paused);
    let tenant_id = t.id;
    let list = |filter: RunFilter, after: Option<RunId>| {
        let store = store.clone();
        async move {
            run_ids(
                &store
                    .list_runs(tenant_id, &filter, after, 10)
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(
        list(
            RunFilter {
                agent_id: Some(agent_y),
                ..RunFilter::default()
            },
            None
        )
        .await,
        vec![others[6].id, others[7].id]
    );
    assert_eq!(
        list(
            RunFilter {
                session_id: Some(s2.clone()),
                ..RunFilter::default()
            },
            Some(others[5].id)
        )
        .await,
        vec![others[6].id, others[7].id]
    );
    assert_eq!(
        list(
            RunFilter {
                agent_id: Some(agent_x),
                session_id: Some(s1.clone()),
                status: Some(RunStatus::Completed),
            },
            None
        )
        .await,
        vec![others[0].id, others[2].id, others[4].id]
    );

    // A session's history is its last completed runs, oldest first.
    assert_eq!(
        run_ids(&store.session_history(t.id, &s1, 2).await.unwrap()),
        vec![others[2].id, others[4].id]
    );
    assert_eq!(
        run_ids(&store.session_history(t.id, &s1, 10).await.unwrap()),
        vec![others[0].id, others[2].id, others[4].id]
    );
    assert!(store
        .session_history(t.id, &SessionId::parse("s-none").unwrap(), 10)
        .await
        .unwrap()
        .is_empty());

    // A node's unfinished runs are its pending and running ones (a paused run waits for the client).
    let mut unfinished = store.list_unfinished_runs("node-1").await.unwrap();
    unfinished.sort();
    assert_eq!(unfinished, vec![(t.id, others[7].id)]);
    assert_eq!(
        store.list_unfinished_runs("node-2").await.unwrap(),
        vec![(t.id, others[5].id)]
    );
    assert!(store
        .list_unfinished_runs("node-3")
        .await
        .unwrap()
        .is_empty());

    // Stats cover finished runs only.
    assert_eq!(
        store.agent_run_stats(t.id, agent_x).await.unwrap(),
        RunStats {
            total: 5,
            completed: 3,
            errored: 1,
            cancelled: 1,
            average_duration: 16.0 / 5.0,
            input_tokens: 160,
            output_tokens: 16,
        }
    );
    assert_eq!(
        store.agent_run_stats(t.id, agent_y).await.unwrap(),
        RunStats {
            total: 1,
            completed: 1,
            average_duration: 50.0,
            input_tokens: 500,
            output_tokens: 50,
            ..RunStats::default()
        }
    );
    assert_eq!(
        store.agent_run_stats(t.id, AgentId::new()).await.unwrap(),
        RunStats::default()
    );

    // The tenant's usage sums the same finished runs, per agent, in agent id order.
    let mut expected = vec![
        agentd_store::AgentUsage {
            agent_id: agent_x,
            runs: 5,
            input_tokens: 160,
            output_tokens: 16,
        },
        agentd_store::AgentUsage {
            agent_id: agent_y,
            runs: 1,
            input_tokens: 500,
            output_tokens: 50,
        },
    ];
    expected.sort_by_key(|usage| usage.agent_id);
    assert_eq!(store.tenant_usage(t.id).await.unwrap(), expected);
    let other = tenant("usage-empty");
    store.create_tenant(&other).await.unwrap();
    assert!(store.tenant_usage(other.id).await.unwrap().is_empty());

    // A run is counted in its agent's figures once, when a save finishes it; saving it again does
    // not count it twice, and deleting its session later keeps it counted.
    let agent_z = AgentId::new();
    let s3 = SessionId::parse("s3").unwrap();
    let mut z = run(&t, agent_z, &s3, RunStatus::Running);
    z.last_seq = 1;
    store.insert_run(&z, &[started(&z, 1)]).await.unwrap();
    assert_eq!(
        store.agent_run_stats(t.id, agent_z).await.unwrap(),
        RunStats::default(),
        "a running run is not counted"
    );
    let mut done = z.clone();
    done.status = RunStatus::Error;
    done.metrics.duration = 2.0;
    done.metrics.input_tokens = 9;
    done.last_seq = 2;
    let ended = run_event(
        &done,
        2,
        RunEventData::RunContent {
            content: "x".to_owned(),
        },
    );
    assert_eq!(
        store.save_run(&done, 1, &[ended]).await.unwrap(),
        Update::Applied
    );
    let counted = RunStats {
        total: 1,
        errored: 1,
        average_duration: 2.0,
        input_tokens: 9,
        ..RunStats::default()
    };
    assert_eq!(store.agent_run_stats(t.id, agent_z).await.unwrap(), counted);
    let mut again = done.clone();
    again.last_seq = 3;
    let later = run_event(
        &again,
        3,
        RunEventData::RunContent {
            content: "y".to_owned(),
        },
    );
    assert_eq!(
        store.save_run(&again, 2, &[later]).await.unwrap(),
        Update::Applied
    );
    assert_eq!(store.agent_run_stats(t.id, agent_z).await.unwrap(), counted);
    store.delete_sessions(t.id, &[s3]).await.unwrap();
    assert_eq!(
        store.agent_run_stats(t.id, agent_z).await.unwrap(),
        counted,
        "the figures are the agent's history"
    );
}

async fn sessions_runs_and_events_stay_in_their_tenant(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("runs-a"), tenant("runs-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let agent_id = AgentId::new();
    let a_session = session(&a, "shared-id", SessionKind::Agent, "agent-1");
    assert!(store.create_session(&a_session).await.unwrap());
    let mut a_run = run(&a, agent_id, &a_session.id, RunStatus::Running);
    a_run.last_seq = 1;
    store
        .insert_run(&a_run, &[started(&a_run, 1)])
        .await
        .unwrap();
    let mut a_done = run(&a, agent_id, &a_session.id, RunStatus::Completed);
    a_done.metrics.duration = 2.0;
    store.insert_run(&a_done, &[]).await.unwrap();

    // B sees none of A's sessions and cannot change them.
    assert_eq!(store.get_session(b.id, &a_session.id).await.unwrap(), None);
    let (page, total) = store
        .list_sessions(b.id, &SessionFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_eq!(total, 0);
    let mut hijacked = a_session.clone();
    hijacked.tenant_id = b.id;
    hijacked.name = Some("mine".to_owned());
    assert!(!store.update_session(&hijacked).await.unwrap());
    assert_eq!(
        store
            .delete_sessions(b.id, std::slice::from_ref(&a_session.id))
            .await
            .unwrap(),
        0
    );

    // Nor A's runs, events, history or stats.
    assert_eq!(store.get_run(b.id, a_run.id).await.unwrap(), None);
    assert!(store
        .list_runs(b.id, &RunFilter::default(), None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_run_events(b.id, a_run.id, 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .session_history(b.id, &a_session.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.agent_run_stats(b.id, agent_id).await.unwrap(),
        RunStats::default()
    );
    let mut foreign = a_run.clone();
    foreign.tenant_id = b.id;
    foreign.status = RunStatus::Cancelled;
    assert_eq!(
        store.save_run(&foreign, 1, &[]).await.unwrap(),
        Update::Missing
    );

    // Session ids are per tenant: B may use the same id, and deleting B's leaves A's.
    assert!(store.create_session(&hijacked).await.unwrap());
    let b_run = run(&b, agent_id, &hijacked.id, RunStatus::Completed);
    store.insert_run(&b_run, &[]).await.unwrap();
    assert_eq!(
        store
            .delete_sessions(b.id, std::slice::from_ref(&hijacked.id))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.get_session(a.id, &a_session.id).await.unwrap(),
        Some(a_session.clone())
    );
    assert_eq!(
        store.get_run(a.id, a_run.id).await.unwrap(),
        Some(a_run.clone())
    );
    assert_eq!(
        store
            .list_run_events(a.id, a_run.id, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.get_run(b.id, b_run.id).await.unwrap(), None);
    assert_eq!(
        run_ids(
            &store
                .session_history(a.id, &a_session.id, 10)
                .await
                .unwrap()
        ),
        vec![a_done.id]
    );
}

async fn usage_adds_up_runs_and_model_calls_per_key_agent_and_model(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("usage-a"), tenant("usage-b"));
    for t in [&a, &b] {
        store.create_tenant(t).await.unwrap();
    }
    // Plans.
    assert!(store.set_tenant_plan(a.id, Some("pro")).await.unwrap());
    assert_eq!(
        store
            .get_tenant(a.id)
            .await
            .unwrap()
            .unwrap()
            .plan
            .as_deref(),
        Some("pro")
    );
    assert_eq!(store.get_tenant(b.id).await.unwrap().unwrap().plan, None);
    assert!(!store
        .set_tenant_plan(agentd_core::TenantId::new(), Some("pro"))
        .await
        .unwrap());

    let key_1 = KeyId::new();
    let agent = AgentId::new();
    let session = SessionId::new();
    let mut metered = run(&a, agent, &session, RunStatus::Completed);
    metered.key_id = Some(key_1);
    metered.metrics.input_tokens = 10;
    metered.metrics.output_tokens = 5;
    metered.metrics.total_tokens = 15;
    store.insert_run(&metered, &[]).await.unwrap();
    assert_eq!(
        store
            .get_run(a.id, metered.id)
            .await
            .unwrap()
            .unwrap()
            .key_id,
        Some(key_1)
    );
    let mut other_tenant = run(&b, agent, &session, RunStatus::Completed);
    other_tenant.metrics.input_tokens = 1000;
    store.insert_run(&other_tenant, &[]).await.unwrap();
    let call = |tenant: &Tenant, prompt: u64, completion: u64| ModelCall {
        id: EventId::new(),
        tenant_id: tenant.id,
        key_id: Some(key_1),
        model: "scripted/gpt".to_owned(),
        endpoint: "chat.completions".to_owned(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        created_at: agentd_core::now(),
    };
    store.insert_model_call(&call(&a, 7, 3)).await.unwrap();
    store.insert_model_call(&call(&a, 2, 1)).await.unwrap();
    store.insert_model_call(&call(&b, 500, 500)).await.unwrap();

    let from = agentd_core::now() - chrono::Duration::hours(1);
    let to = agentd_core::now() + chrono::Duration::hours(1);
    let mut rows = store.usage_rows(a.id, from, to).await.unwrap();
    rows.sort_by_key(|row| row.agent_id.is_some());
    assert_eq!(
        rows,
        vec![
            UsageRow {
                key_id: Some(key_1),
                agent_id: None,
                model: "scripted/gpt".to_owned(),
                requests: 2,
                prompt_tokens: 9,
                completion_tokens: 4,
            },
            UsageRow {
                key_id: Some(key_1),
                agent_id: Some(agent),
                model: "scripted/echo".to_owned(),
                requests: 1,
                prompt_tokens: 10,
                completion_tokens: 5,
            },
        ]
    );
    assert_eq!(store.tokens_since(a.id, from).await.unwrap(), 28);
    assert_eq!(store.tokens_since(a.id, to).await.unwrap(), 0);
    assert!(store
        .usage_rows(a.id, to, to + chrono::Duration::hours(1))
        .await
        .unwrap()
        .is_empty());
}

async fn users_tokens_and_oauth_states_round_trip_once(db: TestDb) {
    use agentd_core::user::{StoredToken, TokenKind};
    use agentd_core::{Email, Role, User};
    use agentd_store::{OAuthState, SigningKeyRecord, TokenUse};

    let store = open(&db).await;
    let (a, b) = (tenant("users-a"), tenant("users-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let email = Email::parse("Ann@Example.com").unwrap();
    let ann = User::new(a.id, email.clone(), Some("Ann".into()), Role::Owner);
    store.insert_user(&ann).await.unwrap();
    let again = User::new(a.id, email.clone(), None, Role::Viewer);
    assert!(matches!(
        store.insert_user(&again).await,
        Err(StoreError::Conflict(_))
    ));
    // The same address in another tenant is another user.
    store
        .insert_user(&User::new(b.id, email.clone(), None, Role::Viewer))
        .await
        .unwrap();
    assert_eq!(
        store.get_user(a.id, ann.id).await.unwrap(),
        Some(ann.clone())
    );
    assert_eq!(store.get_user(b.id, ann.id).await.unwrap(), None);
    assert_eq!(
        store.find_user_by_email(a.id, &email).await.unwrap(),
        Some(ann.clone())
    );
    let bob = User::new(
        a.id,
        Email::parse("bob@example.com").unwrap(),
        None,
        Role::Member,
    );
    store.insert_user(&bob).await.unwrap();
    let page = store.list_users(a.id, None, 1).await.unwrap();
    assert_eq!(page, std::slice::from_ref(&ann));
    assert_eq!(
        store.list_users(a.id, Some(ann.id), 10).await.unwrap(),
        std::slice::from_ref(&bob)
    );
    let mut changed = bob.clone();
    changed.role = Role::Admin;
    changed.last_login_at = Some(agentd_core::now());
    assert!(store.update_user(&changed).await.unwrap());
    assert_eq!(store.get_user(a.id, bob.id).await.unwrap(), Some(changed));
    assert_eq!(
        store
            .count_users_with_role(a.id, Role::Owner)
            .await
            .unwrap(),
        1
    );

    let now = agentd_core::now();
    let token = |hash: &str, expires_in: i64| StoredToken {
        hash: hash.to_owned(),
        kind: TokenKind::MagicLink,
        tenant_id: a.id,
        user_id: ann.id,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(expires_in),
        used_at: None,
    };
    store.insert_token(&token("fresh", 60)).await.unwrap();
    store.insert_token(&token("stale", -1)).await.unwrap();
    match store
        .use_token(TokenKind::MagicLink, "fresh", now)
        .await
        .unwrap()
    {
        TokenUse::Used(used) => assert_eq!((used.user_id, used.used_at), (ann.id, Some(now))),
        other => panic!("{other:?}"),
    }
    let use_token = |hash: &'static str, kind| {
        let store = store.clone();
        async move { store.use_token(kind, hash, now).await.unwrap() }
    };
    assert_eq!(
        use_token("fresh", TokenKind::MagicLink).await,
        TokenUse::AlreadyUsed
    );
    assert_eq!(
        use_token("stale", TokenKind::MagicLink).await,
        TokenUse::Expired
    );
    assert_eq!(
        use_token("nope", TokenKind::MagicLink).await,
        TokenUse::Unknown
    );
    // A token is only good for its own kind.
    assert_eq!(
        use_token("stale", TokenKind::Refresh).await,
        TokenUse::Unknown
    );
    store
        .insert_token(&StoredToken {
            kind: TokenKind::Refresh,
            ..token("refresh", 60)
        })
        .await
        .unwrap();
    store.revoke_user_tokens(a.id, ann.id, now).await.unwrap();
    assert_eq!(
        use_token("refresh", TokenKind::Refresh).await,
        TokenUse::AlreadyUsed
    );

    let state = OAuthState {
        hash: "state-hash".into(),
        provider: "local".into(),
        tenant_id: a.id,
        code_verifier: "verifier".into(),
        redirect_to: Some("/ui".into()),
        created_at: now,
        expires_at: now + chrono::Duration::minutes(10),
    };
    store.insert_oauth_state(&state).await.unwrap();
    assert_eq!(
        store.take_oauth_state("state-hash").await.unwrap(),
        Some(state)
    );
    assert_eq!(store.take_oauth_state("state-hash").await.unwrap(), None);

    let first = SigningKeyRecord {
        purpose: "jwt".into(),
        kid: "k1".into(),
        public_key: "pk1".into(),
        private_sealed: "sealed1".into(),
        created_at: now,
    };
    assert_eq!(store.signing_key(&first).await.unwrap(), first);
    let second = SigningKeyRecord {
        kid: "k2".into(),
        ..first.clone()
    };
    assert_eq!(store.signing_key(&second).await.unwrap(), first);

    assert!(store.delete_user(a.id, ann.id).await.unwrap());
    assert!(!store.delete_user(a.id, ann.id).await.unwrap());
    assert_eq!(
        use_token("fresh", TokenKind::MagicLink).await,
        TokenUse::Unknown
    );
}

async fn audit_chains_are_gapless_per_tenant_and_list_newest_first(db: TestDb) {
    use agentd_core::audit::{
        platform_tenant, AuditOutcome, AuditRecord, ChainVerifier, GENESIS_HASH,
    };
    use agentd_core::{AuditId, TenantId};
    use agentd_store::AuditFilter;

    let store = open(&db).await;
    let (a, b, platform) = (TenantId::new(), TenantId::new(), platform_tenant());
    let agent = AgentId::new();
    let started = agentd_core::now();
    let record =
        |tenant: TenantId, action: &str, target: &str, agent_id, status: u16| AuditRecord {
            id: AuditId::new(),
            tenant_id: tenant,
            actor: if tenant == platform {
                "anonymous".to_owned()
            } else {
                format!("key:{tenant}")
            },
            action: action.to_owned(),
            target: target.to_owned(),
            agent_id,
            status,
            outcome: AuditOutcome::from_status(status),
            client_addr: Some("127.0.0.1:4000".to_owned()),
            request_id: Some("req-1".to_owned()),
            created_at: started,
        };

    // One batch across three chains: each chain numbers its own entries from 1 and links them.
    let batch = [
        record(a, "POST /agents", "/agents", Some(agent), 201),
        record(b, "POST /keys", "/keys", None, 201),
        record(
            a,
            "POST /agents/{agent_id}/pause",
            &format!("/agents/{agent}/pause"),
            Some(agent),
            200,
        ),
        record(platform, "POST /agents", "/agents", None, 401),
    ];
    let appended = store.append_audit(&batch).await.unwrap();
    assert_eq!(appended.len(), 4);
    let of = |tenant: TenantId| -> Vec<_> {
        appended
            .iter()
            .filter(|e| e.record.tenant_id == tenant)
            .cloned()
            .collect()
    };
    let chain_a = of(a);
    assert_eq!(chain_a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(chain_a[0].record, batch[0], "stored as given");
    assert_eq!(chain_a[0].prev_hash, GENESIS_HASH);
    assert_eq!(chain_a[1].prev_hash, chain_a[0].hash);
    assert_eq!(chain_a[1].hash, chain_a[1].computed_hash());
    assert_eq!(of(b)[0].seq, 1);
    assert_eq!(of(platform)[0].seq, 1);
    assert!(store.append_audit(&[]).await.unwrap().is_empty());

    // A later batch continues the chain.
    let later = store
        .append_audit(&[record(a, "DELETE /keys/{key_id}", "/keys/x", None, 404)])
        .await
        .unwrap();
    assert_eq!(later[0].seq, 3);
    assert_eq!(later[0].prev_hash, chain_a[1].hash);

    // Lists: newest first, paged by seq, filtered, and only the tenant's own entries.
    let seqs = |entries: Vec<agentd_core::audit::AuditEntry>| -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    };
    let all = AuditFilter::default();
    assert_eq!(
        seqs(store.list_audit(a, &all, None, 10).await.unwrap()),
        [3, 2, 1]
    );
    assert_eq!(
        seqs(store.list_audit(a, &all, Some(3), 1).await.unwrap()),
        [2]
    );
    let filtered = |filter: AuditFilter| {
        let store = store.clone();
        async move { seqs(store.list_audit(a, &filter, None, 10).await.unwrap()) }
    };
    assert_eq!(
        filtered(AuditFilter {
            agent_id: Some(agent),
            ..Default::default()
        })
        .await,
        [2, 1]
    );
    assert_eq!(
        filtered(AuditFilter {
            outcome: Some(AuditOutcome::Failed),
            ..Default::default()
        })
        .await,
        [3]
    );
    assert_eq!(
        filtered(AuditFilter {
            action: Some("POST /agents".to_owned()),
            ..Default::default()
        })
        .await,
        [1]
    );
    assert_eq!(
        filtered(AuditFilter {
            target_prefix: Some(format!("/agents/{agent}")),
            ..Default::default()
        })
        .await,
        [2]
    );
    assert_eq!(
        filtered(AuditFilter {
            actor: Some(format!("key:{a}")),
            ..Default::default()
        })
        .await,
        [3, 2, 1]
    );
    assert!(filtered(AuditFilter {
        actor: Some("anonymous".to_owned()),
        ..Default::default()
    })
    .await
    .is_empty());
    let hour = chrono::Duration::hours(1);
    assert_eq!(
        filtered(AuditFilter {
            from: Some(started),
            to: Some(started + hour),
            ..Default::default()
        })
        .await,
        [3, 2, 1]
    );
    assert!(filtered(AuditFilter {
        from: Some(started + hour),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(filtered(AuditFilter {
        to: Some(started),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        seqs(store.list_audit(b, &all, None, 10).await.unwrap()),
        [1]
    );
    assert!(store
        .list_audit(TenantId::new(), &all, None, 10)
        .await
        .unwrap()
        .is_empty());

    // Appenders racing on one chain leave it gapless and linked.
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let entry = record(a, "POST /sessions", &format!("/sessions/{i}"), None, 201);
        tokio::spawn(async move { store.append_audit(&[entry]).await.unwrap() })
    });
    for racer in racers {
        racer.await.unwrap();
    }

    // The chains, with their heads, for verification; each walks clean.
    let chains = store.audit_chains().await.unwrap();
    let mut tenants: Vec<TenantId> = chains.iter().map(|(tenant, _)| *tenant).collect();
    tenants.sort();
    let mut expected = vec![a, b, platform];
    expected.sort();
    assert_eq!(tenants, expected);
    for (tenant, head) in chains {
        let mut verifier = ChainVerifier::new();
        let mut after = 0;
        loop {
            let page = store.audit_chain(tenant, after, 3).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                verifier
                    .check(entry)
                    .unwrap_or_else(|e| panic!("{tenant}: {e}"));
            }
        }
        let head = head.expect("every chain has a head");
        let count = verifier.finish(Some((head.0, head.1.as_str()))).unwrap();
        assert_eq!(count, if tenant == a { 11 } else { 1 });
    }
}

/// Agents' identities (made with the agent, or given once later) and keys bound to an agent.
async fn agent_identities_and_agent_keys_round_trip(db: TestDb) {
    use agentd_store::SealedIdentity;
    let store = open(&db).await;
    let (a, b) = (tenant("ids-a"), tenant("ids-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let identity = |n: u8| SealedIdentity {
        public_key: format!("public-{n}"),
        sealed_private_key: format!("v1:sealed-{n}"),
    };

    // An agent made with its identity keeps both halves; the public one is on the agent.
    let mut signer = agent(&a, "signer", &[]);
    signer.public_key = Some(identity(1).public_key);
    store
        .create_agent(&signer, Some(&identity(1).sealed_private_key), &[])
        .await
        .unwrap();
    assert_eq!(
        store.get_agent(a.id, signer.id).await.unwrap(),
        Some(signer.clone())
    );
    assert_eq!(
        store.get_agent_identity(a.id, signer.id).await.unwrap(),
        Some(identity(1))
    );
    assert_eq!(
        store.get_agent_identity(b.id, signer.id).await.unwrap(),
        None
    );
    assert!(
        !store
            .set_agent_identity(a.id, signer.id, &identity(2))
            .await
            .unwrap(),
        "an identity is never replaced"
    );
    // A spec change keeps the identity.
    let mut changed = signer.clone();
    changed.version = 2;
    let event = AgentEvent::new(&changed, AgentEventKind::ConfigUpdated, "update", "k");
    store.update_agent_spec(&changed, 1, &event).await.unwrap();
    assert_eq!(
        store
            .get_agent(a.id, signer.id)
            .await
            .unwrap()
            .unwrap()
            .public_key,
        signer.public_key
    );

    // An agent made without one (as before identities existed) is given one once, in its tenant only.
    let legacy = agent(&a, "legacy", &[]);
    store.create_agent(&legacy, None, &[]).await.unwrap();
    assert_eq!(
        store
            .get_agent(a.id, legacy.id)
            .await
            .unwrap()
            .unwrap()
            .public_key,
        None
    );
    assert_eq!(
        store.get_agent_identity(a.id, legacy.id).await.unwrap(),
        None
    );
    assert!(!store
        .set_agent_identity(b.id, legacy.id, &identity(3))
        .await
        .unwrap());
    assert!(store
        .set_agent_identity(a.id, legacy.id, &identity(3))
        .await
        .unwrap());
    assert!(!store
        .set_agent_identity(a.id, legacy.id, &identity(4))
        .await
        .unwrap());
    assert_eq!(
        store.get_agent_identity(a.id, legacy.id).await.unwrap(),
        Some(identity(3))
    );
    assert_eq!(
        store
            .get_agent(a.id, legacy.id)
            .await
            .unwrap()
            .unwrap()
            .public_key,
        Some(identity(3).public_key)
    );
    assert!(!store
        .set_agent_identity(a.id, AgentId::new(), &identity(5))
        .await
        .unwrap());

    // Agents are found by public key within their tenant.
    assert_eq!(
        store
            .find_agent_by_public_key(a.id, "public-3")
            .await
            .unwrap(),
        Some(legacy.id)
    );
    assert_eq!(
        store
            .find_agent_by_public_key(b.id, "public-3")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_agent_by_public_key(a.id, "public-9")
            .await
            .unwrap(),
        None
    );

    // Keys bound to an agent keep their agent and are listed per agent.
    let tenant_key = key(&a, "tenant", &["keys:read"]);
    let bind = |agent: AgentId, name: &str| {
        NewApiKey {
            name: KeyName::parse(name).unwrap(),
            scopes: ScopeSet::new([Scope::parse(&format!("agents:{agent}:run")).unwrap()]),
            expires_at: None,
        }
        .issue_for_agent(a.id, agent)
        .0
    };
    let (first, second, other) = (
        bind(signer.id, "first"),
        bind(signer.id, "second"),
        bind(legacy.id, "other"),
    );
    for k in [&tenant_key, &first, &second, &other] {
        store.insert_key(k).await.unwrap();
    }
    assert_eq!(
        store.get_key(a.id, first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(first.agent_id, Some(signer.id));
    assert_eq!(
        store.find_key_by_hash(&first.hash).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .get_key(a.id, tenant_key.id)
            .await
            .unwrap()
            .unwrap()
            .agent_id,
        None
    );
    assert_eq!(
        store
            .list_agent_keys(a.id, signer.id, None, 10)
            .await
            .unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        store
            .list_agent_keys(a.id, signer.id, Some(first.id), 10)
            .await
            .unwrap(),
        vec![second.clone()]
    );
    assert_eq!(
        store
            .list_agent_keys(a.id, signer.id, None, 1)
            .await
            .unwrap(),
        vec![first.clone()]
    );
    assert!(store
        .list_agent_keys(b.id, signer.id, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.list_keys(a.id, None, 10).await.unwrap().len(), 4);

    // Rotation replaces the secret by compare-and-set on the old hash, keeping the rest.
    store
        .touch_key(a.id, first.id, agentd_core::now())
        .await
        .unwrap();
    let (rotated, _) = first.with_new_secret();
    let mut foreign = rotated.clone();
    foreign.tenant_id = b.id;
    assert!(!store
        .replace_key_secret(&foreign, &first.hash)
        .await
        .unwrap());
    assert!(store
        .replace_key_secret(&rotated, &first.hash)
        .await
        .unwrap());
    assert!(
        !store
            .replace_key_secret(&rotated, &first.hash)
            .await
            .unwrap(),
        "a stale rotation writes nothing"
    );
    assert_eq!(store.find_key_by_hash(&first.hash).await.unwrap(), None);
    assert_eq!(
        store.find_key_by_hash(&rotated.hash).await.unwrap(),
        Some(rotated.clone())
    );
    assert_eq!(store.get_key(a.id, first.id).await.unwrap(), Some(rotated));
}

fn memory(tenant: &Tenant, user: &str, text: &str, topics: &[&str], at_millis: i64) -> Memory {
    let at = chrono::DateTime::from_timestamp_millis(at_millis).unwrap();
    Memory {
        tenant_id: tenant.id,
        id: MemoryId::new(),
        user_id: user.to_owned(),
        agent_id: None,
        team_id: None,
        memory: text.to_owned(),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        input: None,
        feedback: None,
        created_at: at,
        updated_at: at,
    }
}

async fn memories_filter_sort_page_and_stay_in_their_tenant(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("memories-a"), tenant("memories-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let mut tea = memory(&a, "ann", "Likes green TEA", &["food", "tea"], 1_000);
    tea.agent_id = Some("agent-x".to_owned());
    tea.input = Some("I drink green tea".to_owned());
    let mut work = memory(&a, "ann", "Works at ACME, 100%_done", &["work"], 2_000);
    work.team_id = Some("team-1".to_owned());
    let mut coffee = memory(&a, "bob", "Hates coffee", &["food"], 3_000);
    coffee.agent_id = Some("agent-x".to_owned());
    let secret = memory(&b, "ann", "B's secret", &["food", "secret"], 5_000);
    for m in [&tea, &work, &coffee, &secret] {
        store.insert_memory(m).await.unwrap();
    }
    assert!(matches!(
        store.insert_memory(&tea).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_memory(a.id, tea.id).await.unwrap(),
        Some(tea.clone())
    );
    assert_eq!(store.get_memory(a.id, secret.id).await.unwrap(), None);

    let list = |filter: MemoryFilter, sort: MemorySort, start: MemoryStart, limit: u32| {
        let store = store.clone();
        async move {
            let (page, total) = store
                .list_memories(a.id, &filter, sort, &start, limit)
                .await
                .unwrap();
            let texts: Vec<String> = page.into_iter().map(|m| m.memory).collect();
            (texts, total)
        }
    };
    let newest = MemorySort::default();
    let start = MemoryStart::Offset(0);
    let all = list(MemoryFilter::default(), newest, start.clone(), 10).await;
    assert_eq!(
        all.0,
        [
            coffee.memory.as_str(),
            work.memory.as_str(),
            tea.memory.as_str()
        ]
    );
    assert_eq!(all.1, 3);

    // Each filter, alone and together; topics must all be present; text search ignores ASCII case
    // and takes `%` and `_` literally.
    let cases: Vec<(MemoryFilter, Vec<&str>)> = vec![
        (
            MemoryFilter {
                user_id: Some("ann".to_owned()),
                ..MemoryFilter::default()
            },
            vec![work.memory.as_str(), tea.memory.as_str()],
        ),
        (
            MemoryFilter {
                agent_id: Some("agent-x".to_owned()),
                ..MemoryFilter::default()
            },
            vec![coffee.memory.as_str(), tea.memory.as_str()],
        ),
        (
            MemoryFilter {
                team_id: Some("team-1".to_owned()),
                ..MemoryFilter::default()
            },
            vec![work.memory.as_str()],
        ),
        (
            MemoryFilter {
                topics: vec!["food".to_owned()],
                ..MemoryFilter::default()
            },
            vec![coffee.memory.as_str(), tea.memory.as_str()],
        ),
        (
            MemoryFilter {
                topics: vec!["food".to_owned(), "tea".to_owned()],
                ..MemoryFilter::default()
            },
            vec![tea.memory.as_str()],
        ),
        (
            MemoryFilter {
                topics: vec!["secret".to_owned()],
                ..MemoryFilter::default()
            },
            vec![],
        ),
        (
            MemoryFilter {
                text_contains: Some("tea".to_owned()),
                ..MemoryFilter::default()
            },
            vec![tea.memory.as_str()],
        ),
        (
            MemoryFilter {
                text_contains: Some("0%_".to_owned()),
                ..MemoryFilter::default()
            },
            vec![work.memory.as_str()],
        ),
        (
            MemoryFilter {
                text_contains: Some("_".to_owned()),
                ..MemoryFilter::default()
            },
            vec![work.memory.as_str()],
        ),
        (
            MemoryFilter {
                user_id: Some("ann".to_owned()),
                agent_id: Some("agent-x".to_owned()),
                topics: vec!["food".to_owned()],
                text_contains: Some("GREEN".to_owned()),
                ..MemoryFilter::default()
            },
            vec![tea.memory.as_str()],
        ),
    ];
    for (filter, expected) in cases {
        let described = format!("{filter:?}");
        let (texts, total) = list(filter, newest, start.clone(), 10).await;
        assert_eq!(texts, expected, "{described}");
        assert_eq!(total, expected.len() as u64, "{described}");
    }

    // Oldest first by creation, by offset and after a cursor; the total counts every page.
    let oldest = MemorySort {
        by: MemorySortField::CreatedAt,
        descending: false,
    };
    let second = list(MemoryFilter::default(), oldest, MemoryStart::Offset(1), 1).await;
    assert_eq!(second, (vec![work.memory.clone()], 3));
    let after = MemoryStart::After {
        at: work.created_at,
        id: work.id,
    };
    let rest = list(MemoryFilter::default(), oldest, after, 10).await;
    assert_eq!(rest, (vec![coffee.memory.clone()], 3));
    let before = MemoryStart::After {
        at: work.updated_at,
        id: work.id,
    };
    let rest = list(MemoryFilter::default(), newest, before, 10).await;
    assert_eq!(rest.0, [tea.memory.as_str()]);

    // An update replaces text and topics and moves the memory to the front; its user and creation
    // time stay.
    let mut changed = tea.clone();
    changed.memory = "Likes oolong".to_owned();
    changed.topics = vec!["tea".to_owned(), "morning".to_owned()];
    changed.feedback = Some("right".to_owned());
    changed.agent_id = None;
    changed.updated_at = chrono::DateTime::from_timestamp_millis(4_000).unwrap();
    changed.user_id = "mallory".to_owned();
    changed.created_at = changed.updated_at;
    assert!(store.update_memory(&changed).await.unwrap());
    let stored = store.get_memory(a.id, tea.id).await.unwrap().unwrap();
    assert_eq!(stored.memory, "Likes oolong");
    assert_eq!(stored.topics, ["tea", "morning"]);
    assert_eq!(stored.feedback.as_deref(), Some("right"));
    assert_eq!(stored.agent_id, None);
    assert_eq!(stored.user_id, "ann");
    assert_eq!(stored.created_at, tea.created_at);
    assert_eq!(stored.updated_at, changed.updated_at);
    let all = list(MemoryFilter::default(), newest, start.clone(), 10).await;
    assert_eq!(
        all.0,
        [
            stored.memory.as_str(),
            coffee.memory.as_str(),
            work.memory.as_str()
        ]
    );
    let food = MemoryFilter {
        topics: vec!["food".to_owned()],
        ..MemoryFilter::default()
    };
    assert_eq!(
        list(food, newest, start.clone(), 10).await.0,
        [coffee.memory.as_str()]
    );
    let mut foreign = secret.clone();
    foreign.tenant_id = a.id;
    assert!(!store.update_memory(&foreign).await.unwrap());
    assert_eq!(
        store.get_memory(b.id, secret.id).await.unwrap(),
        Some(secret.clone())
    );

    // Topics, distinct and sorted, per tenant and per user.
    assert_eq!(
        store.memory_topics(a.id, None).await.unwrap(),
        ["food", "morning", "tea", "work"]
    );
    assert_eq!(
        store.memory_topics(a.id, Some("bob")).await.unwrap(),
        ["food"]
    );
    assert_eq!(
        store.memory_topics(a.id, Some("nobody")).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.memory_topics(b.id, None).await.unwrap(),
        ["food", "secret"]
    );

    // Per-user figures, most recently updated first.
    let at = |millis| chrono::DateTime::from_timestamp_millis(millis).unwrap();
    let ann = UserMemoryStats {
        user_id: "ann".to_owned(),
        total_memories: 2,
        last_memory_updated_at: at(4_000),
    };
    let bob = UserMemoryStats {
        user_id: "bob".to_owned(),
        total_memories: 1,
        last_memory_updated_at: at(3_000),
    };
    assert_eq!(
        store.user_memory_stats(a.id, None, 0, 10).await.unwrap(),
        (vec![ann.clone(), bob.clone()], 2)
    );
    assert_eq!(
        store.user_memory_stats(a.id, None, 1, 1).await.unwrap(),
        (vec![bob.clone()], 2)
    );
    assert_eq!(
        store
            .user_memory_stats(a.id, Some("bob"), 0, 10)
            .await
            .unwrap(),
        (vec![bob], 1)
    );
    assert_eq!(
        store.user_memory_stats(b.id, None, 0, 10).await.unwrap().1,
        1
    );

    // Deletion skips other tenants' ids and, when asked, other users' memories; topics go along.
    assert_eq!(
        store
            .delete_memories(a.id, &[secret.id, coffee.id], None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.get_memory(b.id, secret.id).await.unwrap(),
        Some(secret.clone())
    );
    assert_eq!(
        store
            .delete_memories(a.id, &[tea.id, work.id], Some("bob"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .delete_memories(a.id, &[tea.id, work.id], Some("ann"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.delete_memories(a.id, &[], None).await.unwrap(), 0);
    assert!(store.memory_topics(a.id, None).await.unwrap().is_empty());
    assert_eq!(
        list(MemoryFilter::default(), newest, start, 10).await,
        (vec![], 0)
    );
    assert_eq!(
        store.user_memory_stats(a.id, None, 0, 10).await.unwrap(),
        (vec![], 0)
    );
    assert_eq!(
        store.memory_topics(b.id, None).await.unwrap(),
        ["food", "secret"]
    );
}

fn content(tenant: &Tenant, name: &str, bytes: &[u8], metadata: serde_json::Value) -> Content {
    let now = agentd_core::now();
    Content {
        tenant_id: tenant.id,
        id: ContentId::new(),
        name: name.to_owned(),
        description: Some(format!("about {name}")),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        kind: ContentKind::Markdown,
        source: ContentSource::File {
            file_name: format!("{name}.md"),
        },
        size_bytes: bytes.len() as u64,
        content_hash: content_hash(bytes),
        status: ContentStatus::Processing,
        status_message: None,
        chunk_count: 0,
        chunking: Chunking {
            strategy: ChunkStrategy::Markdown,
            chunk_size: 500,
            overlap: 50,
        },
        embedder: Some("p/m".to_owned()),
        node_id: "node-1".to_owned(),
        created_at: now,
        updated_at: now,
    }
}

fn chunks_of(content: &Content, texts: &[(&str, Option<Vec<f32>>)]) -> Vec<Chunk> {
    texts
        .iter()
        .enumerate()
        .map(|(seq, (text, embedding))| Chunk {
            tenant_id: content.tenant_id,
            id: ChunkId::new(),
            content_id: content.id,
            seq: seq as u32,
            text: (*text).to_owned(),
            embedding: embedding.clone(),
        })
        .collect()
}

fn chunk_ids(found: &[ScoredChunk]) -> Vec<ChunkId> {
    found.iter().map(|scored| scored.chunk_id).collect()
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

async fn knowledge_contents_complete_once_search_and_stay_in_their_tenant(db: TestDb) {
    let store = open(&db).await;
    let (a, b) = (tenant("a"), tenant("b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let none = ChunkFilter::default();

    // Inserting, and finding the same bytes again (per tenant).
    let foxes = content(
        &a,
        "foxes",
        b"fox bytes",
        json!({"lang": "en", "year": 2024}),
    );
    assert_eq!(
        store.insert_content(&foxes).await.unwrap(),
        ContentInsert::Inserted
    );
    let again = content(&a, "again", b"fox bytes", json!({}));
    assert_eq!(
        store.insert_content(&again).await.unwrap(),
        ContentInsert::Duplicate(Box::new(foxes.clone()))
    );
    assert_eq!(store.get_content(a.id, again.id).await.unwrap(), None);
    let b_foxes = content(&b, "b-foxes", b"fox bytes", json!({"lang": "en"}));
    assert_eq!(
        store.insert_content(&b_foxes).await.unwrap(),
        ContentInsert::Inserted
    );
    assert_eq!(
        store.get_content(a.id, foxes.id).await.unwrap(),
        Some(foxes.clone())
    );
    assert_eq!(store.get_content(b.id, foxes.id).await.unwrap(), None);

    // Completing writes the chunks with their embeddings, once.
    let fox_chunks = chunks_of(
        &foxes,
        &[
            ("The quick brown fox jumps", Some(vec![1.0, 0.0, 0.0])),
            ("Foxes sleep in dens", Some(vec![0.6, 0.8, 0.0])),
            ("Nothing in common", Some(vec![-1.0, 0.0, 0.0])),
        ],
    );
    let at = chrono::DateTime::from_timestamp_millis(5_000).unwrap();
    assert!(store
        .complete_content(a.id, foxes.id, &fox_chunks, Some("p/m"), None, at)
        .await
        .unwrap());
    assert!(!store
        .complete_content(a.id, foxes.id, &fox_chunks[..1], Some("p/m"), None, at)
        .await
        .unwrap());
    assert!(!store
        .fail_content(a.id, foxes.id, "too late", at)
        .await
        .unwrap());
    let completed = store.get_content(a.id, foxes.id).await.unwrap().unwrap();
    assert_eq!(completed.status, ContentStatus::Completed);
    assert_eq!(completed.chunk_count, 3);
    assert_eq!(completed.updated_at, at);
    assert_eq!(store.list_chunks(a.id, foxes.id).await.unwrap(), fox_chunks);
    assert!(store.list_chunks(b.id, foxes.id).await.unwrap().is_empty());
    let b_chunks = chunks_of(
        &b_foxes,
        &[("A fox of tenant b", Some(vec![1.0, 0.0, 0.0]))],
    );
    assert!(store
        .complete_content(b.id, b_foxes.id, &b_chunks, Some("p/m"), None, at)
        .await
        .unwrap());
    // A content of another tenant cannot be completed through this one.
    let owls = content(&a, "owls", b"owl bytes", json!({"lang": "fr"}));
    store.insert_content(&owls).await.unwrap();
    assert!(!store
        .complete_content(b.id, owls.id, &b_chunks, None, None, at)
        .await
        .unwrap());
    let owl_chunks = chunks_of(&owls, &[("Owls hunt at night, unlike the fox", None)]);
    assert!(store
        .complete_content(a.id, owls.id, &owl_chunks, None, Some("no embedder"), at)
        .await
        .unwrap());
    let owls_stored = store.get_content(a.id, owls.id).await.unwrap().unwrap();
    assert_eq!(owls_stored.embedder, None);
    assert_eq!(owls_stored.status_message.as_deref(), Some("no embedder"));

    // Keyword search: stemmed words, any of them, the tenant's chunks only, with filters.
    let found = store
        .keyword_search(a.id, &words("fox"), &none, 10)
        .await
        .unwrap();
    let mut expected = vec![fox_chunks[0].id, fox_chunks[1].id, owl_chunks[0].id];
    expected.sort();
    let mut got = chunk_ids(&found);
    got.sort();
    assert_eq!(
        got, expected,
        "`fox` finds foxes too (stemming), never tenant b's"
    );
    assert!(found.iter().all(|scored| scored.score > 0.0), "{found:?}");
    assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
    let french = ChunkFilter {
        metadata: vec![("lang".to_owned(), json!("fr"))],
    };
    assert_eq!(
        chunk_ids(
            &store
                .keyword_search(a.id, &words("fox"), &french, 10)
                .await
                .unwrap()
        ),
        [owl_chunks[0].id]
    );
    let year = ChunkFilter {
        metadata: vec![
            ("lang".to_owned(), json!("en")),
            ("year".to_owned(), json!(2024)),
        ],
    };
    assert_eq!(
        store
            .keyword_search(a.id, &words("fox"), &year, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .keyword_search(a.id, &words("fox"), &year, 1)
            .await
            .unwrap()
            .len(),
        1,
        "the limit holds"
    );
    assert!(store
        .keyword_search(a.id, &words("zeppelin"), &none, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .keyword_search(a.id, &[], &none, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        chunk_ids(
            &store
                .keyword_search(b.id, &words("fox"), &none, 10)
                .await
                .unwrap()
        ),
        [b_chunks[0].id]
    );

    // Vector search: exact cosine over the embedder's chunks, best first, unrelated ones left out.
    let nearest = store
        .nearest_chunks(a.id, "p/m", &[2.0, 0.0, 0.0], &none, 10)
        .await
        .unwrap();
    assert_eq!(chunk_ids(&nearest), [fox_chunks[0].id, fox_chunks[1].id]);
    assert!((nearest[0].score - 1.0).abs() < 1e-6);
    assert!((nearest[1].score - 0.6).abs() < 1e-6);
    assert_eq!(
        chunk_ids(
            &store
                .nearest_chunks(a.id, "p/m", &[2.0, 0.0, 0.0], &none, 1)
                .await
                .unwrap()
        ),
        [fox_chunks[0].id]
    );
    assert!(store
        .nearest_chunks(a.id, "other/model", &[1.0, 0.0, 0.0], &none, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store
            .nearest_chunks(a.id, "p/m", &[1.0, 0.0], &none, 10)
            .await
            .unwrap()
            .is_empty(),
        "another dimension compares with nothing"
    );
    assert!(store
        .nearest_chunks(a.id, "p/m", &[1.0, 0.0, 0.0], &french, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        chunk_ids(
            &store
                .nearest_chunks(b.id, "p/m", &[1.0, 0.0, 0.0], &none, 10)
                .await
                .unwrap()
        ),
        [b_chunks[0].id]
    );

    // What an in-memory index loads: the embedder's embeddings of the tenant, and a version that
    // every change to the tenant's chunks moves.
    let mut embedded = store.chunk_embeddings(a.id, "p/m").await.unwrap();
    embedded.sort_by_key(|(id, _)| *id);
    let mut expected: Vec<(ChunkId, Vec<f32>)> = fox_chunks
        .iter()
        .map(|chunk| (chunk.id, chunk.embedding.clone().unwrap()))
        .collect();
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(embedded, expected);
    assert!(store
        .chunk_embeddings(a.id, "other/model")
        .await
        .unwrap()
        .is_empty());
    let version = store.knowledge_version(a.id).await.unwrap();
    assert!(version > 0, "completing contents moved the version");
    assert!(store.knowledge_version(b.id).await.unwrap() > 0);
    let unused = Tenant::new(TenantSlug::parse("unused").unwrap(), "Unused");
    assert_eq!(store.knowledge_version(unused.id).await.unwrap(), 0);

    // Hits carry their content's name and metadata; other tenants' ids are skipped.
    let hits = store
        .get_chunk_hits(a.id, &[fox_chunks[1].id, b_chunks[0].id])
        .await
        .unwrap();
    assert_eq!(
        hits,
        [ChunkHit {
            chunk_id: fox_chunks[1].id,
            content_id: foxes.id,
            seq: 1,
            text: "Foxes sleep in dens".to_owned(),
            content_name: "foxes".to_owned(),
            metadata: foxes.metadata.clone(),
        }]
    );

    // Details change, and filters follow the new metadata.
    let renamed = Content {
        name: "renamed".to_owned(),
        description: None,
        metadata: json!({"lang": "de"}).as_object().cloned().unwrap(),
        updated_at: chrono::DateTime::from_timestamp_millis(6_000).unwrap(),
        ..completed.clone()
    };
    assert!(store.update_content_details(&renamed).await.unwrap());
    assert_eq!(
        store.get_content(a.id, foxes.id).await.unwrap(),
        Some(renamed.clone())
    );
    assert!(!store
        .update_content_details(&Content {
            tenant_id: b.id,
            ..renamed.clone()
        })
        .await
        .unwrap());
    assert!(store
        .keyword_search(a.id, &words("fox"), &year, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.knowledge_metadata_keys(a.id).await.unwrap(), ["lang"]);
    assert_eq!(store.knowledge_metadata_keys(b.id).await.unwrap(), ["lang"]);

    // A failed content has no chunks, and the same bytes uploaded again replace it.
    let broken = content(&a, "broken", b"broken bytes", json!({"lang": "en"}));
    store.insert_content(&broken).await.unwrap();
    assert!(store
        .fail_content(a.id, broken.id, "invalid JSON", at)
        .await
        .unwrap());
    let failed = store.get_content(a.id, broken.id).await.unwrap().unwrap();
    assert_eq!(failed.status, ContentStatus::Failed);
    assert_eq!(failed.status_message.as_deref(), Some("invalid JSON"));
    let retry = content(&a, "retry", b"broken bytes", json!({}));
    assert_eq!(
        store.insert_content(&retry).await.unwrap(),
        ContentInsert::Inserted
    );
    assert_eq!(store.get_content(a.id, broken.id).await.unwrap(), None);

    // Lists: newest first, by offset or after a content.
    let (listed, total) = store
        .list_contents(a.id, ContentStart::Offset(0), 10)
        .await
        .unwrap();
    assert_eq!(total, 3);
    let listed_ids: Vec<ContentId> = listed.iter().map(|c| c.id).collect();
    assert_eq!(listed_ids, [retry.id, owls.id, foxes.id]);
    let (page, _) = store
        .list_contents(a.id, ContentStart::Offset(1), 1)
        .await
        .unwrap();
    assert_eq!(page[0].id, owls.id);
    let (after, _) = store
        .list_contents(a.id, ContentStart::After(owls.id), 10)
        .await
        .unwrap();
    assert_eq!(after.iter().map(|c| c.id).collect::<Vec<_>>(), [foxes.id]);
    assert_eq!(
        store
            .list_contents(b.id, ContentStart::Offset(0), 10)
            .await
            .unwrap()
            .1,
        1
    );

    // A restarting node fails what it left processing, in every tenant, and only its own.
    let b_pending = content(&b, "pending", b"pending bytes", json!({}));
    store.insert_content(&b_pending).await.unwrap();
    let elsewhere = Content {
        node_id: "node-2".to_owned(),
        ..content(&b, "elsewhere", b"elsewhere bytes", json!({}))
    };
    store.insert_content(&elsewhere).await.unwrap();
    assert_eq!(
        store
            .fail_interrupted_contents("node-1", "restarted", at)
            .await
            .unwrap(),
        2,
        "a's retry and b's pending"
    );
    let stopped = store
        .get_content(b.id, b_pending.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stopped.status, ContentStatus::Failed);
    assert_eq!(stopped.status_message.as_deref(), Some("restarted"));
    assert_eq!(
        store
            .get_content(b.id, elsewhere.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ContentStatus::Processing
    );

    // Deleting takes the chunks along (and out of the keyword index); other tenants' stay.
    let before = store.knowledge_version(a.id).await.unwrap();
    assert!(!store.delete_content(b.id, foxes.id).await.unwrap());
    assert!(store.delete_content(a.id, foxes.id).await.unwrap());
    assert!(!store.delete_content(a.id, foxes.id).await.unwrap());
    assert!(store.list_chunks(a.id, foxes.id).await.unwrap().is_empty());
    let after_delete = store.knowledge_version(a.id).await.unwrap();
    assert_ne!(after_delete, before, "a deletion moves the version");
    assert!(store
        .chunk_embeddings(a.id, "p/m")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        chunk_ids(
            &store
                .keyword_search(a.id, &words("fox"), &none, 10)
                .await
                .unwrap()
        ),
        [owl_chunks[0].id]
    );
    // A content deleted while processing cannot be completed afterwards.
    let late = content(&a, "late", b"late bytes", json!({}));
    store.insert_content(&late).await.unwrap();
    assert!(store.delete_content(a.id, late.id).await.unwrap());
    let late_chunks = chunks_of(&late, &[("late fox", None)]);
    assert!(!store
        .complete_content(a.id, late.id, &late_chunks, None, None, at)
        .await
        .unwrap());
    assert!(store.list_chunks(a.id, late.id).await.unwrap().is_empty());

    assert_eq!(store.delete_all_contents(a.id).await.unwrap(), 2);
    assert_ne!(store.knowledge_version(a.id).await.unwrap(), after_delete);
    assert_eq!(
        store
            .list_contents(a.id, ContentStart::Offset(0), 10)
            .await
            .unwrap(),
        (vec![], 0)
    );
    assert!(store
        .keyword_search(a.id, &words("fox owls"), &none, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .knowledge_metadata_keys(a.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        chunk_ids(
            &store
                .keyword_search(b.id, &words("fox"), &none, 10)
                .await
                .unwrap()
        ),
        [b_chunks[0].id]
    );
}

backend_tests!(
    knowledge_contents_complete_once_search_and_stay_in_their_tenant,
    memories_filter_sort_page_and_stay_in_their_tenant,
    audit_chains_are_gapless_per_tenant_and_list_newest_first,
    users_tokens_and_oauth_states_round_trip_once,
    usage_adds_up_runs_and_model_calls_per_key_agent_and_model,
    sessions_are_listed_newest_first_updated_and_deleted_with_their_runs,
    runs_save_by_compare_and_set_and_keep_their_event_logs,
    sessions_runs_and_events_stay_in_their_tenant,
    capabilities_and_resources_round_trip,
    agents_keep_versions_events_and_tenants,
    tenants_are_created_found_and_unique_by_slug,
    first_tenant_and_key_are_created_once,
    keys_round_trip_and_stay_in_their_tenant,
    keys_page_in_creation_order,
    duplicate_key_ids_are_conflicts,
    reopening_keeps_data_and_migrations_are_idempotent,
    agent_identities_and_agent_keys_round_trip,
);
