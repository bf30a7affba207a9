//! Backups: writing a store's snapshot as a file, fetching one from a running server
//! (`jobhost backup`), and restoring one into a data directory offline (`jobhost restore`).
//!
//! A snapshot file ([`format`]) holds the store's records in sections `store/<part>`, and,
//! if asked for, the compiled-code cache in the section `compiled`. Restoring reads the
//! whole file and checks it before it touches the data directory.

pub mod format;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use self::format::{Decoder, Encoder, FormatError, Header, Record};
use crate::client::{ClientError, RestClient};
use crate::job::{format_time, now_ms};
use crate::store::{SledLoader, Snapshot, StoreError, StoredRecord};

/// The file `jobhost backup` writes into its directory.
pub const SNAPSHOT_FILE: &str = "jobhost.snapshot";
/// Where the server caches compiled code, inside its data directory.
pub const COMPILED_DIR: &str = "compiled";

const STORE_SECTION_PREFIX: &str = "store/";
const COMPILED_SECTION: &str = "compiled";
/// Bytes gathered before a piece of the file is handed on.
const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the server stopped sending the snapshot: {0}")]
    Interrupted(String),
    #[error("no snapshot at {0}")]
    Missing(PathBuf),
    #[error(
        "the data directory {0} is not empty: restore into a new directory, or pass --force to replace the store it holds"
    )]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a snapshot file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub header: Header,
    /// Records by section.
    pub records: BTreeMap<String, u64>,
}

impl Contents {
    pub fn total(&self) -> u64 {
        self.records.values().sum()
    }

    /// One line for people: when, by which version, how many records of each kind.
    pub fn describe(&self) -> String {
        let sections: Vec<String> = self
            .records
            .iter()
            .map(|(section, count)| format!("{section}: {count}"))
            .collect();
        format!(
            "snapshot taken {} by jobhost {}: {} records ({})",
            self.header.taken_at,
            self.header.jobhost_version,
            self.total(),
            sections.join(", ")
        )
    }
}

/// Encodes a store snapshot, and the compiled code in `compiled_dir` if given, as a snapshot
/// file, handing it to `emit` a piece at a time. Answers whether the whole file was handed
/// on: it stops early once `emit` answers false (nobody is listening any more).
pub fn write_snapshot(
    snapshot: Snapshot,
    compiled_dir: Option<&Path>,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> Result<bool, BackupError> {
    let header = Header {
        taken_at: format_time(now_ms()).unwrap_or_default(),
        jobhost_version: env!("CARGO_PKG_VERSION").into(),
        with_compiled: compiled_dir.is_some(),
    };
    let mut encoder = Encoder::new(&header);
    let mut put = |encoder: &mut Encoder, section: &str, key: &[u8], value: &[u8]| {
        encoder.record(section, key, value)?;
        Ok::<bool, BackupError>(encoder.pending_len() < CHUNK_BYTES || emit(encoder.take()))
    };
    for record in snapshot {
        let record = record?;
        let section = format!("{STORE_SECTION_PREFIX}{}", record.section);
        if !put(&mut encoder, &section, &record.key, &record.value)? {
            return Ok(false);
        }
    }
    if let Some(dir) = compiled_dir {
        for (name, path) in compiled_files(dir)? {
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            if !put(&mut encoder, COMPILED_SECTION, name.as_bytes(), &bytes)? {
                return Ok(false);
            }
        }
    }
    Ok(emit(encoder.finish()))
}

/// The compiled-code files in `dir`, by name; none if there is no such directory.
fn compiled_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(dir)(error)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if compiled_file_name(&name) && entry.path().is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a name is that of a compiled-code file: a plain file name, never a path.
fn compiled_file_name(name: &str) -> bool {
    name.ends_with(".cwasm")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Fetches a snapshot from the server behind `client` into `dir`/[`SNAPSHOT_FILE`]. The file
/// appears only once it is complete and checked, replacing an earlier one.
pub async fn download(
    client: &RestClient,
    dir: &Path,
    with_compiled: bool,
) -> Result<Contents, BackupError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error(dir))?;
    let target = dir.join(SNAPSHOT_FILE);
    let partial = dir.join(format!("{SNAPSHOT_FILE}.partial"));
    let fetched = fetch(client, &partial, with_compiled).await;
    let checked = match fetched {
        Ok(()) => {
            let path = partial.clone();
            tokio::task::spawn_blocking(move || verify(&path))
                .await
                .map_err(|e| BackupError::Interrupted(e.to_string()))
                .and_then(|checked| checked)
        }
        Err(error) => Err(error),
    };
    match checked {
        Ok(contents) => {
            tokio::fs::rename(&partial, &target)
                .await
                .map_err(io_error(&target))?;
            Ok(contents)
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(error)
        }
    }
}

