//! Durability: what was acknowledged survives a restart and `kill -9`.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn jobs_and_their_states_survive_a_graceful_restart() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let done = create(&mut client, "t", r#"{"n":1}"#).await;
    let waiting = create(&mut client, "t", r#"{"n":2}"#).await;
    let leased = activate(&mut client, "t", "w", 1, 0)
        .await
        .remove(0)
        .job_key;
    complete(&mut client, &leased).await.unwrap();
    server.restart().await;
    let mut client = server.client().await;
    assert_eq!(get(&mut client, &done).await.state, "completed");
    let job = get(&mut client, &waiting).await;
    assert_eq!(
        (job.state.as_str(), job.variables.as_str()),
        ("activatable", r#"{"n":2}"#)
    );
    let jobs = activate(&mut client, "t", "w", 10, 0).await;
    assert_eq!(jobs.len(), 1);
}

#[tokio::test]
async fn every_acknowledged_change_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let client = connect(&process.grpc_url).await;

    // Concurrent creators, so that acknowledgements share group commits.
    let mut creators = Vec::new();
    for n in 0..8 {
        let mut client = client.clone();
        creators.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for i in 0..25 {
                keys.push(create(&mut client, "durable", &format!(r#"{{"n":{n},"i":{i}}}"#)).await);
            }
            keys
        }));
    }
    let mut expected: HashMap<String, &str> = HashMap::new();
    for creator in creators {
        for key in creator.await.unwrap() {
            expected.insert(key, "activatable");
        }
    }
    let mut client = client.clone();
    let leased = activate(&mut client, "durable", "w", 60, 600_000).await;
    for (n, job) in leased.iter().enumerate() {
        let id = job.job_key.split('-').next().unwrap().to_string();
        let state = match n % 3 {
            0 => {
                complete(&mut client, &job.job_key).await.unwrap();
                "completed"
            }
            1 => {
                let fail = FailJobRequest {
                    job_key: job.job_key.clone(),
                    retries: 0,
                    error_message: "gone".into(),
                    backoff_timeout: 0,
                };
                client.fail_job(admin(fail)).await.unwrap();
                "failed"
            }
            _ => "activated",
        };
        expected.insert(id, state);
    }
    process.kill_9();

    let process = ServerProcess::start(dir.path());
    let mut client = connect(&process.grpc_url).await;
    for (key, state) in &expected {
        assert_eq!(get(&mut client, key).await.state, *state, "job {key}");
    }
    let more = create(&mut client, "durable", "{}").await;
    assert!(!expected.contains_key(&more), "a job key was reused");
}

#[tokio::test]
async fn leases_that_expired_while_the_server_was_down_are_activatable_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let mut client = connect(&process.grpc_url).await;
    let key = create(&mut client, "t", "{}").await;
    activate(&mut client, "t", "w", 1, 300).await;
    process.kill_9();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let process = ServerProcess::start(dir.path());
    let mut client = connect(&process.grpc_url).await;
    let job = wait_for_state(&mut client, &key, "activatable").await;
    assert_eq!(job.retries, 3);
    assert_eq!(activate(&mut client, "t", "w2", 1, 0).await.len(), 1);
}
