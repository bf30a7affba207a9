//! What every [`TriggerStore`](crate::store::TriggerStore) must do: triggers, their names, revisions and
//! cursors, and fires.

use super::*;

pub async fn a_trigger_fire_creates_its_job_and_advances_its_cursor_together(
    open: Open,
    dir: &Path,
) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let after = fire_first(&store, &trigger).await.expect("still exists");
    assert_eq!(after.next_fire, Some(T0 + 2 * MINUTE));
    assert_eq!((after.fired, after.last_fire), (1, Some(T0 + MINUTE)));
    let job = store
        .get(after.last_job.expect("a job"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.record.tenant, "acme");
    assert_eq!(job.record.retries, 2);
    assert_eq!(job.payload.variables, r#"{"from":"trigger"}"#);
    assert_eq!(
        job.payload
            .custom_headers
            .get("jobhost-trigger")
            .map(String::as_str),
        Some("t")
    );
    assert_eq!(store.trigger(trigger.id).await.unwrap(), Some(after));
}

pub async fn a_fire_with_a_stale_cursor_does_nothing(open: Open, dir: &Path) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    fire_first(&store, &trigger).await;
    let again = fire_first(&store, &trigger).await.expect("still exists");
    assert_eq!(again.fired, 1);
    let jobs = store
        .list(&ListQuery::all(TenantScope::All, 10))
        .await
        .unwrap();
    assert_eq!(jobs.total, 1);
}

pub async fn trigger_names_are_unique_within_a_tenant(open: Open, dir: &Path) {
    let store = open(dir);
    store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let taken = store.create_trigger(every_minute("t", "acme")).await;
    assert_eq!(
        taken,
        Err(TriggerError::NameTaken {
            tenant: "acme".into(),
            name: "t".into()
        })
    );
    let other = store
        .create_trigger(every_minute("t", "beta"))
        .await
        .unwrap();
    assert_eq!(other.tenant, "beta");
}

pub async fn a_trigger_change_from_a_stale_revision_is_refused(open: Open, dir: &Path) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    fire_first(&store, &trigger).await;
    let mut paused = trigger.clone();
    paused.enabled = false;
    let refused = store
        .replace_trigger(paused.clone(), trigger.revision)
        .await;
    assert_eq!(refused, Err(TriggerError::Conflict(trigger.id)));
    let current = store.trigger(trigger.id).await.unwrap().unwrap();
    paused.revision = current.revision;
    let stored = store
        .replace_trigger(paused, current.revision)
        .await
        .unwrap();
    assert_eq!(stored.revision, current.revision + 1);
    assert!(!store.trigger(trigger.id).await.unwrap().unwrap().enabled);
}

pub async fn a_removed_trigger_no_longer_fires(open: Open, dir: &Path) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let outside = store
        .delete_trigger(trigger.id, TenantScope::only(["beta"]))
        .await;
    assert_eq!(outside, Err(TriggerError::NotFound(trigger.id)));
    store
        .delete_trigger(trigger.id, TenantScope::All)
        .await
        .unwrap();
    assert_eq!(fire_first(&store, &trigger).await, None);
    assert!(store.triggers().await.unwrap().is_empty());
    // The name is free again.
    store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
}

pub async fn triggers_and_their_cursors_survive_a_reopen(open: Open, dir: &Path) {
    let fired;
    {
        let store = open(dir);
        let trigger = store
            .create_trigger(every_minute("t", "acme"))
            .await
            .unwrap();
        fired = fire_first(&store, &trigger).await.expect("still exists");
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(store.triggers().await.unwrap(), vec![fired.clone()]);
    let taken = store.create_trigger(every_minute("t", "acme")).await;
    assert!(matches!(taken, Err(TriggerError::NameTaken { .. })));
    let next = store
        .create_trigger(every_minute("u", "acme"))
        .await
        .unwrap();
    assert!(next.id > fired.id, "trigger ids are never reused");
}
