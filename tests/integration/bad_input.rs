//! Bad requests get a precise status and change nothing.

use tonic::Code;

use crate::harness::*;

async fn job_count(client: &mut Client) -> i64 {
    let response = client
        .list_jobs(admin(ListJobsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    response.pagination.unwrap().total_count
}

/// A change that spoils a valid activation request.
type Spoil = Box<dyn Fn(&mut ActivateJobsRequest)>;

#[tokio::test]
async fn invalid_activation_requests_name_the_offending_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let cases: Vec<(Spoil, &str)> = vec![
        (Box::new(|r| r.r#type = "  ".into()), "type"),
        (Box::new(|r| r.worker = String::new()), "worker"),
        (Box::new(|r| r.timeout = -1), "timeout"),
        (
            Box::new(|r| r.max_jobs_to_activate = -1),
            "max_jobs_to_activate",
        ),
        (
            Box::new(|r| r.max_jobs_to_activate = 101),
            "max_jobs_to_activate",
        ),
        (Box::new(|r| r.tenant_ids = "bad tenant!".into()), "tenant"),
    ];
    for (change, field) in cases {
        let mut request = activate_request("t", "w");
        change(&mut request);
        let result = activate_with(&mut client, admin(request)).await;
        assert_code(result, Code::InvalidArgument, field);
    }
}

#[tokio::test]
async fn invalid_jobs_are_rejected_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let cases: Vec<(CreateJobRequest, &str)> = vec![
        (create_request("", "{}"), "type"),
        (create_request("t", "{not json"), "not valid JSON"),
        (create_request("t", "[1,2]"), "JSON object"),
        (create_request("t", "42"), "JSON object"),
        (
            CreateJobRequest {
                retries: Some(-1),
                ..create_request("t", "{}")
            },
            "retries",
        ),
        (
            CreateJobRequest {
                retries: Some(1_000_000),
                ..create_request("t", "{}")
            },
            "retries",
        ),
        (
            CreateJobRequest {
                tenant_id: "x".repeat(32),
                ..create_request("t", "{}")
            },
            "tenant",
        ),
        (
            CreateJobRequest {
                tenant_id: "a/b".into(),
                ..create_request("t", "{}")
            },
            "tenant",
        ),
        (
            CreateJobRequest {
                delay: -5,
                ..create_request("t", "{}")
            },
            "delay",
        ),
        (
            CreateJobRequest {
                delay: 5,
                run_at: 5,
                ..create_request("t", "{}")
            },
            "not both",
        ),
        (
            CreateJobRequest {
                custom_headers: (0..65).map(|i| (format!("h{i}"), "v".into())).collect(),
                ..create_request("t", "{}")
            },
            "at most 64 headers",
        ),
        (
            CreateJobRequest {
                custom_headers: [("big".to_string(), "v".repeat(5000))].into(),
                ..create_request("t", "{}")
            },
            "custom header 'big'",
        ),
        (
            create_request(
                "t",
                &format!("{}{}", "{\"a\":[".repeat(200), "]}".repeat(200)),
            ),
            "recursion limit",
        ),
    ];
    for (request, needle) in cases {
        assert_code(
            client.create_job(admin(request)).await,
            Code::InvalidArgument,
            needle,
        );
    }
    assert_eq!(job_count(&mut client).await, 0);
}

#[tokio::test]
async fn an_oversized_message_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let huge = format!(r#"{{"blob":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let status = client
        .create_job(admin(create_request("t", &huge)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{status:?}"
    );
    assert_eq!(job_count(&mut client).await, 0);
}

#[tokio::test]
async fn malformed_job_keys_are_invalid_arguments() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["", "abc", "1-x", "-3"] {
        assert_code(
            complete(&mut client, key).await,
            Code::InvalidArgument,
            "job",
        );
    }
}

#[tokio::test]
async fn absurd_failure_and_timeout_values_change_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "t", "{}").await;
    let leased = activate(&mut client, "t", "w", 1, 0)
        .await
        .remove(0)
        .job_key;
    let fail = FailJobRequest {
        job_key: leased.clone(),
        retries: 1,
        error_message: "x".into(),
        backoff_timeout: -1,
    };
    assert_code(
        client.fail_job(admin(fail)).await,
        Code::InvalidArgument,
        "backoff_timeout",
    );
    let timeout = UpdateJobTimeoutRequest {
        job_key: leased,
        timeout: 0,
    };
    assert_code(
        client.update_job_timeout(admin(timeout)).await,
        Code::InvalidArgument,
        "timeout",
    );
    let retries = UpdateJobRetriesRequest {
        job_key: key.clone(),
        retries: 0,
    };
    assert_code(
        client.update_job_retries(admin(retries)).await,
        Code::InvalidArgument,
        "retries",
    );
    let job = get(&mut client, &key).await;
    assert_eq!((job.state.as_str(), job.retries), ("activated", 3));
}

#[tokio::test]
async fn invalid_listing_parameters_are_rejected() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let cases = [
        (
            ListJobsRequest {
                state: "sleeping".into(),
                ..Default::default()
            },
            "state",
        ),
        (
            ListJobsRequest {
                page_size: 101,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListJobsRequest {
                sort_by: "name".into(),
                ..Default::default()
            },
            "sort_by",
        ),
        (
            ListJobsRequest {
                period: "2h".into(),
                ..Default::default()
            },
            "period",
        ),
        (
            ListJobsRequest {
                created_after: "yesterday".into(),
                ..Default::default()
            },
            "created_after",
        ),
    ];
    for (request, needle) in cases {
        assert_code(
            client.list_jobs(admin(request)).await,
            Code::InvalidArgument,
            needle,
        );
    }
}
