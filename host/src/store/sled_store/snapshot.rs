//! Consistent snapshots of the live sled store, and loading one into a new store.
//!
//! sled has no snapshots of its own, so a snapshot is kept by copy-on-write. It starts while
//! no write is under way: every write holds the [`Snapshots`] gate, shared, from saving what
//! it overwrites until it is applied, and a snapshot starts by taking the gate exclusively, so
//! it falls between two group commits. From then on a write first saves, for each running
//! snapshot, the current values of the keys it changes that the snapshot has not read yet.
//! The reader walks each tree in key order and takes a saved value (or a saved absence) over
//! what it finds. Writers never wait for the reader; a snapshot holds in memory only the old
//! values of keys written ahead of it while it is read.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use sled::IVec;

use super::codec::io;
use crate::store::{StoreError, StoredRecord};

/// The snapshots being read, and the gate that places their start between two writes.
#[derive(Default)]
pub(super) struct Snapshots {
    running: RwLock<Vec<Arc<Progress>>>,
}

/// Held while a write is applied; a snapshot cannot start meanwhile.
#[must_use]
pub(super) struct WriteGate<'a>(#[allow(dead_code)] RwLockReadGuard<'a, Vec<Arc<Progress>>>);

impl Snapshots {
    /// Saves, for every running snapshot that still needs them, what `keys` of `tree` hold
    /// now. The write must be applied before the returned gate is dropped.
    pub(super) fn before_write<'a, K: AsRef<[u8]>>(
        &'a self,
        tree: &sled::Tree,
        keys: impl IntoIterator<Item = K>,
    ) -> WriteGate<'a> {
        let running = self.running.read().unwrap_or_else(|e| e.into_inner());
        if !running.is_empty() {
            let name = tree.name();
            let keys: Vec<K> = keys.into_iter().collect();
            for progress in running.iter() {
                progress.save(&name, tree, &keys);
            }
        }
        WriteGate(running)
    }

    /// Starts a snapshot of `trees` as they stand now, between two writes.
    pub(super) fn start(self: &Arc<Self>, trees: Vec<sled::Tree>) -> SledSnapshot {
        let progress = Arc::new(Progress::default());
        self.running
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(progress.clone());
        SledSnapshot {
            snapshots: self.clone(),
            progress,
            trees: trees.into_iter(),
            current: None,
            leftovers: Vec::new().into_iter(),
            ended: false,
        }
    }

    fn stop(&self, progress: &Arc<Progress>) {
        self.running
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|running| !Arc::ptr_eq(running, progress));
    }
}

/// How far one snapshot has read, and the old values it still needs.
#[derive(Default)]
struct Progress(Mutex<ProgressState>);

#[derive(Default)]
struct ProgressState {
    trees: HashMap<IVec, TreeProgress>,
    /// Why an old value could not be saved: the snapshot can no longer be trusted.
    failed: Option<StoreError>,
}

#[derive(Default)]
struct TreeProgress {
    /// The last key read: writes at or before it come too late to matter.
    read_up_to: Option<IVec>,
    done: bool,
    /// Keys written since the snapshot started, with their value at its start (`None`:
    /// absent) and whether the walk has met them.
    saved: BTreeMap<IVec, (Option<IVec>, bool)>,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, ProgressState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save<K: AsRef<[u8]>>(&self, name: &IVec, tree: &sled::Tree, keys: &[K]) {
        let mut state = self.lock();
        if state.failed.is_some() {
            return;
        }
        let progress = state.trees.entry(name.clone()).or_default();
        let mut failed = None;
        for key in keys {
            let key = key.as_ref();
            let passed = progress
                .read_up_to
                .as_deref()
                .is_some_and(|read| key <= read);
            if progress.done || passed || progress.saved.contains_key(key) {
                continue;
            }
            match tree.get(key) {
                Ok(value) => {
                    progress.saved.insert(IVec::from(key), (value, false));
                }
                Err(error) => {
                    failed = Some(io(error));
                    break;
                }
            }
        }
        if failed.is_some() {
            state.failed = failed;
        }
    }

    /// The value as of the snapshot of a key the walk met with `found`; `None`: not in it.
    fn read(&self, name: &IVec, key: &IVec, found: IVec) -> Result<Option<IVec>, StoreError> {
        let mut state = self.lock();
        if let Some(error) = &state.failed {
            return Err(error.clone());
        }
        let progress = state.trees.entry(name.clone()).or_default();
        progress.read_up_to = Some(key.clone());
        Ok(match progress.saved.get_mut(key) {
            Some((value, met)) => {
                *met = true;
                value.clone()
            }
            None => Some(found),
        })
    }

