//! The store conformance suite: one story per entity, run on SQLite and on PostgreSQL.

use std::sync::Arc;

use agentd_core::{ApiKey, KeyId, KeyName, NewApiKey, Scope, ScopeSet, Tenant, TenantSlug};
use agentd_store::{Store, StoreError};
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

backend_tests!(
    tenants_are_created_found_and_unique_by_slug,
    first_tenant_and_key_are_created_once,
    keys_round_trip_and_stay_in_their_tenant,
    keys_page_in_creation_order,
    duplicate_key_ids_are_conflicts,
    reopening_keeps_data_and_migrations_are_idempotent,
);