async fn fetch(client: &RestClient, path: &Path, with_compiled: bool) -> Result<(), BackupError> {
    let query = format!("/api/v1/backup?with_compiled={with_compiled}");
    let mut response = client.download(&query).await?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(io_error(path))?;
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| BackupError::Interrupted(e.to_string()))?;
        let Some(chunk) = chunk else { break };
        file.write_all(&chunk).await.map_err(io_error(path))?;
    }
    file.sync_all().await.map_err(io_error(path))?;
    Ok(())
}

/// Reads a whole snapshot file and checks it: format, checksum, sections.
pub fn verify(path: &Path) -> Result<Contents, BackupError> {
    read_records(path, |_| Ok(()))
}

/// Reads a snapshot file, handing each checked record to `each`; the file's end (and so
/// its checksum) is checked after the last record.
fn read_records(
    path: &Path,
    mut each: impl FnMut(Record) -> Result<(), BackupError>,
) -> Result<Contents, BackupError> {
    let file = fs::File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => BackupError::Missing(path.to_path_buf()),
        _ => io_error(path)(error),
    })?;
    let mut decoder = Decoder::open(BufReader::with_capacity(CHUNK_BYTES, file))?;
    let mut contents = Contents {
        header: decoder.header().clone(),
        records: BTreeMap::new(),
    };
    while let Some(record) = decoder.next_record()? {
        let known = match record.section.strip_prefix(STORE_SECTION_PREFIX) {
            Some(part) => !part.is_empty(),
            None => {
                record.section == COMPILED_SECTION
                    && std::str::from_utf8(&record.key).is_ok_and(compiled_file_name)
            }
        };
        if !known {
            return Err(FormatError::Corrupt(format!(
                "a record of the unknown section '{}'",
                record.section
            ))
            .into());
        }
        *contents.records.entry(record.section.clone()).or_default() += 1;
        each(record)?;
    }
    Ok(contents)
}

/// Where the snapshot is: `from` itself if it is a file, else [`SNAPSHOT_FILE`] inside it.
fn snapshot_path(from: &Path) -> PathBuf {
    if from.is_file() {
        from.to_path_buf()
    } else {
        from.join(SNAPSHOT_FILE)
    }
}

/// Restores the snapshot in `from` (a directory `jobhost backup` wrote, or the file itself)
/// into `data_dir`, for a server started there afterwards. The data directory must be empty
/// or missing; with `replace` the store it holds is replaced. Nothing is written unless the
/// whole snapshot checks out; if writing fails, the store is left empty.
pub fn restore(from: &Path, data_dir: &Path, replace: bool) -> Result<Contents, BackupError> {
    let file = snapshot_path(from);
    verify(&file)?;
    let occupied = match fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => false,
        Err(error) => return Err(io_error(data_dir)(error)),
    };
    if occupied && !replace {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
    let loader = SledLoader::open(data_dir, replace)?;
    let compiled = data_dir.join(COMPILED_DIR);
    if replace {
        match fs::remove_dir_all(&compiled) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(&compiled)(error));
            }
            _ => {}
        }
    }
    match load(&file, loader, &compiled) {
        Ok(contents) => Ok(contents),
        Err(error) => {
            // Emptied again, so a server started there never sees half a snapshot.
            if let Ok(loader) = SledLoader::open(data_dir, true) {
                let _ = loader.finish();
            }
            let _ = fs::remove_dir_all(&compiled);
            Err(error)
        }
    }
}

fn load(file: &Path, mut loader: SledLoader, compiled: &Path) -> Result<Contents, BackupError> {
    let contents = read_records(file, |record| {
        match record.section.strip_prefix(STORE_SECTION_PREFIX) {
            Some(part) => loader.put(StoredRecord {
                section: part.to_string(),
                key: record.key,
                value: record.value,
            })?,
            None => write_compiled(compiled, &record)?,
        }
        Ok(())
    })?;
    loader.finish()?;
    Ok(contents)
}

fn write_compiled(dir: &Path, record: &Record) -> Result<(), BackupError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    // The name was checked to be a plain file name when the record was read.
    let name = String::from_utf8_lossy(&record.key);
    let path = dir.join(name.as_ref());
    let partial = path.with_extension("partial");
    fs::write(&partial, &record.value).map_err(io_error(&partial))?;
    fs::rename(&partial, &path).map_err(io_error(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_file_names_are_plain_names() {
        assert!(compiled_file_name("ab12-34cd.cwasm"));
        assert!(!compiled_file_name("../escape.cwasm"));
        assert!(!compiled_file_name("dir/inner.cwasm"));
        assert!(!compiled_file_name(".cwasm"));
        assert!(!compiled_file_name("notes.txt"));
    }
}
