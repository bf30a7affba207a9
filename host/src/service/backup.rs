//! Backups through the service core: who may take one, and streaming it as a snapshot file.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::audit::record_act;
use super::{JobService, ServiceError};
use crate::audit::AuditAction;
use crate::auth::{self, Principal};
use crate::backup::{self, BackupError};
use crate::job::TenantScope;

/// Pieces of the file buffered ahead of a slow reader.
const CHUNKS_AHEAD: usize = 4;

impl JobService {
    /// Starts a snapshot of the whole store and answers it as the bytes of a snapshot file,
    /// with the handlers' compiled-code cache if asked and there is one. It holds every tenant's jobs and
    /// every key, so only a key with every permission on every tenant may take it.
    pub async fn backup(
        &self,
        caller: &Principal,
        with_compiled: bool,
    ) -> Result<mpsc::Receiver<Result<Bytes, BackupError>>, ServiceError> {
        if !caller.has(auth::ALL) || caller.tenants != TenantScope::All {
            return Err(ServiceError::PermissionDenied(
                "a backup holds every tenant's data: use a key with the permission '*' on every \
                 tenant"
                    .into(),
            ));
        }
        let compiled_dir: Option<PathBuf> = with_compiled
            .then(|| self.handlers.compiled_cache_dir().map(Into::into))
            .flatten();
        let snapshot = self.store.snapshot().await?;
        tracing::info!(key_id = %caller.key_id, with_compiled = compiled_dir.is_some(), "backup started");
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::BackupTaken,
            Vec::new(),
            "store",
            if compiled_dir.is_some() {
                "with compiled code"
            } else {
                "without compiled code"
            },
        )
        .await?;
        let (chunks, receiver) = mpsc::channel(CHUNKS_AHEAD);
        tokio::task::spawn_blocking(move || {
            let written = backup::write_snapshot(snapshot, compiled_dir.as_deref(), |chunk| {
                chunks.blocking_send(Ok(Bytes::from(chunk))).is_ok()
            });
            match written {
                Ok(true) => tracing::info!("backup sent"),
                Ok(false) => tracing::warn!("backup abandoned by its reader"),
                Err(error) => {
                    tracing::error!(%error, "backup failed");
                    let _ = chunks.blocking_send(Err(error));
                }
            }
        });
        Ok(receiver)
    }
}
