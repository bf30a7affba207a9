//! Trigger management in the service core: definitions checked and turned into records,
//! scoped to the caller's tenants, stored, and handed to the scheduler.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::audit::record_act;
use super::{JobService, ServiceError, invalid, json_object, required_name, tenant_or_default};
use crate::audit::AuditAction;
use crate::auth::{self, Principal};
use crate::job::EpochMs;
use crate::job::limits;
use crate::signals::Signal;
use crate::store::{DueFire, TriggerError};
use crate::trigger::schedule::{format_duration, parse_duration};
use crate::trigger::{
    IdempotencyPattern, MAX_CATCH_UP_LIMIT, Overlap, RESERVED_HEADER_PREFIX, Schedule, TriggerId,
    TriggerRecord,
};

/// How often a change is retried when a fire changed the trigger meanwhile.
const CHANGE_ATTEMPTS: usize = 8;

/// A trigger definition as the APIs receive it. Creating needs `name`, `type` and one of
/// `cron` or `interval`; a change names only the fields it changes.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDefinition {
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    /// 5 fields, or 6 with seconds first.
    pub cron: Option<String>,
    /// IANA zone of a cron schedule; UTC by default.
    #[serde(alias = "tz")]
    pub time_zone: Option<String>,
    /// e.g. `30s`, `15m`, `1h30m`, `2d`, `1w`.
    pub interval: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub variables: Option<serde_json::Value>,
    pub custom_headers: Option<BTreeMap<String, String>>,
    pub retries: Option<i32>,
    pub priority: Option<i32>,
    /// The idempotency key of each fired job, with `{scheduled_at}` (RFC 3339) or
    /// `{scheduled_at_ms}` standing for the fire's time, e.g. `report-{scheduled_at}`; a fire
    /// whose key a job of the type already holds creates nothing. Empty removes it.
    pub idempotency_key: Option<String>,
    pub catch_up: Option<bool>,
    pub max_catch_up: Option<u32>,
    /// RFC 3339 time or epoch ms.
    pub end_at: Option<TimeInput>,
    /// How long after its creation the trigger stops, e.g. `24h`.
    pub lifetime: Option<String>,
    /// `allow` or `skip`.
    pub overlap: Option<String>,
    pub enabled: Option<bool>,
}

/// A time given as RFC 3339 text or epoch milliseconds.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TimeInput {
    Millis(i64),
    Text(String),
}

/// Which triggers a listing wants.
#[derive(Clone, Debug, Default)]
pub struct TriggerFilter {
    pub tenant_id: Option<String>,
    pub name: Option<String>,
    pub job_type: Option<String>,
}

impl From<TriggerError> for ServiceError {
    fn from(error: TriggerError) -> ServiceError {
        let message = error.to_string();
        match error {
            TriggerError::NameTaken { .. } => ServiceError::InvalidArgument(message),
            TriggerError::NotFound(_) => ServiceError::NotFound(message),
            TriggerError::Conflict(_) => ServiceError::Unavailable(message),
            TriggerError::Store(store) => store.into(),
        }
    }
}

impl JobService {
    pub async fn create_trigger(
        &self,
        caller: &Principal,
        definition: TriggerDefinition,
    ) -> Result<TriggerRecord, ServiceError> {
        caller.require(auth::TRIGGERS)?;
        let now = self.clock.now();
        let name = required_name("name", definition.name.as_deref().unwrap_or(""))?;
        let tenant = tenant_or_default(definition.tenant_id.as_deref().unwrap_or(""))?;
        caller.require_tenant(&tenant)?;
        let job_type = required_name("type", definition.job_type.as_deref().unwrap_or(""))?;
        let schedule = match (&definition.cron, &definition.interval) {
            (None, None) => {
                return Err(invalid(
                    "a trigger needs a schedule: give cron (e.g. \"0 9 * * 1\") or interval \
                     (e.g. \"15m\")",
                ));
            }
            _ => new_schedule(&definition, None)?,
        };
        let mut trigger = TriggerRecord::new(tenant, name, job_type, schedule, now);
        apply_settings(&mut trigger, &definition, now)?;
        arm(&mut trigger, now)?;
        // Counting and creating under one lock, so concurrent creations cannot overshoot.
        let _one_at_a_time = self.creating_trigger.lock().await;
        let held = self
            .store
            .triggers()
            .await?
            .iter()
            .filter(|t| t.tenant == trigger.tenant)
            .count();
        if held >= self.quotas.triggers_per_tenant {
            return Err(ServiceError::ResourceExhausted(format!(
                "tenant '{}' has {held} triggers, its quota: remove one first",
                trigger.tenant
            )));
        }
        let stored = self.store.create_trigger(trigger).await?;
        self.announce(&stored);
        tracing::info!(trigger = stored.id, tenant = %stored.tenant, name = %stored.name, job_type = %stored.job_type, schedule = %stored.schedule, "trigger created");
        self.audit_trigger(caller, AuditAction::TriggerCreated, &stored)
            .await?;
        Ok(stored)
    }