    /// Ends the walk of a tree: answers the saved records it did not meet (removed since).
    fn finish(&self, name: &IVec) -> Result<Vec<(IVec, IVec)>, StoreError> {
        let mut state = self.lock();
        if let Some(error) = &state.failed {
            return Err(error.clone());
        }
        let progress = state.trees.entry(name.clone()).or_default();
        progress.done = true;
        Ok(std::mem::take(&mut progress.saved)
            .into_iter()
            .filter_map(|(key, (value, met))| Some((key, value.filter(|_| !met)?)))
            .collect())
    }
}

/// The records of a snapshot, tree by tree; dropping it ends the snapshot.
pub(super) struct SledSnapshot {
    snapshots: Arc<Snapshots>,
    progress: Arc<Progress>,
    trees: std::vec::IntoIter<sled::Tree>,
    current: Option<(IVec, sled::Iter)>,
    leftovers: std::vec::IntoIter<StoredRecord>,
    ended: bool,
}

impl Drop for SledSnapshot {
    fn drop(&mut self) {
        self.snapshots.stop(&self.progress);
    }
}

impl SledSnapshot {
    fn advance(&mut self) -> Option<Result<StoredRecord, StoreError>> {
        loop {
            if let Some(record) = self.leftovers.next() {
                return Some(Ok(record));
            }
            let Some((name, walk)) = &mut self.current else {
                let tree = self.trees.next()?;
                self.current = Some((tree.name(), tree.iter()));
                continue;
            };
            match walk.next() {
                Some(Ok((key, found))) => match self.progress.read(name, &key, found) {
                    Ok(Some(value)) => return Some(Ok(record(name, &key, &value))),
                    Ok(None) => continue,
                    Err(error) => return Some(Err(error)),
                },
                Some(Err(error)) => return Some(Err(io(error))),
                None => {
                    let removed = match self.progress.finish(name) {
                        Ok(removed) => removed,
                        Err(error) => return Some(Err(error)),
                    };
                    let records: Vec<StoredRecord> = removed
                        .iter()
                        .map(|(key, value)| record(name, key, value))
                        .collect();
                    self.leftovers = records.into_iter();
                    self.current = None;
                }
            }
        }
    }
}

impl Iterator for SledSnapshot {
    type Item = Result<StoredRecord, StoreError>;

    /// Ends after the first error: what follows it could not be trusted.
    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let next = self.advance();
        if !matches!(next, Some(Ok(_))) {
            self.ended = true;
        }
        next
    }
}

fn record(tree: &IVec, key: &IVec, value: &IVec) -> StoredRecord {
    StoredRecord {
        section: String::from_utf8_lossy(tree).into_owned(),
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

/// The keys of the batch being built, in one buffer: a snapshot may need their old values.
#[derive(Default)]
pub(super) struct BatchKeys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl BatchKeys {
    pub(super) fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Records applied at once while loading.
const LOAD_BATCH_RECORDS: usize = 10_000;
const LOAD_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Writes a snapshot's records into a new store, offline: a server started on the directory
/// afterwards sees what the snapshot held (its in-memory indexes are rebuilt at start-up).
pub struct SledLoader {
    db: sled::Db,
    trees: HashMap<String, PendingTree>,
    records: u64,
}

struct PendingTree {
    tree: sled::Tree,
    batch: sled::Batch,
    records: usize,
    bytes: usize,
}

impl SledLoader {
    /// Opens `dir` for loading. A store that holds records already is refused, or with
    /// `replace` emptied first; either way one in use by a server is refused.
    pub fn open(dir: &Path, replace: bool) -> Result<SledLoader, StoreError> {
        let db = super::open_when_free(dir, super::DEFAULT_CACHE_BYTES)?;
        for name in db.tree_names() {
            if name == super::SLED_DEFAULT_TREE {
                continue;
            }
            if replace {
                db.drop_tree(&name).map_err(io)?;
            } else if !db.open_tree(&name).map_err(io)?.is_empty() {
                return Err(StoreError::Io(format!(
                    "the store in {} already holds data",
                    dir.display()
                )));
            }
        }
        Ok(SledLoader {
            db,
            trees: HashMap::new(),
            records: 0,
        })
    }

    pub fn put(&mut self, record: StoredRecord) -> Result<(), StoreError> {
        if record.section.is_empty() || record.section.starts_with("__sled") {
            return Err(StoreError::Corrupt(format!(
                "records of a part of the store that cannot be written: '{}'",
                record.section
            )));
        }
        let pending = match self.trees.entry(record.section) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let tree = self.db.open_tree(entry.key()).map_err(io)?;
                entry.insert(PendingTree {
                    tree,
                    batch: sled::Batch::default(),
                    records: 0,
                    bytes: 0,
                })
            }
        };
        pending.bytes += record.key.len() + record.value.len();
        pending.records += 1;
        pending.batch.insert(record.key, record.value);
        self.records += 1;
        if pending.records >= LOAD_BATCH_RECORDS || pending.bytes >= LOAD_BATCH_BYTES {
            pending.apply()?;
        }
        Ok(())
    }

    /// Writes what is still pending and flushes; answers the records loaded.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        for pending in self.trees.values_mut() {
            pending.apply()?;
        }
        self.db.flush().map_err(io)?;
        Ok(self.records)
    }
}

