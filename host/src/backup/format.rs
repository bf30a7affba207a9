//! The snapshot file: a versioned, checksummed stream of records.
//!
//! Layout (integers big-endian):
//! - the line `jobhost snapshot\n`, the format version (u16), and a JSON [`Header`] (u32
//!   length, then the bytes);
//! - records, each `R`, its section (u8 length, then UTF-8), its key and its value (each a u32
//!   length, then the bytes);
//! - the end: `E`, the number of records (u64), and the SHA-256 of every byte before it.
//!
//! A reader checks the magic line and the version before anything else and the checksum at
//! the end, so a foreign, newer, truncated or altered file is refused, never half-trusted.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8] = b"jobhost snapshot\n";
pub const FORMAT_VERSION: u16 = 1;

const RECORD_TAG: u8 = b'R';
const END_TAG: u8 = b'E';
/// Longest header and key a reader accepts: anything longer is damage, not data.
const MAX_HEADER_BYTES: u32 = 64 * 1024;
const MAX_KEY_BYTES: u32 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a jobhost snapshot: it does not start with the snapshot header")]
    Foreign,
    #[error(
        "snapshot format version {0} is not supported: this jobhost reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion(u16),
    #[error("the snapshot is truncated: it ends before its checksum (was the backup interrupted?)")]
    Truncated,
    #[error("the snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("a snapshot record cannot hold {0}")]
    TooLarge(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a snapshot says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// RFC 3339.
    pub taken_at: String,
    pub jobhost_version: String,
    /// Whether it holds the compiled-code cache.
    pub with_compiled: bool,
}

/// One record of a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub section: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Writes a snapshot file into memory a piece at a time, for streaming.
pub struct Encoder {
    hasher: Sha256,
    records: u64,
    pending: Vec<u8>,
}

impl Encoder {
    pub fn new(header: &Header) -> Encoder {
        let json = serde_json::to_vec(header).expect("the header serializes");
        let mut pending = MAGIC.to_vec();
        pending.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        pending.extend_from_slice(&(json.len() as u32).to_be_bytes());
        pending.extend_from_slice(&json);
        Encoder {
            hasher: Sha256::new(),
            records: 0,
            pending,
        }
    }

    pub fn record(&mut self, section: &str, key: &[u8], value: &[u8]) -> Result<(), FormatError> {
        let section_len = u8::try_from(section.len())
            .map_err(|_| FormatError::TooLarge(format!("the section name '{section}'")))?;
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|len| *len <= MAX_KEY_BYTES)
            .ok_or_else(|| FormatError::TooLarge(format!("a key of {} bytes", key.len())))?;
        let value_len = u32::try_from(value.len())
            .map_err(|_| FormatError::TooLarge(format!("a value of {} bytes", value.len())))?;
        self.pending.push(RECORD_TAG);
        self.pending.push(section_len);
        self.pending.extend_from_slice(section.as_bytes());
        self.pending.extend_from_slice(&key_len.to_be_bytes());
        self.pending.extend_from_slice(key);
        self.pending.extend_from_slice(&value_len.to_be_bytes());
        self.pending.extend_from_slice(value);
        self.records += 1;
        Ok(())
    }

    /// Bytes encoded since the last call.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Hands out the bytes encoded so far.
    pub fn take(&mut self) -> Vec<u8> {
        self.hasher.update(&self.pending);
        std::mem::take(&mut self.pending)
    }

    /// The last bytes of the file: the end marker, the record count and the checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.pending.push(END_TAG);
        self.pending.extend_from_slice(&self.records.to_be_bytes());
        let mut last = self.take();
        last.extend_from_slice(&self.hasher.finalize());
        last
    }
}

/// Reads a snapshot file record by record; the last record is followed by a checked end.
pub struct Decoder<R: Read> {
    reader: R,
    hasher: Sha256,
    header: Header,
    records: u64,
    ended: bool,
}

impl<R: Read> Decoder<R> {
    /// Checks the magic line and the version, and reads the header.
    pub fn open(reader: R) -> Result<Decoder<R>, FormatError> {
        let mut decoder = Decoder {
            reader,
            hasher: Sha256::new(),
            header: Header::default(),
            records: 0,
            ended: false,
        };
        let mut magic = vec![0; MAGIC.len()];
        match decoder.read_exact(&mut magic) {
            Ok(()) if magic == MAGIC => {}
            Ok(()) | Err(FormatError::Truncated) => return Err(FormatError::Foreign),
            Err(error) => return Err(error),
        }
        let version = u16::from_be_bytes(decoder.array()?);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let json = decoder.bytes(MAX_HEADER_BYTES, "header")?;
        decoder.header = serde_json::from_slice(&json)
            .map_err(|e| FormatError::Corrupt(format!("unreadable header: {e}")))?;
        Ok(decoder)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next record; `None` once the end has been read and the checksum matched.
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        let [tag] = self.array()?;
        match tag {
            RECORD_TAG => {
                let [section_len] = self.array()?;
                let mut section = vec![0; usize::from(section_len)];
                self.read_exact(&mut section)?;
                let section = String::from_utf8(section)
                    .map_err(|_| FormatError::Corrupt("a section name is not UTF-8".into()))?;
                let key = self.bytes(MAX_KEY_BYTES, "key")?;
                let value = self.bytes(u32::MAX, "value")?;
                self.records += 1;
                Ok(Some(Record {
                    section,
                    key,
                    value,
                }))
            }
            END_TAG => {
                self.end()?;
                Ok(None)
            }
            other => Err(FormatError::Corrupt(format!(
                "unexpected byte {other:#04x} after record {}",
                self.records
            ))),
        }
    }

