//! Triggers: named schedules that create jobs from a template, exactly once per fire time.
//!
//! A [`TriggerRecord`] carries its definition and its cursor, `next_fire`: the scheduled
//! time of the next fire. The store advances the cursor in the same atomic write that creates
//! the fired jobs, so a crash can neither repeat a fire nor lose one. What one firing does
//! (catch-up after downtime, overlap skips, the end of a lifetime) is decided by [`plan`]
//! alone; when a schedule fires is [`schedule`]'s business.

pub mod plan;
pub mod schedule;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{EpochMs, JobId, JobPayload, NewJob};
pub use schedule::{CompiledSchedule, Schedule, ScheduleError};

pub type TriggerId = u64;

/// Missed fires created after downtime, at most, unless a trigger says otherwise.
pub const DEFAULT_MAX_CATCH_UP: u32 = 100;
/// The most missed fires a trigger may ask to catch up.
pub const MAX_CATCH_UP_LIMIT: u32 = 1_000;
/// Header prefix reserved for what the host adds to fired jobs.
pub const RESERVED_HEADER_PREFIX: &str = "jobhost-";

/// What a trigger does while its previous job is still unfinished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlap {
    /// Fire anyway.
    #[default]
    Allow,
    /// Skip the fire (it is counted, and the cursor moves on).
    Skip,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
        }
    }

    pub fn parse(text: &str) -> Option<Overlap> {
        match text.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(Overlap::Allow),
            "skip" => Some(Overlap::Skip),
            _ => None,
        }
    }
}

/// The job each fire creates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplate {
    /// JSON object text.
    pub variables: String,
    pub custom_headers: BTreeMap<String, String>,
    pub retries: i32,
    pub priority: i32,
    /// The idempotency key of each fired job, as a pattern (see [`IdempotencyPattern`]): a
    /// fire whose key a job of the type already holds in the tenant creates nothing.
    pub idempotency_key: Option<String>,
}

/// The placeholders an idempotency-key pattern may hold, replaced at each fire.
pub const KEY_PLACEHOLDERS: [&str; 2] = ["{scheduled_at}", "{scheduled_at_ms}"];

/// An idempotency-key pattern of a trigger's template: text in which `{scheduled_at}` stands
/// for the fire's scheduled time (RFC 3339, UTC, milliseconds) and `{scheduled_at_ms}` for it
/// in epoch milliseconds, e.g. `daily-report-{scheduled_at}`. Without a placeholder every fire
/// carries the same key, so one job at a time exists for the trigger.
pub struct IdempotencyPattern;

impl IdempotencyPattern {
    /// Why `pattern` cannot be used, if it cannot: an empty key, a NUL, a brace that is not
    /// part of a placeholder, or a key longer than `max_bytes` once a time is put in.
    pub fn check(pattern: &str, max_bytes: usize) -> Result<(), String> {
        if pattern.is_empty() || pattern.contains('\0') {
            return Err("idempotency_key must be non-empty and hold no NUL".into());
        }
        let mut rest = pattern.to_string();
        let mut longest = 0;
        for placeholder in KEY_PLACEHOLDERS {
            let count = rest.matches(placeholder).count();
            // The longest RFC 3339 text this writes, e.g. 2026-12-03T14:03:33.123Z.
            longest += count * 24;
            rest = rest.replace(placeholder, "");
        }
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "idempotency_key may hold only the placeholders {}; other braces are refused",
                KEY_PLACEHOLDERS.join(" and ")
            ));
        }
        if rest.len() + longest > max_bytes {
            return Err(format!(
                "idempotency_key must be at most {max_bytes} bytes once a time is put in"
            ));
        }
        Ok(())
    }

    /// The key of the fire at `scheduled_at`.
    pub fn render(pattern: &str, scheduled_at: EpochMs) -> String {
        pattern
            .replace(
                "{scheduled_at}",
                &crate::job::format_time(scheduled_at).unwrap_or_default(),
            )
            .replace("{scheduled_at_ms}", &scheduled_at.to_string())
    }
}

/// Where a trigger stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerStatus {
    Active,
    Paused,
    /// Past its end, or its schedule has no more fire times.
    Ended,
}

impl TriggerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStatus::Active => "active",
            TriggerStatus::Paused => "paused",
            TriggerStatus::Ended => "ended",
        }
    }
}

/// A trigger as stored: its definition, its cursor and what it has done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub id: TriggerId,
    pub tenant: String,
    /// Unique within the tenant.
    pub name: String,
    pub job_type: String,
    pub schedule: Schedule,
    pub template: JobTemplate,
    /// After downtime: create the missed fires (up to `max_catch_up`), or skip them.
    pub catch_up: bool,
    pub max_catch_up: u32,
    /// No fire is scheduled after this time.
    pub end_at: Option<EpochMs>,
    pub overlap: Overlap,
    pub enabled: bool,
    pub created_at: EpochMs,
    /// Last change of the definition.
    pub updated_at: EpochMs,
    /// Scheduled time of the next fire; `None` while paused or once ended.
    pub next_fire: Option<EpochMs>,
    /// Scheduled time of the last fire that created a job.
    pub last_fire: Option<EpochMs>,
    pub last_job: Option<JobId>,
    /// Jobs created so far.
    pub fired: u64,
    /// Fires skipped because the previous job was unfinished (`overlap` = skip).
    pub skipped: u64,
    /// Fires dropped as missed (downtime without catch-up, or beyond `max_catch_up`).
    pub missed: u64,
    /// Bumped by every stored change, so concurrent changes can detect each other.
    pub revision: u64,
}

