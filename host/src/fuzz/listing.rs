//! Listing parameters as the REST API receives them (text), times and job keys: a page, or a
//! refusal that names the parameter.

use proptest::prelude::*;

use super::*;
use crate::service::{ListJobs, parse_time};

/// An RFC 3339 time and the instant it names, from year 1 to 9999 in any whole-minute offset.
fn rfc3339_time() -> impl Strategy<Value = (String, i64)> {
    use time::format_description::well_known::Rfc3339;
    let instants = -62_135_596_800_000i64..253_402_300_800_000;
    (instants, -1439i32..=1439).prop_filter_map("outside RFC 3339's years", |(ms, minutes)| {
        let offset = time::UtcOffset::from_whole_seconds(minutes * 60).ok()?;
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()?
            .to_offset(offset);
        Some((at.format(&Rfc3339).ok()?, ms))
    })
}

/// What a caller may write for a time: epoch ms, RFC 3339, either damaged, or anything.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|ms| ms.to_string()),
        rfc3339_time().prop_map(|(text, _)| text),
        (rfc3339_time(), mutations(2)).prop_map(|((text, _), damage)| mutate_text(&text, &damage)),
        "[0-9]{19,24}",
        any::<String>(),
    ]
}

fn listing_request() -> impl Strategy<Value = ListJobs> {
    let states: &'static [&'static str] = &[
        "pending",
        "activatable",
        "activated",
        "running",
        "completed",
        "failed",
        "cancelled",
        " Failed ",
    ];
    let text = |known: &'static [&'static str]| prop::option::of(text_around(known));
    let number =
        |plausible: std::ops::Range<i64>| prop::option::of(prop_oneof![plausible, any::<i64>()]);
    (
        (
            text(states),
            text(&["t", "u"]),
            text(&["w"]),
            text(&["p-1"]),
            text(&["e"]),
            text(&["default", "acme", "bad tenant!"]),
        ),
        (
            prop::option::of(time_text()),
            prop::option::of(time_text()),
            text(&["1h", "24h", "7d", "30d", "all"]),
            number(-2..5),
            number(-2..105),
            text(&["created_at", "activated_at", "deadline"]),
            text(&["ASC", "DESC", "asc"]),
        ),
    )
        .prop_map(
            |(
                (state, job_type, worker, process_instance_id, element_id, tenant_id),
                (created_after, created_before, period, page, page_size, sort_by, sort_order),
            )| ListJobs {
                state,
                job_type,
                worker,
                process_instance_id,
                element_id,
                tenant_id,
                created_after,
                created_before,
                period,
                page,
                page_size,
                sort_by,
                sort_order,
            },
        )
}

#[test]
fn listings_answer_a_page_or_name_the_bad_parameter() {
    let fixture = Fixture::new();
    for _ in 0..25 {
        fixture.create("{}");
    }
    fuzz(256, listing_request(), |request| {
        let listed = fixture.block_on(fixture.service.list_jobs(&Principal::admin(), request));
        assert_ok_or_invalid(
            &listed,
            &[
                "state",
                "tenant_id",
                "created_after",
                "created_before",
                "period",
                "page",
                "page_size",
                "sort_by",
                "sort_order",
            ],
        )?;
        if let Ok(page) = listed {
            prop_assert!((1..=100).contains(&page.page_size), "{}", page.page_size);
            prop_assert!(page.jobs.len() <= page.page_size as usize);
            prop_assert!(page.jobs.len() as u64 <= page.total_count);
        }
        Ok(())
    });
}

#[test]
fn times_are_epoch_ms_or_rfc3339_or_refused_naming_the_field() {
    fuzz(1024, time_text(), |text| {
        assert_ok_or_invalid(&parse_time("created_after", &text), &["created_after"])
    });
}

#[test]
fn rfc3339_times_read_as_the_instant_they_name() {
    fuzz(1024, rfc3339_time(), |(text, ms)| {
        prop_assert_eq!(parse_time("created_after", &text), Ok(ms));
        Ok(())
    });
}

#[test]
fn job_keys_find_a_job_or_are_refused() {
    let fixture = Fixture::new();
    fixture.create("{}");
    let keys = prop_oneof![
        text_around(&["1", "2", "1-1", "0"]),
        "[0-9]{1,25}(-[0-9]{1,12})?",
        any::<String>(),
    ];
    fuzz(512, keys, |key| {
        match fixture.block_on(fixture.service.get_job(&Principal::admin(), &key)) {
            Ok(_) | Err(ServiceError::NotFound(_)) => {}
            Err(ServiceError::InvalidArgument(message)) => {
                prop_assert!(message.contains("job"), "{message:?}")
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
        Ok(())
    });
}
