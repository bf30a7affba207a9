//! Cron expressions, time zones, intervals and whole trigger definitions: a schedule that
//! fires after the time asked, or a refusal that says why.

use proptest::prelude::*;

use super::*;
use crate::service::{TimeInput, TriggerDefinition};
use crate::trigger::schedule::{
    MAX_INTERVAL_MS, MIN_INTERVAL_MS, Schedule, ScheduleError, format_duration,
};

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kathmandu",
];

/// One field of a cron expression: the forms croner reads, near misses and garbage.
fn cron_field() -> impl Strategy<Value = String> {
    let number = prop_oneof![4 => 0u32..62, 1 => any::<u32>()];
    prop_oneof![
        3 => Just("*".to_string()),
        3 => number.clone().prop_map(|n| n.to_string()),
        2 => (number.clone(), number.clone()).prop_map(|(a, b)| format!("{a}-{b}")),
        2 => number.clone().prop_map(|n| format!("*/{n}")),
        1 => (number.clone(), number.clone(), number.clone())
            .prop_map(|(a, b, step)| format!("{a}-{b}/{step}")),
        1 => prop::collection::vec(number.clone(), 2..4).prop_map(|list| {
            list.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        }),
        1 => text_around(&["MON", "sun-sat", "JAN", "dec", "L", "5L", "15W", "LW", "1#3", "?"]),
        1 => number.prop_map(|n| format!("{n}#{n}")),
        1 => "\\PC{1,4}",
    ]
}

fn cron_text() -> impl Strategy<Value = String> {
    let separator = prop_oneof![Just(" "), Just("  "), Just("\t")];
    prop_oneof![
        6 => (prop::collection::vec(cron_field(), 5..=6), separator)
            .prop_map(|(fields, separator)| fields.join(separator)),
        1 => prop::collection::vec(cron_field(), 0..9).prop_map(|fields| fields.join(" ")),
        1 => text_around(&["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@reboot"]),
        1 => any::<String>(),
    ]
}

fn zone_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        4 => text_around(ZONES),
        1 => "[A-Za-z_/+-]{1,20}",
    ])
}

/// An instant to look for the next fire after: plausible ones, and the edges.
fn after() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..4_000_000_000_000,
        1 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ]
}

#[test]
fn cron_schedules_fire_after_the_time_asked_or_are_refused() {
    fuzz(
        512,
        (cron_text(), zone_text(), after()),
        |(expression, zone, after)| {
            match Schedule::cron(&expression, zone.as_deref()) {
                Ok(schedule) => {
                    let compiled = schedule.compile().expect("a checked schedule compiles");
                    if let Some(next) = compiled.next_after(after) {
                        prop_assert!(next > after, "{next} is not after {after}");
                    }
                }
                Err(ScheduleError::InvalidCron { .. } | ScheduleError::UnknownTimeZone(_)) => {}
                Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            Ok(())
        },
    );
}

fn interval_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "([0-9]{1,4}[wdhms]){1,4}",
        1 => "[0-9]{1,25}[wdhms]",
        2 => text_around(&["30s", "15m", "1h30m", "2d", "1w", "366d", "367d", "0s", "-1s"]),
        1 => any::<String>(),
    ]
}

#[test]
fn intervals_read_back_as_written_or_are_refused_with_the_reason() {
    fuzz(1024, interval_text(), |text| {
        match Schedule::interval(&text) {
            Ok(Schedule::Interval { every_ms }) => {
                prop_assert!((MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&every_ms));
                let written = format_duration(every_ms);
                prop_assert_eq!(
                    Schedule::interval(&written),
                    Ok(Schedule::Interval { every_ms })
                );
            }
            Err(ScheduleError::InvalidDuration { field, .. }) => {
                prop_assert_eq!(field, "interval");
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
        Ok(())
    });
}

#[test]
fn intervals_fire_at_the_next_whole_multiple() {
    let every = prop_oneof![
        MIN_INTERVAL_MS..=MAX_INTERVAL_MS,
        Just(MIN_INTERVAL_MS),
        Just(MAX_INTERVAL_MS)
    ];
    fuzz(1024, (every, after()), |(every, after)| {
        let compiled = Schedule::Interval { every_ms: every }
            .compile()
            .expect("compiles");
        let next = (i128::from(after).div_euclid(i128::from(every)) + 1) * i128::from(every);
        let expected = i64::try_from(next).ok();
        prop_assert_eq!(compiled.next_after(after), expected);
        Ok(())
    });
}

/// Trigger definitions as a REST body could give them: every field sometimes missing,
/// sometimes right, sometimes wrong.
fn trigger_definition() -> impl Strategy<Value = TriggerDefinition> {
    let text = |known: &'static [&'static str]| prop::option::of(text_around(known));
    let end_at = prop::option::of(prop_oneof![
        any::<i64>().prop_map(TimeInput::Millis),
        (1_700_000_000_000i64..4_000_000_000_000).prop_map(TimeInput::Millis),
        text_around(&["2999-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "tomorrow"])
            .prop_map(TimeInput::Text),
    ]);
    let headers = prop::option::of(prop::collection::btree_map(
        text_around(&["h", "jobhost-trigger"]),
        any::<String>(),
        0..3,
    ));
    (
        (
            text(&["nightly", " ", ""]),
            text(&["default", "acme", "bad tenant!"]),
            text(&["t", ""]),
            prop::option::of(cron_text()),
            zone_text(),
            prop::option::of(interval_text()),
        ),
        (
            prop::option::of(json_value()),
            headers,
            prop::option::of(prop_oneof![-1i32..1002, any::<i32>()]),
            prop::option::of(any::<i32>()),
            prop::option::of(any::<bool>()),
            prop::option::of(prop_oneof![0u32..1002, any::<u32>()]),
        ),
        (
            end_at,
            prop::option::of(interval_text()),
            text(&["allow", "skip"]),
            prop::option::of(any::<bool>()),
            prop::option::of(text_around(&[
                "report-{scheduled_at}",
                "run-{scheduled_at_ms}",
                "only-one",
                "{scheduled}",
                "",
            ])),
        ),
    )
        .prop_map(
            |(
                (name, tenant_id, job_type, cron, time_zone, interval),
                (variables, custom_headers, retries, priority, catch_up, max_catch_up),
                (end_at, lifetime, overlap, enabled, idempotency_key),
            )| TriggerDefinition {
                name,
                tenant_id,
                job_type,
                cron,
                time_zone,
                interval,
                variables,
                custom_headers,
                retries,
                priority,
                idempotency_key,
                catch_up,
                max_catch_up,
                end_at,
                lifetime,
                overlap,
                enabled,
            },
        )
}

#[test]
fn trigger_definitions_make_a_trigger_or_are_refused_naming_what_is_wrong() {
    let fixture = Fixture::new();
    let admin = Principal::admin();
    fuzz(256, trigger_definition(), |definition| {
        let created = fixture.block_on(fixture.service.create_trigger(&admin, definition));
        assert_ok_or_invalid(
            &created,
            &[
                "name",
                "type",
                "tenant",
                "schedule",
                "cron",
                "interval",
                "time_zone",
                "time zone",
                "variables",
                "custom header",
                "retries",
                "max_catch_up",
                "end_at",
                "lifetime",
                "overlap",
                "idempotency_key",
                "trigger ends",
                "never fires",
            ],
        )?;
        // Removed again, so that long runs stay under the tenant's trigger quota.
        if let Ok(trigger) = created {
            fixture
                .block_on(
                    fixture
                        .service
                        .delete_trigger(&admin, &trigger.id.to_string()),
                )
                .expect("removed");
        }
        Ok(())
    });
}