impl TriggerRecord {
    /// A trigger created at `now` with the defaults: an empty template with the default
    /// retries, catch-up of up to [`DEFAULT_MAX_CATCH_UP`] missed fires, overlap allowed, no
    /// end, enabled. Not armed yet (see [`TriggerRecord::rearm`]) and not stored (no id).
    pub fn new(
        tenant: String,
        name: String,
        job_type: String,
        schedule: Schedule,
        now: EpochMs,
    ) -> TriggerRecord {
        TriggerRecord {
            id: 0,
            tenant,
            name,
            job_type,
            schedule,
            template: JobTemplate {
                variables: "{}".into(),
                custom_headers: BTreeMap::new(),
                retries: crate::job::limits::DEFAULT_RETRIES,
                priority: 0,
                idempotency_key: None,
            },
            catch_up: true,
            max_catch_up: DEFAULT_MAX_CATCH_UP,
            end_at: None,
            overlap: Overlap::Allow,
            enabled: true,
            created_at: now,
            updated_at: now,
            next_fire: None,
            last_fire: None,
            last_job: None,
            fired: 0,
            skipped: 0,
            missed: 0,
            revision: 0,
        }
    }

    pub fn status(&self) -> TriggerStatus {
        match (self.enabled, self.next_fire) {
            (false, _) => TriggerStatus::Paused,
            (true, None) => TriggerStatus::Ended,
            (true, Some(_)) => TriggerStatus::Active,
        }
    }

    /// Points the cursor at the first fire after `now` (none while paused or past the end).
    pub fn rearm(&mut self, schedule: &CompiledSchedule, now: EpochMs) {
        self.next_fire = if self.enabled {
            schedule
                .next_after(now)
                .filter(|at| self.end_at.is_none_or(|end| *at <= end))
        } else {
            None
        };
    }

    /// The job one fire at `scheduled_at` creates.
    pub fn job_for(&self, scheduled_at: EpochMs) -> NewJob {
        let mut custom_headers = self.template.custom_headers.clone();
        custom_headers.insert("jobhost-trigger".into(), self.name.clone());
        custom_headers.insert("jobhost-trigger-id".into(), self.id.to_string());
        custom_headers.insert(
            "jobhost-scheduled-at".into(),
            crate::job::format_time(scheduled_at).unwrap_or_default(),
        );
        NewJob {
            tenant: self.tenant.clone(),
            job_type: self.job_type.clone(),
            priority: self.template.priority,
            retries: self.template.retries,
            run_at: None,
            payload: JobPayload {
                variables: self.template.variables.clone(),
                custom_headers,
                process: Default::default(),
            },
            idempotency_key: self
                .template
                .idempotency_key
                .as_deref()
                .map(|pattern| IdempotencyPattern::render(pattern, scheduled_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRE: EpochMs = 1_767_225_660_000; // 2026-01-01T00:01:00Z

    #[test]
    fn a_fired_job_carries_its_pattern_with_the_fire_time_put_in() {
        let mut trigger = TriggerRecord::new(
            "acme".into(),
            "nightly".into(),
            "report".into(),
            Schedule::interval("1m").unwrap(),
            0,
        );
        assert_eq!(trigger.job_for(FIRE).idempotency_key, None);
        trigger.template.idempotency_key = Some("r-{scheduled_at}/{scheduled_at_ms}".into());
        assert_eq!(
            trigger.job_for(FIRE).idempotency_key.as_deref(),
            Some("r-2026-01-01T00:01:00.000Z/1767225660000")
        );
    }

    #[test]
    fn a_pattern_is_refused_for_unknown_braces_a_nul_or_too_many_bytes() {
        assert!(IdempotencyPattern::check("r-{scheduled_at}", 255).is_ok());
        assert!(IdempotencyPattern::check("fixed", 255).is_ok());
        assert!(IdempotencyPattern::check("", 255).is_err());
        assert!(IdempotencyPattern::check("a\0b", 255).is_err());
        assert!(IdempotencyPattern::check("r-{date}", 255).is_err());
        assert!(IdempotencyPattern::check("r-{scheduled_at", 255).is_err());
        // 232 bytes and a time of 24 are one too many.
        let long = format!("{}{{scheduled_at}}", "k".repeat(232));
        assert!(IdempotencyPattern::check(&long, 255).is_err());
        assert!(IdempotencyPattern::check(&long[1..], 255).is_ok());
    }
}
