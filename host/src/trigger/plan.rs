//! What one firing of a trigger does, decided from its record and the time alone.
//!
//! A fire is on time when it is at most [`MISFIRE_GRACE_MS`] late; the timer wakes the
//! scheduler within milliseconds of a fire, so only downtime (or a long pause of the process)
//! makes fires later than that. Late fires are missed fires: with `catch_up` they are created,
//! oldest first, up to the trigger's `max_catch_up`, and the rest are dropped; without it they
//! are all dropped. Either way the cursor then goes on from now.

use super::{CompiledSchedule, Overlap, TriggerRecord};
use crate::job::EpochMs;

/// How late a fire may be and still count as on time rather than missed.
pub const MISFIRE_GRACE_MS: i64 = 1_000;
/// Dropped fires of a cron schedule are counted up to this many per firing (the count is then
/// a lower bound), so a long outage of a per-second schedule costs the store little.
const MISSED_COUNT_LIMIT: u64 = 10_000;

/// The outcome of firing a trigger at some moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirePlan {
    /// Scheduled times to create one job each for, in order.
    pub fires: Vec<EpochMs>,
    /// Fires skipped because the previous job was unfinished.
    pub skipped: u64,
    /// Late fires dropped.
    pub missed: u64,
    /// The cursor afterwards; `None` once the trigger has ended.
    pub next_fire: Option<EpochMs>,
}

/// Plans the fires of `trigger` that are due at `now`. `previous_unfinished` tells whether
/// the job of its last fire is still open.
pub fn plan(
    trigger: &TriggerRecord,
    schedule: &CompiledSchedule,
    now: EpochMs,
    previous_unfinished: bool,
) -> FirePlan {
    let mut plan = FirePlan::default();
    let mut busy = previous_unfinished;
    let mut caught_up = 0u32;
    let mut next = trigger.next_fire;
    let past_end = |at: EpochMs| trigger.end_at.is_some_and(|end| at > end);
    while let Some(at) = next.filter(|at| *at <= now) {
        if past_end(at) {
            next = None;
            break;
        }
        let late = now - at > MISFIRE_GRACE_MS;
        if late && (!trigger.catch_up || caught_up >= trigger.max_catch_up) {
            // Drop every late fire at once and go on from the first that is on time.
            let resume = schedule.next_after(now - MISFIRE_GRACE_MS - 1);
            let dropped_until = match (resume, trigger.end_at) {
                (Some(resume), Some(end)) => Some(resume.min(end + 1)),
                (Some(resume), None) => Some(resume),
                (None, end) => end.map(|end| end + 1),
            };
            plan.missed += count_fires(schedule, at, dropped_until);
            next = resume.filter(|resume| *resume > at);
            continue;
        }
        if late {
            caught_up += 1;
        }
        if busy && trigger.overlap == Overlap::Skip {
            plan.skipped += 1;
        } else {
            plan.fires.push(at);
            busy = true;
        }
        // A schedule that does not move forward would fire forever: it has ended.
        next = schedule.next_after(at).filter(|following| *following > at);
    }
    plan.next_fire = next.filter(|at| !past_end(*at));
    plan
}

