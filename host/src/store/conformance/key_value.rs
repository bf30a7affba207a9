//! What every [`KeyValueStore`](crate::store::KeyValueStore) must do: tenants' buckets, atomic writes and
//! quotas.

use super::*;

pub async fn kv_entries_are_kept_per_tenant_and_bucket_and_survive_a_reopen<
    S: KeyValueStore + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    {
        let store = open(dir);
        kv_set(&store, kv_key("acme", "a", "k"), b"1")
            .await
            .unwrap();
        kv_set(&store, kv_key("acme", "b", "k"), b"2")
            .await
            .unwrap();
        kv_set(&store, kv_key("beta", "a", "k"), b"3")
            .await
            .unwrap();
        kv_set(&store, kv_key("acme", "a", "gone"), b"x")
            .await
            .unwrap();
        let deleted = store
            .kv_write(
                kv_key("acme", "a", "gone"),
                KvOp::Delete,
                KvLimits::default(),
            )
            .await
            .unwrap();
        assert_eq!(deleted, KvOutcome::Deleted(true));
        store.close().await.unwrap();
    }
    let store = open(dir);
    let get = async |tenant, bucket, key| store.kv_get(&kv_key(tenant, bucket, key)).await.unwrap();
    assert_eq!(get("acme", "a", "k").await, Some(b"1".to_vec()));
    assert_eq!(get("acme", "b", "k").await, Some(b"2".to_vec()));
    assert_eq!(get("beta", "a", "k").await, Some(b"3".to_vec()));
    assert_eq!(get("acme", "a", "gone").await, None);
    assert_eq!(get("acme", "c", "k").await, None);
    let buckets = store.kv_buckets("acme").await.unwrap();
    let names: Vec<_> = buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(buckets[0].usage, KvUsage { keys: 1, bytes: 2 });
}

pub async fn kv_increments_from_many_writers_are_all_counted<
    S: KeyValueStore + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let store = open(dir);
    let writers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..25 {
                store
                    .kv_write(
                        kv_key("acme", "counters", "n"),
                        KvOp::Increment(2),
                        KvLimits::default(),
                    )
                    .await
                    .unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    assert_eq!(
        store
            .kv_get(&kv_key("acme", "counters", "n"))
            .await
            .unwrap(),
        Some(b"400".to_vec())
    );
}

pub async fn kv_compare_and_swap_applies_only_over_the_expected_value<
    S: KeyValueStore + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let store = open(dir);
    let key = kv_key("acme", "b", "k");
    let swap = |expected: Option<&[u8]>, value: &[u8]| KvOp::Swap {
        expected: expected.map(<[u8]>::to_vec),
        value: value.to_vec(),
    };
    let limits = KvLimits::default();
    let first = store.kv_write(key.clone(), swap(None, b"v1"), limits).await;
    assert_eq!(first, Ok(KvOutcome::Swapped));
    let stale = store.kv_write(key.clone(), swap(None, b"v2"), limits).await;
    assert_eq!(stale, Ok(KvOutcome::SwapConflict(Some(b"v1".to_vec()))));
    let current = store
        .kv_write(key.clone(), swap(Some(b"v1"), b"v3"), limits)
        .await;
    assert_eq!(current, Ok(KvOutcome::Swapped));
    assert_eq!(store.kv_get(&key).await.unwrap(), Some(b"v3".to_vec()));
}

pub async fn kv_quotas_count_a_tenants_keys_across_buckets_and_a_reopen<
    S: KeyValueStore + Lifecycle + ?Sized + 'static,
>(
    open: Open<S>,
    dir: &Path,
) {
    let limits = KvLimits {
        keys_per_tenant: 2,
        ..KvLimits::default()
    };
    let set = |store: &Arc<S>, bucket: &str, key: &str| {
        let store = store.clone();
        let key = kv_key("acme", bucket, key);
        async move { store.kv_write(key, KvOp::Set(b"v".to_vec()), limits).await }
    };
    {
        let store = open(dir);
        set(&store, "a", "1").await.unwrap();
        set(&store, "b", "2").await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert!(matches!(
        set(&store, "c", "3").await,
        Err(KvWriteError::Refused(KvError::QuotaExceeded(_)))
    ));
    // Another tenant has a quota of its own.
    let other = store
        .kv_write(kv_key("beta", "a", "1"), KvOp::Set(b"v".to_vec()), limits)
        .await;
    assert_eq!(other, Ok(KvOutcome::Set));
    store
        .kv_write(kv_key("acme", "a", "1"), KvOp::Delete, limits)
        .await
        .unwrap();
    assert_eq!(set(&store, "c", "3").await, Ok(KvOutcome::Set));
}

pub async fn kv_keys_are_listed_in_pages<S: KeyValueStore + Lifecycle + ?Sized + 'static>(
    open: Open<S>,
    dir: &Path,
) {
    let store = open(dir);
    for key in ["b", "a", "c", "a/b"] {
        kv_set(&store, kv_key("acme", "x", key), b"v")
            .await
            .unwrap();
    }
    kv_set(&store, kv_key("acme", "xy", "z"), b"v")
        .await
        .unwrap();
    let first = store.kv_keys("acme", "x", None, 2).await.unwrap();
    assert_eq!(first.keys, ["a", "a/b"]);
    let rest = store
        .kv_keys("acme", "x", first.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(rest.keys, ["b", "c"]);
    assert_eq!(rest.next, None);
}
