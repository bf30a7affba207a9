//! What every [`JobStore`] must do as a whole: snapshots.

use super::*;

pub async fn a_snapshot_shows_no_write_made_after_it_started(open: Open, dir: &Path) {
    let store = open(dir);
    let ids = store
        .create((0..3).map(|_| new_job("t", "acme")).collect())
        .await
        .unwrap();
    store.put_api_key(&key_record("k1")).await.unwrap();
    store.put_component(&[9; 32], b"abc").await.unwrap();
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let before = read_all(store.snapshot().await.unwrap());
    assert!(!before.is_empty());

    let mut snapshot = store.snapshot().await.unwrap();
    let first = snapshot.next().expect("a record").expect("readable");
    // Writes of every kind, both to what the snapshot has read and to what it has not.
    store.activate(activation("t", 1)).await.unwrap();
    let complete = Event::Complete {
        lease: Some(1),
        result: "{}".into(),
    };
    store
        .apply(ids[0], TenantScope::All, complete)
        .await
        .unwrap();
    store
        .apply(ids[1], TenantScope::All, Event::Cancel)
        .await
        .unwrap();
    store.create(vec![new_job("t", "beta")]).await.unwrap();
    fire_first(&store, &trigger).await.expect("fired");
    assert!(store.delete_api_key("k1").await.unwrap());
    store.put_api_key(&key_record("k2")).await.unwrap();
    store.put_component(&[8; 32], b"def").await.unwrap();
    let mut during = vec![first];
    during.extend(snapshot.map(|r| r.expect("readable")));
    during.sort();
    assert_eq!(during, before);
    assert_ne!(read_all(store.snapshot().await.unwrap()), before);
}