    fn end(&mut self) -> Result<(), FormatError> {
        let count = u64::from_be_bytes(self.array()?);
        let computed = std::mem::take(&mut self.hasher).finalize();
        let mut stored = [0u8; 32];
        read_fully(&mut self.reader, &mut stored)?;
        if stored[..] != computed[..] {
            return Err(FormatError::Corrupt("its checksum does not match".into()));
        }
        if count != self.records {
            return Err(FormatError::Corrupt(format!(
                "it announces {count} records but holds {}",
                self.records
            )));
        }
        let mut extra = [0u8; 1];
        if self.reader.read(&mut extra)? != 0 {
            return Err(FormatError::Corrupt("bytes follow its checksum".into()));
        }
        self.ended = true;
        Ok(())
    }

    fn read_exact(&mut self, buffer: &mut [u8]) -> Result<(), FormatError> {
        read_fully(&mut self.reader, buffer)?;
        self.hasher.update(&*buffer);
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut bytes = [0u8; N];
        self.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, max: u32, what: &str) -> Result<Vec<u8>, FormatError> {
        let len = u32::from_be_bytes(self.array()?);
        if len > max {
            return Err(FormatError::Corrupt(format!(
                "a {what} of {len} bytes is implausible"
            )));
        }
        // Grown as the bytes arrive, so a damaged length cannot reserve gigabytes up front.
        let mut bytes = Vec::new();
        (&mut self.reader)
            .take(u64::from(len))
            .read_to_end(&mut bytes)?;
        if bytes.len() != len as usize {
            return Err(FormatError::Truncated);
        }
        self.hasher.update(&bytes);
        Ok(bytes)
    }
}

fn read_fully(reader: &mut impl Read, buffer: &mut [u8]) -> Result<(), FormatError> {
    reader
        .read_exact(buffer)
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => FormatError::Truncated,
            _ => FormatError::Io(error),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            taken_at: "2026-01-01T00:00:00.000Z".into(),
            jobhost_version: "0.1.0".into(),
            with_compiled: false,
        }
    }

    fn file(records: &[(&str, &[u8], &[u8])]) -> Vec<u8> {
        let mut encoder = Encoder::new(&header());
        let mut bytes = Vec::new();
        for (section, key, value) in records {
            encoder.record(section, key, value).unwrap();
            bytes.extend(encoder.take());
        }
        bytes.extend(encoder.finish());
        bytes
    }

    fn read(bytes: &[u8]) -> Result<Vec<Record>, FormatError> {
        let mut decoder = Decoder::open(bytes)?;
        assert_eq!(decoder.header(), &header());
        let mut records = Vec::new();
        while let Some(record) = decoder.next_record()? {
            records.push(record);
        }
        Ok(records)
    }

    #[test]
    fn records_read_back_as_written() {
        let bytes = file(&[("store/jobs", b"j1", b"one"), ("compiled", b"", b"")]);
        let records = read(&bytes).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].section, "store/jobs");
        assert_eq!(records[0].key, b"j1");
        assert_eq!(records[0].value, b"one");
        assert!(records[1].key.is_empty() && records[1].value.is_empty());
    }

    #[test]
    fn a_changed_byte_fails_the_checksum() {
        let mut bytes = file(&[("store/jobs", b"j1", b"one")]);
        let at = bytes.len() - 40;
        bytes[at] ^= 1;
        assert!(matches!(read(&bytes), Err(FormatError::Corrupt(_))));
    }

    #[test]
    fn a_cut_file_is_truncated() {
        let bytes = file(&[("store/jobs", b"j1", b"one")]);
        for len in [MAGIC.len() + 3, bytes.len() - 33, bytes.len() - 1] {
            assert!(matches!(read(&bytes[..len]), Err(FormatError::Truncated)));
        }
    }

    #[test]
    fn another_file_is_foreign() {
        assert!(matches!(read(b"PK\x03\x04"), Err(FormatError::Foreign)));
        assert!(matches!(read(b""), Err(FormatError::Foreign)));
    }

    #[test]
    fn a_newer_version_is_refused() {
        let mut bytes = file(&[]);
        bytes[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&2u16.to_be_bytes());
        assert!(matches!(
            read(&bytes),
            Err(FormatError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn bytes_after_the_checksum_are_refused() {
        let mut bytes = file(&[]);
        bytes.push(0);
        assert!(matches!(read(&bytes), Err(FormatError::Corrupt(_))));
    }
}