    /// Changes the fields `change` names. A new schedule, end or a resume starts the trigger
    /// afresh from now; fires missed while paused are not caught up.
    pub async fn update_trigger(
        &self,
        caller: &Principal,
        id: &str,
        change: TriggerDefinition,
    ) -> Result<TriggerRecord, ServiceError> {
        caller.require(auth::TRIGGERS)?;
        let id = parse_trigger_id(id)?;
        for _ in 0..CHANGE_ATTEMPTS {
            let current = self.scoped_trigger(caller, id).await?;
            let now = self.clock.now();
            let mut trigger = current.clone();
            if let Some(tenant) = &change.tenant_id
                && tenant.trim() != current.tenant
            {
                return Err(invalid(
                    "a trigger's tenant cannot change: create a new trigger in that tenant",
                ));
            }
            if let Some(name) = &change.name {
                trigger.name = required_name("name", name)?;
            }
            if let Some(job_type) = &change.job_type {
                trigger.job_type = required_name("type", job_type)?;
            }
            if change.cron.is_some() || change.interval.is_some() || change.time_zone.is_some() {
                trigger.schedule = new_schedule(&change, Some(&current.schedule))?;
            }
            apply_settings(&mut trigger, &change, now)?;
            let same_course =
                trigger.schedule == current.schedule && trigger.enabled == current.enabled;
            if same_course && current.next_fire.is_some() {
                // A new end keeps the cursor, so a fire that is due but not yet made stays.
                trigger.next_fire = current
                    .next_fire
                    .filter(|at| trigger.end_at.is_none_or(|end| *at <= end));
            } else if !same_course || trigger.end_at != current.end_at {
                arm(&mut trigger, now)?;
            }
            if trigger == current {
                return Ok(current);
            }
            trigger.updated_at = now;
            match self.store.replace_trigger(trigger, current.revision).await {
                Ok(stored) => {
                    self.announce(&stored);
                    tracing::info!(trigger = stored.id, tenant = %stored.tenant, name = %stored.name, status = stored.status().as_str(), "trigger changed");
                    self.audit_trigger(caller, AuditAction::TriggerChanged, &stored)
                        .await?;
                    return Ok(stored);
                }
                Err(TriggerError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(ServiceError::Unavailable(format!(
            "trigger {id} kept changing; try again"
        )))
    }

    pub async fn delete_trigger(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<TriggerRecord, ServiceError> {
        caller.require(auth::TRIGGERS)?;
        let id = parse_trigger_id(id)?;
        let removed = self
            .store
            .delete_trigger(id, caller.tenants.clone())
            .await?;
        self.signals.publish(Signal::TriggerChanged(id));
        tracing::info!(trigger = id, tenant = %removed.tenant, name = %removed.name, "trigger removed");
        self.audit_trigger(caller, AuditAction::TriggerRemoved, &removed)
            .await?;
        Ok(removed)
    }

    pub async fn get_trigger(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<TriggerRecord, ServiceError> {
        caller.require(auth::TRIGGERS)?;
        self.scoped_trigger(caller, parse_trigger_id(id)?).await
    }

    /// The caller's triggers that match the filter, by tenant and name.
    pub async fn list_triggers(
        &self,
        caller: &Principal,
        filter: &TriggerFilter,
    ) -> Result<Vec<TriggerRecord>, ServiceError> {
        caller.require(auth::TRIGGERS)?;
        if let Some(tenant) = &filter.tenant_id {
            caller.require_tenant(tenant)?;
        }
        let wanted = |wanted: &Option<String>, actual: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == actual)
        };
        let mut triggers: Vec<_> = self
            .store
            .triggers()
            .await?
            .into_iter()
            .filter(|t| caller.tenants.contains(&t.tenant))
            .filter(|t| wanted(&filter.tenant_id, &t.tenant))
            .filter(|t| wanted(&filter.name, &t.name))
            .filter(|t| wanted(&filter.job_type, &t.job_type))
            .collect();
        triggers.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        Ok(triggers)
    }

    async fn scoped_trigger(
        &self,
        caller: &Principal,
        id: TriggerId,
    ) -> Result<TriggerRecord, ServiceError> {
        match self.store.trigger(id).await? {
            Some(trigger) if caller.tenants.contains(&trigger.tenant) => Ok(trigger),
            _ => Err(ServiceError::NotFound(format!("trigger {id} not found"))),
        }
    }

    async fn audit_trigger(
        &self,
        caller: &Principal,
        action: AuditAction,
        trigger: &TriggerRecord,
    ) -> Result<(), ServiceError> {
        record_act(
            self.store.as_ref(),
            caller,
            action,
            vec![trigger.tenant.clone()],
            trigger.id.to_string(),
            format!(
                "'{}' ({}, {}), {}",
                trigger.name,
                trigger.job_type,
                trigger.schedule,
                trigger.status().as_str()
            ),
        )
        .await
    }

    fn announce(&self, trigger: &TriggerRecord) {
        self.signals.publish(Signal::TriggerChanged(trigger.id));
    }
}

/// The trigger scheduler's door: it reads every trigger and fires the due ones.
impl JobService {
    /// Every trigger, of every tenant.
    pub async fn all_triggers(&self) -> Result<Vec<TriggerRecord>, ServiceError> {
        Ok(self.store.triggers().await?)
    }

    /// One trigger as it stands now; `None` once it is removed.
    pub async fn trigger_now(&self, id: TriggerId) -> Result<Option<TriggerRecord>, ServiceError> {
        Ok(self.store.trigger(id).await?)
    }

    /// Fires the due triggers whose cursor is still the one the scheduler saw, as of `now`;
    /// answers each trigger as it now stands (see [`crate::store::TriggerStore::fire_triggers`]).
    pub async fn fire_triggers(
        &self,
        due: Vec<DueFire>,
        now: EpochMs,
    ) -> Result<Vec<(TriggerId, Option<TriggerRecord>)>, ServiceError> {
        Ok(self.store.fire_triggers(due, now).await?)
    }
}

fn parse_trigger_id(id: &str) -> Result<TriggerId, ServiceError> {
    id.trim().parse().map_err(|_| {
        invalid(format!(
            "trigger id must be a number, got '{}'",
            id.chars().take(40).collect::<String>()
        ))
    })
}

/// The schedule a definition names; `current` fills in what a change leaves out (a new time
/// zone alone keeps the current cron expression).
fn new_schedule(
    definition: &TriggerDefinition,
    current: Option<&Schedule>,
) -> Result<Schedule, ServiceError> {
    let schedule = match (&definition.cron, &definition.interval) {
        (Some(_), Some(_)) => return Err(invalid("give either cron or interval, not both")),
        (Some(expression), None) => Schedule::cron(expression, definition.time_zone.as_deref()),
        (None, Some(interval)) => {
            if definition.time_zone.is_some() {
                return Err(invalid(
                    "time_zone applies to cron schedules only; intervals count from the epoch",
                ));
            }
            Schedule::interval(interval)
        }
        (None, None) => match current {
            Some(Schedule::Cron { expression, .. }) => {
                Schedule::cron(expression, definition.time_zone.as_deref())
            }
            _ => {
                return Err(invalid(
                    "time_zone applies to cron schedules only; intervals count from the epoch",
                ));
            }
        },
    };
    schedule.map_err(|error| invalid(error.to_string()))
}

/// Applies the template and policy fields a definition names.
fn apply_settings(
    trigger: &mut TriggerRecord,
    definition: &TriggerDefinition,
    now: EpochMs,
) -> Result<(), ServiceError> {
    if let Some(variables) = &definition.variables {
        let text = if variables.is_null() {
            String::new()
        } else {
            variables.to_string()
        };
        trigger.template.variables = json_object("variables", &text)?;
    }
    if let Some(headers) = &definition.custom_headers {
        if let Some(reserved) = headers
            .keys()
            .find(|name| name.starts_with(RESERVED_HEADER_PREFIX))
        {
            return Err(invalid(format!(
                "custom header '{reserved}' is reserved: names starting with \
                 '{RESERVED_HEADER_PREFIX}' are set by the host on every fired job"
            )));
        }
        limits::check_custom_headers(headers).map_err(invalid)?;
        trigger.template.custom_headers = headers.clone();
    }
    if let Some(retries) = definition.retries {
        if !(1..=limits::MAX_RETRIES).contains(&retries) {
            return Err(invalid(format!(
                "retries must be between 1 and {}, got {retries}",
                limits::MAX_RETRIES
            )));
        }
        trigger.template.retries = retries;
    }
    if let Some(priority) = definition.priority {
        trigger.template.priority = priority;
    }
    if let Some(pattern) = &definition.idempotency_key {
        trigger.template.idempotency_key = if pattern.is_empty() {
            None
        } else {
            IdempotencyPattern::check(pattern, limits::MAX_NAME_BYTES).map_err(invalid)?;
            Some(pattern.clone())
        };
    }
    if let Some(catch_up) = definition.catch_up {
        trigger.catch_up = catch_up;
    }
    if let Some(max) = definition.max_catch_up {
        if !(1..=MAX_CATCH_UP_LIMIT).contains(&max) {
            return Err(invalid(format!(
                "max_catch_up must be between 1 and {MAX_CATCH_UP_LIMIT}, got {max} \
                 (set catch_up to false to skip missed fires)"
            )));
        }
        trigger.max_catch_up = max;
    }
    match (&definition.end_at, &definition.lifetime) {
        (Some(_), Some(_)) => return Err(invalid("give end_at or lifetime, not both")),
        (Some(end_at), None) => {
            let end_at = match end_at {
                TimeInput::Millis(ms) => *ms,
                TimeInput::Text(text) => super::parse_time("end_at", text)?,
            };
            if end_at <= now {
                return Err(invalid(format!(
                    "end_at must be in the future, got {}",
                    crate::job::format_time(end_at).unwrap_or_else(|| end_at.to_string())
                )));
            }
            trigger.end_at = Some(end_at);
        }
        (None, Some(lifetime)) => {
            let lifetime =
                parse_duration("lifetime", lifetime).map_err(|error| invalid(error.to_string()))?;
            let end_at = trigger.created_at + lifetime;
            if end_at <= now {
                return Err(invalid(format!(
                    "a lifetime of {} from the trigger's creation has already passed",
                    format_duration(lifetime)
                )));
            }
            trigger.end_at = Some(end_at);
        }
        (None, None) => {}
    }
    if let Some(overlap) = &definition.overlap {
        trigger.overlap = Overlap::parse(overlap).ok_or_else(|| {
            invalid(format!(
                "overlap must be 'allow' or 'skip', got '{}'",
                overlap.chars().take(40).collect::<String>()
            ))
        })?;
    }
    if let Some(enabled) = definition.enabled {
        trigger.enabled = enabled;
    }
    Ok(())
}

/// Points the trigger's cursor at its first fire after `now`; refuses a definition that
/// would never fire.
fn arm(trigger: &mut TriggerRecord, now: EpochMs) -> Result<(), ServiceError> {
    let schedule = trigger
        .schedule
        .compile()
        .map_err(|error| invalid(error.to_string()))?;
    trigger.rearm(&schedule, now);
    if trigger.enabled && trigger.next_fire.is_none() {
        return match (schedule.next_after(now), trigger.end_at) {
            (Some(first), Some(end)) => Err(invalid(format!(
                "the trigger ends ({}) before its first fire ({})",
                crate::job::format_time(end).unwrap_or_default(),
                crate::job::format_time(first).unwrap_or_default()
            ))),
            _ => Err(invalid(format!("{} never fires", trigger.schedule))),
        };
    }
    Ok(())
}