impl PendingTree {
    fn apply(&mut self) -> Result<(), StoreError> {
        if self.records > 0 {
            self.tree
                .apply_batch(std::mem::take(&mut self.batch))
                .map_err(io)?;
            self.records = 0;
            self.bytes = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(db: &sled::Db) -> sled::Tree {
        db.open_tree("t").expect("tree")
    }

    fn write(snapshots: &Snapshots, tree: &sled::Tree, key: &[u8], value: Option<&[u8]>) {
        let _gate = snapshots.before_write(tree, [key]);
        match value {
            Some(value) => drop(tree.insert(key, value).expect("insert")),
            None => drop(tree.remove(key).expect("remove")),
        }
    }

    fn contents(records: impl Iterator<Item = Result<StoredRecord, StoreError>>) -> Vec<String> {
        let mut shown: Vec<String> = records
            .map(|r| r.expect("record"))
            .map(|r| {
                let key = String::from_utf8_lossy(&r.key).into_owned();
                format!("{key}={}", String::from_utf8_lossy(&r.value))
            })
            .collect();
        shown.sort();
        shown
    }

    #[test]
    fn writes_after_the_start_do_not_show() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let tree = tree(&db);
        let snapshots = Arc::new(Snapshots::default());
        for key in ["a", "b", "c", "d"] {
            write(&snapshots, &tree, key.as_bytes(), Some(b"old"));
        }
        let snapshot = snapshots.start(vec![tree.clone()]);
        write(&snapshots, &tree, b"a", None);
        write(&snapshots, &tree, b"b", Some(b"new"));
        write(&snapshots, &tree, b"b", Some(b"newer"));
        write(&snapshots, &tree, b"bb", Some(b"new"));
        write(&snapshots, &tree, b"d", None);
        write(&snapshots, &tree, b"e", Some(b"new"));
        assert_eq!(contents(snapshot), ["a=old", "b=old", "c=old", "d=old"]);
    }

    #[test]
    fn writes_behind_the_reader_keep_no_old_value() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let tree = tree(&db);
        let snapshots = Arc::new(Snapshots::default());
        write(&snapshots, &tree, b"a", Some(b"old"));
        write(&snapshots, &tree, b"b", Some(b"old"));
        let mut snapshot = snapshots.start(vec![tree.clone()]);
        snapshot.next().expect("a record").expect("readable");
        write(&snapshots, &tree, b"a", Some(b"new"));
        write(&snapshots, &tree, b"b", Some(b"new"));
        let saved = |key: &[u8]| {
            let state = snapshot.progress.lock();
            state.trees[&tree.name()].saved.contains_key(key)
        };
        assert!(!saved(b"a"));
        assert!(saved(b"b"));
    }

    #[test]
    fn a_snapshot_read_during_heavy_writes_is_the_store_at_its_start() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let tree = tree(&db);
        let snapshots = Arc::new(Snapshots::default());
        for n in 0..5_000u32 {
            write(&snapshots, &tree, &(n * 2).to_be_bytes(), Some(b"old"));
        }
        let expected = contents(tree.iter().map(|entry| {
            let (key, value) = entry.expect("entry");
            Ok(record(&tree.name(), &key, &value))
        }));
        let snapshot = snapshots.start(vec![tree.clone()]);
        let writer = {
            let (snapshots, tree) = (snapshots.clone(), tree.clone());
            std::thread::spawn(move || {
                // Changes, removals and new keys between and beyond the old ones, spread
                // over the whole tree so that nodes split and merge under the reader.
                for round in 0..20_000u32 {
                    let n = round.wrapping_mul(2_654_435_761) % 10_500;
                    let value = (round % 3 != 0).then_some(&b"new"[..]);
                    write(&snapshots, &tree, &n.to_be_bytes(), value);
                }
            })
        };
        let read = contents(snapshot);
        writer.join().expect("writer");
        assert_eq!(read, expected);
    }

    #[test]
    fn a_finished_snapshot_no_longer_saves_old_values() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let tree = tree(&db);
        let snapshots = Arc::new(Snapshots::default());
        write(&snapshots, &tree, b"a", Some(b"old"));
        let snapshot = snapshots.start(vec![tree.clone()]);
        assert_eq!(contents(snapshot), ["a=old"]);
        assert!(snapshots.running.read().unwrap().is_empty());
    }

    #[test]
    fn batch_keys_come_back_in_order() {
        let mut keys = BatchKeys::default();
        keys.push(b"one");
        keys.push(b"");
        keys.push(b"three");
        assert_eq!(
            keys.iter().collect::<Vec<_>>(),
            [&b"one"[..], b"", b"three"]
        );
        keys.clear();
        assert_eq!(keys.iter().count(), 0);
    }
}