/// Fire times from `first` (inclusive) up to `until` (exclusive; `None`: only `first`).
fn count_fires(schedule: &CompiledSchedule, first: EpochMs, until: Option<EpochMs>) -> u64 {
    let Some(until) = until else { return 1 };
    match schedule {
        CompiledSchedule::Interval(every) => ((until - first + every - 1) / every).max(0) as u64,
        CompiledSchedule::Cron(..) => {
            let mut count = 0;
            let mut at = Some(first);
            while let Some(t) = at.filter(|t| *t < until) {
                count += 1;
                if count >= MISSED_COUNT_LIMIT {
                    break;
                }
                at = schedule.next_after(t).filter(|following| *following > t);
            }
            count
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::Schedule;

    const MINUTE: i64 = 60_000;
    /// 2026-01-01T00:00:00Z, a whole multiple of every interval used here.
    const T0: EpochMs = 1_767_225_600_000;

    fn every_minute() -> (TriggerRecord, CompiledSchedule) {
        let schedule = Schedule::interval("1m").unwrap();
        let compiled = schedule.compile().unwrap();
        let mut record =
            TriggerRecord::new("default".into(), "tick".into(), "tick".into(), schedule, T0);
        record.next_fire = Some(T0 + MINUTE);
        (record, compiled)
    }

    #[test]
    fn nothing_fires_before_the_cursor() {
        let (trigger, schedule) = every_minute();
        let plan = plan(&trigger, &schedule, T0 + MINUTE - 1, false);
        assert!(plan.fires.is_empty());
        assert_eq!(plan.next_fire, Some(T0 + MINUTE));
    }

    #[test]
    fn an_on_time_fire_creates_one_job_and_moves_the_cursor_one_step() {
        let (trigger, schedule) = every_minute();
        let plan = plan(&trigger, &schedule, T0 + MINUTE + 5, false);
        assert_eq!(plan.fires, vec![T0 + MINUTE]);
        assert_eq!(plan.next_fire, Some(T0 + 2 * MINUTE));
    }

    #[test]
    fn catch_up_creates_every_missed_fire_then_goes_on_from_now() {
        let (trigger, schedule) = every_minute();
        let now = T0 + 10 * MINUTE + 30_000;
        let plan = plan(&trigger, &schedule, now, false);
        let expected: Vec<_> = (1..=10).map(|k| T0 + k * MINUTE).collect();
        assert_eq!(plan.fires, expected);
        assert_eq!(plan.missed, 0);
        assert_eq!(plan.next_fire, Some(T0 + 11 * MINUTE));
    }

    #[test]
    fn catch_up_stops_at_its_limit_and_drops_the_rest() {
        let (mut trigger, schedule) = every_minute();
        trigger.max_catch_up = 3;
        let plan = plan(&trigger, &schedule, T0 + 10 * MINUTE + 30_000, false);
        assert_eq!(
            plan.fires,
            vec![T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
        );
        assert_eq!(plan.missed, 7);
        assert_eq!(plan.next_fire, Some(T0 + 11 * MINUTE));
    }

    #[test]
    fn without_catch_up_missed_fires_are_dropped() {
        let (mut trigger, schedule) = every_minute();
        trigger.catch_up = false;
        let plan = plan(&trigger, &schedule, T0 + 10 * MINUTE + 30_000, false);
        assert!(plan.fires.is_empty());
        assert_eq!(plan.missed, 10);
        assert_eq!(plan.next_fire, Some(T0 + 11 * MINUTE));
    }

    #[test]
    fn without_catch_up_a_fire_within_the_grace_still_fires() {
        let (mut trigger, schedule) = every_minute();
        trigger.catch_up = false;
        trigger.next_fire = Some(T0 + MINUTE);
        let plan = plan(&trigger, &schedule, T0 + MINUTE + MISFIRE_GRACE_MS, false);
        assert_eq!(plan.fires, vec![T0 + MINUTE]);
    }

    #[test]
    fn overlap_skip_skips_while_the_previous_job_is_unfinished() {
        let (mut trigger, schedule) = every_minute();
        trigger.overlap = Overlap::Skip;
        let plan = plan(&trigger, &schedule, T0 + MINUTE, true);
        assert!(plan.fires.is_empty());
        assert_eq!(plan.skipped, 1);
        assert_eq!(plan.next_fire, Some(T0 + 2 * MINUTE));
    }

    #[test]
    fn overlap_skip_creates_one_job_of_many_missed_fires() {
        let (mut trigger, schedule) = every_minute();
        trigger.overlap = Overlap::Skip;
        let plan = plan(&trigger, &schedule, T0 + 5 * MINUTE, false);
        assert_eq!(plan.fires, vec![T0 + MINUTE]);
        assert_eq!(plan.skipped, 4);
    }

    #[test]
    fn overlap_allow_fires_while_the_previous_job_is_unfinished() {
        let (trigger, schedule) = every_minute();
        let plan = plan(&trigger, &schedule, T0 + MINUTE, true);
        assert_eq!(plan.fires, vec![T0 + MINUTE]);
    }

    #[test]
    fn the_trigger_ends_after_its_end_time() {
        let (mut trigger, schedule) = every_minute();
        trigger.end_at = Some(T0 + 2 * MINUTE + 1);
        let first = plan(&trigger, &schedule, T0 + MINUTE, false);
        assert_eq!(first.next_fire, Some(T0 + 2 * MINUTE));
        trigger.next_fire = first.next_fire;
        let last = plan(&trigger, &schedule, T0 + 2 * MINUTE, false);
        assert_eq!(last.fires, vec![T0 + 2 * MINUTE]);
        assert_eq!(last.next_fire, None);
    }

    #[test]
    fn dropped_fires_after_the_end_are_not_counted_as_missed() {
        let (mut trigger, schedule) = every_minute();
        trigger.catch_up = false;
        trigger.end_at = Some(T0 + 3 * MINUTE);
        let plan = plan(&trigger, &schedule, T0 + 10 * MINUTE + 30_000, false);
        assert_eq!(plan.missed, 3);
        assert_eq!(plan.next_fire, None);
    }

    #[test]
    fn missed_fires_after_the_end_are_not_caught_up() {
        let (mut trigger, schedule) = every_minute();
        trigger.end_at = Some(T0 + 3 * MINUTE);
        let plan = plan(&trigger, &schedule, T0 + 10 * MINUTE, false);
        assert_eq!(
            plan.fires,
            vec![T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
        );
        assert_eq!(plan.next_fire, None);
    }
}
