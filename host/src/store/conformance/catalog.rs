//! What every [`Catalog`](crate::store::Catalog) must do: API keys, handlers and components, secrets,
//! the audit trail.

use super::*;

pub async fn api_keys_are_stored_and_removed<S: Catalog + Lifecycle + ?Sized + 'static>(
    open: Open<S>,
    dir: &Path,
) {
    let key = ApiKeyRecord {
        id: "k1".into(),
        secret_sha256: [7; 32],
        name: "ci".into(),
        permissions: vec!["jobs".into()],
        tenants: Some(vec!["acme".into()]),
        created_at: 1,
        rate_limit: Some(crate::rate_limit::RateLimit {
            per_second: 5,
            burst: 10,
        }),
    };
    {
        let store = open(dir);
        store.put_api_key(&key).await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(store.api_keys().await.unwrap(), vec![key]);
    assert!(store.delete_api_key("k1").await.unwrap());
    assert!(!store.delete_api_key("k1").await.unwrap());
    assert!(store.api_keys().await.unwrap().is_empty());
}

pub async fn audit_entries_survive_a_reopen_and_read_newest_first<
    S: Catalog + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let recorded = {
        let store = open(dir);
        let first = store
            .record_audit(audit_entry("acme", AuditAction::KeyCreated, "k1"))
            .await
            .unwrap();
        let second = store
            .record_audit(audit_entry("acme", AuditAction::KeyRevoked, "k1"))
            .await
            .unwrap();
        assert!(second.id > first.id);
        store.close().await.unwrap();
        vec![second, first]
    };
    let store = open(dir);
    let third = store
        .record_audit(audit_entry("acme", AuditAction::JobCancelled, "7"))
        .await
        .unwrap();
    assert!(
        third.id > recorded[0].id,
        "ids keep increasing after a reopen"
    );
    let page = store
        .audit_trail(&audit_query(TenantScope::All, 10))
        .await
        .unwrap();
    let mut expected = vec![third];
    expected.extend(recorded);
    assert_eq!(page.entries, expected);
}

pub async fn an_audit_reading_pages_and_filters_within_its_scope<
    S: Catalog + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let store = open(dir);
    for i in 0..5 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        store
            .record_audit(audit_entry(
                tenant,
                AuditAction::TriggerCreated,
                &i.to_string(),
            ))
            .await
            .unwrap();
    }
    store
        .record_audit(audit_entry("acme", AuditAction::HandlerDeployed, "h"))
        .await
        .unwrap();
    let targets = |page: &AuditPage| {
        page.entries
            .iter()
            .map(|e| e.target.clone())
            .collect::<Vec<_>>()
    };

    let acme = TenantScope::only(["acme"]);
    let first = store
        .audit_trail(&audit_query(acme.clone(), 2))
        .await
        .unwrap();
    assert_eq!(targets(&first), vec!["h", "4"]);
    let mut next = audit_query(acme.clone(), 2);
    next.before = first.next_before;
    let second = store.audit_trail(&next).await.unwrap();
    assert_eq!(targets(&second), vec!["2", "0"]);

    let mut deploys = audit_query(TenantScope::All, 10);
    deploys.action = Some(AuditAction::TriggerCreated);
    deploys.tenant = Some("globex".into());
    assert_eq!(
        targets(&store.audit_trail(&deploys).await.unwrap()),
        vec!["3", "1"]
    );
}

pub async fn handlers_and_components_are_stored_and_removed<
    S: Catalog + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let handler = HandlerRecord {
        id: "h1".into(),
        tenant: "acme".into(),
        job_type: "resize".into(),
        created_at: 1,
        versions: vec![HandlerVersion {
            version: 1,
            component_sha256: [9; 32],
            component_bytes: 3,
            limits: HandlerLimits {
                memory_mb: 64,
                timeout_ms: 5_000,
                max_concurrency: 4,
                fuel: None,
            },
            retry: RetryPolicy {
                max_retries: 3,
                backoff_base_ms: 1_000,
                backoff_cap_ms: 60_000,
            },
            deployed_at: 1,
            grants: crate::grants::Grants {
                http: vec!["https://api.example.com".into()],
                secrets: vec!["TOKEN".into()],
                config: [("region".to_string(), "eu".to_string())].into(),
                kv: vec!["counters".into()],
                inject_headers: Vec::new(),
            },
        }],
    };
    {
        let store = open(dir);
        store.put_handler(&handler).await.unwrap();
        store.put_component(&[9; 32], b"abc").await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(store.handlers().await.unwrap(), vec![handler]);
    assert_eq!(
        store.component(&[9; 32]).await.unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    assert!(store.component(&[1; 32]).await.unwrap().is_none());
    assert!(store.delete_handler("h1").await.unwrap());
    assert!(store.handlers().await.unwrap().is_empty());
}

pub async fn secrets_are_kept_per_tenant_and_survive_a_reopen<
    S: Catalog + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let secret = |tenant: &str, name: &str, sealed: &[u8]| SecretRecord {
        tenant: tenant.into(),
        name: name.into(),
        sealed: sealed.to_vec(),
        updated_at: 5,
    };
    {
        let store = open(dir);
        store.put_secret(&secret("acme", "B", b"1")).await.unwrap();
        store.put_secret(&secret("acme", "A", b"2")).await.unwrap();
        store.put_secret(&secret("acme2", "A", b"3")).await.unwrap();
        store.put_secret(&secret("acme", "B", b"4")).await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    let names = async |tenant: &str| -> Vec<String> {
        store
            .secrets(tenant)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(names("acme").await, ["A", "B"]);
    assert_eq!(names("acme2").await, ["A"]);
    assert_eq!(
        store.secret("acme", "B").await.unwrap().map(|s| s.sealed),
        Some(b"4".to_vec())
    );
    assert_eq!(store.secret("other", "A").await.unwrap(), None);
    assert!(store.delete_secret("acme", "B").await.unwrap());
    assert!(!store.delete_secret("acme", "B").await.unwrap());
    assert_eq!(names("acme").await, ["A"]);
}

pub async fn catalog_writes_from_many_callers_at_once_all_complete<
    S: Catalog + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let store = open(dir);
    let writes = (0..32).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let entry = audit_entry("acme", AuditAction::KeyCreated, &format!("k{n}"));
            store.record_audit(entry).await
        })
    });
    // A hang (writers waiting on each other's flushes) is the failure looked for here, so
    // the bound is generous.
    let written = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(writes))
        .await
        .expect("every write completes");
    for write in written {
        write.expect("the writer ran").expect("written");
    }
    let page = store
        .audit_trail(&audit_query(TenantScope::All, 100))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 32);
}
