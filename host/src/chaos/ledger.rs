//! What the clients of a chaos run were told (every acknowledged create and completion) and
//! the judgement of the store's jobs against it once the crashes are over.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::api::grpc::pb;

/// Problems described in a tally; the counters hold the rest.
const MAX_PROBLEMS: usize = 20;

/// Which worker is meant to complete a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Leased and completed by the run's gRPC workers.
    External,
    /// Completed by the `echo` Wasm handler.
    Echo,
}

impl Kind {
    pub fn job_type(self) -> &'static str {
        match self {
            Kind::External => super::EXTERNAL_TYPE,
            Kind::Echo => super::ECHO_TYPE,
        }
    }
}

/// A create the server acknowledged.
#[derive(Clone, Debug)]
pub(super) struct Created {
    pub kind: Kind,
    pub seq: u64,
    pub variables: String,
}

#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub creates_sent: u64,
    pub creates_acknowledged: u64,
    /// By bare job key.
    created: HashMap<String, Created>,
    reused_keys: Vec<String>,
    pub completions_sent: u64,
    /// Results sent in CompleteJob calls by bare job key, acknowledged or not: a job completed
    /// without an acknowledgement must still have one of them.
    sent_results: HashMap<String, Vec<Value>>,
    /// Acknowledged results by bare job key; more than one is a double completion.
    completed: HashMap<String, Vec<Value>>,
    /// Completions refused because the lease was no longer the job's (the fencing at work).
    pub completions_refused: u64,
    pub late_completions: u64,
    /// Jobs whose completion was acknowledged although sent after its lease had expired.
    stale_accepted: Vec<String>,
    /// Jobs handed out again after a completion of theirs was acknowledged.
    reactivated: Vec<String>,
}

impl Ledger {
    pub fn acknowledged_create(&mut self, key: String, created: Created) {
        self.creates_acknowledged += 1;
        match self.created.entry(key) {
            Entry::Occupied(taken) => self.reused_keys.push(taken.key().clone()),
            Entry::Vacant(free) => {
                free.insert(created);
            }
        }
    }

    pub fn activated(&mut self, key: &str) {
        if self.completed.contains_key(key) {
            self.reactivated.push(key.to_string());
        }
    }

    pub fn stale_accepted(&mut self, key: &str) {
        self.stale_accepted.push(key.to_string());
    }

    pub fn sending_completion(&mut self, key: &str, result: Value) {
        self.completions_sent += 1;
        self.sent_results
            .entry(key.to_string())
            .or_default()
            .push(result);
    }

    pub fn acknowledged_completion(&mut self, key: &str, result: Value) {
        self.completed
            .entry(key.to_string())
            .or_default()
            .push(result);
    }

    /// Every job something was acknowledged about.
    pub fn keys(&self) -> BTreeSet<String> {
        self.created
            .keys()
            .chain(self.completed.keys())
            .cloned()
            .collect()
    }

    /// Judges the jobs as the server now reports them (by bare key; absent: unknown to it).
    pub fn judge(&self, found: &HashMap<String, pb::Job>) -> Tally {
        let mut tally = Tally {
            creates_acknowledged: self.creates_acknowledged,
            completions_acknowledged: self.completed.values().map(|acks| acks.len() as u64).sum(),
            reused_keys: self.reused_keys.len() as u64,
            stale_accepted: self.stale_accepted.len() as u64,
            ..Tally::default()
        };
        let mut twice: BTreeSet<&str> = BTreeSet::new();
        for key in &self.reused_keys {
            tally.note(format!(
                "job key {key} was returned by two acknowledged creates"
            ));
        }
        for key in &self.stale_accepted {
            tally.note(format!(
                "a completion of job {key} was acknowledged after its lease had expired"
            ));
        }
        for key in &self.reactivated {
            tally.note(format!(
                "job {key} was handed out again after its completion was acknowledged"
            ));
            twice.insert(key);
        }
        for key in self.keys() {
            let created = self.created.get(&key);
            if created.is_some_and(|c| c.kind == Kind::Echo) {
                tally.echo_acknowledged += 1;
            }
            let Some(job) = found.get(&key) else {
                tally.lost += 1;
                tally.note(format!(
                    "job {key} was acknowledged but the server does not know it"
                ));
                continue;
            };
            if let Some(created) = created {
                if job.r#type == created.kind.job_type()
                    && same_json(&job.variables, &created.variables)
                {
                    tally.creates_found += 1;
                } else {
                    tally.altered += 1;
                    tally.note(format!(
                        "job {key} is a {} job with {}, not the {} job with {} created",
                        job.r#type,
                        job.variables,
                        created.kind.job_type(),
                        created.variables
                    ));
                }
            }
            if job.state != "completed" {
                tally.stuck += 1;
                tally.note(format!("job {key} is {} after the drain", job.state));
                continue;
            }
            let result: Value = serde_json::from_str(&job.result_variables).unwrap_or_default();
            if let Some(Created {
                kind: Kind::Echo,
                seq,
                ..
            }) = created
            {
                let completing = job
                    .attempts
                    .iter()
                    .filter(|a| a.outcome == "completed")
                    .count();
                if completing > 1 {
                    tally.note(format!("job {key} has {completing} completing attempts"));
                    twice.insert(job.job_key.as_str());
                }
                if result["seq"] == *seq && result["echoed_by"] == "echo" {
                    tally.echo_completed += 1;
                } else {
                    tally.wrong_results += 1;
                    tally.note(format!("echo job {key} completed with {result}"));
                }
                continue;
            }
            let acks = self.completed.get(&key).map_or(&[][..], Vec::as_slice);
            if acks.len() > 1 {
                tally.note(format!(
                    "job {key} has {} acknowledged completions",
                    acks.len()
                ));
                twice.insert(job.job_key.as_str());
            }
            let confirmed = acks.iter().filter(|ack| **ack == result).count() as u64;
            tally.completions_confirmed += confirmed;
            let sent = self.sent_results.get(&key).map_or(&[][..], Vec::as_slice);
            let wrong = if acks.is_empty() {
                !sent.contains(&result)
            } else {
                confirmed == 0
            };
            if wrong {
                tally.wrong_results += 1;
                tally.note(format!(
                    "job {key} completed with {result}; acknowledged: {acks:?}"
                ));
            }
        }
        tally.completed_twice = twice.len() as u64;
        tally
    }
}

/// Equal as JSON (key order and spacing aside).
fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The outcome of a chaos run's checks.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Creates the server acknowledged.
    pub creates_acknowledged: u64,
    /// Of them, jobs found with the type and variables sent.
    pub creates_found: u64,
    /// Acknowledged creates of `echo` jobs.
    pub echo_acknowledged: u64,
    /// Of them, jobs the Wasm handler completed, echoing their own variables.
    pub echo_completed: u64,
    /// Completions the server acknowledged.
    pub completions_acknowledged: u64,
    /// Of them, those whose job is completed with exactly the result acknowledged.
    pub completions_confirmed: u64,
    /// Jobs completed more than once: two acknowledged completions, two completing Wasm
    /// attempts, or handed out again after an acknowledged completion.
    pub completed_twice: u64,
    /// Completed jobs whose result is not the acknowledged one (or, with none acknowledged,
    /// not one any worker sent).
    pub wrong_results: u64,
    /// Acknowledged jobs found with another type or other variables than those created.
    pub altered: u64,
    /// Acknowledged jobs not completed when the drain ended.
    pub stuck: u64,
    /// Acknowledged jobs the server does not know.
    pub lost: u64,
    /// Job keys returned by two acknowledged creates.
    pub reused_keys: u64,
    /// Completions acknowledged although sent after their lease had expired.
    pub stale_accepted: u64,
    /// The first failures, described.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn is_clean(&self) -> bool {
        self.completed_twice == 0
            && self.wrong_results == 0
            && self.altered == 0
            && self.stuck == 0
            && self.lost == 0
            && self.reused_keys == 0
            && self.stale_accepted == 0
            && self.creates_found == self.creates_acknowledged
            && self.completions_confirmed == self.completions_acknowledged
            && self.echo_completed == self.echo_acknowledged
    }

    fn note(&mut self, problem: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn external(seq: u64) -> Created {
        Created {
            kind: Kind::External,
            seq,
            variables: json!({ "seq": seq }).to_string(),
        }
    }

    fn echo(seq: u64) -> Created {
        Created {
            kind: Kind::Echo,
            seq,
            variables: json!({ "seq": seq }).to_string(),
        }
    }

    fn job(key: &str, created: &Created, state: &str, result: Value) -> pb::Job {
        pb::Job {
            job_key: key.into(),
            r#type: created.kind.job_type().into(),
            state: state.into(),
            variables: created.variables.clone(),
            result_variables: result.to_string(),
            ..Default::default()
        }
    }

    fn found(jobs: Vec<pb::Job>) -> HashMap<String, pb::Job> {
        jobs.into_iter().map(|j| (j.job_key.clone(), j)).collect()
    }

    fn by(worker: &str) -> Value {
        json!({ "worker": worker })
    }

    #[test]
    fn acknowledged_jobs_completed_with_their_acknowledged_results_are_clean() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.sending_completion("1", by("a"));
        ledger.acknowledged_completion("1", by("a"));
        ledger.acknowledged_create("2".into(), echo(2));
        let echoed = json!({ "seq": 2, "echoed_by": "echo", "attempt": 1 });
        let tally = ledger.judge(&found(vec![
            job("1", &external(1), "completed", by("a")),
            job("2", &echo(2), "completed", echoed),
        ]));
        assert!(tally.is_clean(), "{tally:?}");
        assert_eq!(
            (
                tally.creates_found,
                tally.completions_confirmed,
                tally.echo_completed
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn a_completion_whose_reply_was_lost_may_stand_if_a_worker_sent_it() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.sending_completion("1", by("a"));
        let tally = ledger.judge(&found(vec![job("1", &external(1), "completed", by("a"))]));
        assert!(tally.is_clean(), "{tally:?}");
        let tally = ledger.judge(&found(vec![job("1", &external(1), "completed", by("z"))]));
        assert_eq!(tally.wrong_results, 1);
    }

    #[test]
    fn a_missing_job_is_lost_and_an_unfinished_one_is_stuck() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.acknowledged_create("2".into(), external(2));
        let tally = ledger.judge(&found(vec![job(
            "2",
            &external(2),
            "activated",
            json!(null),
        )]));
        assert_eq!((tally.lost, tally.stuck), (1, 1));
        assert!(!tally.is_clean());
        assert_eq!(tally.problems.len(), 2);
    }

    #[test]
    fn another_result_than_the_acknowledged_one_is_wrong() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.sending_completion("1", by("a"));
        ledger.acknowledged_completion("1", by("a"));
        ledger.sending_completion("1", by("b"));
        let tally = ledger.judge(&found(vec![job("1", &external(1), "completed", by("b"))]));
        assert_eq!((tally.wrong_results, tally.completions_confirmed), (1, 0));
    }

    #[test]
    fn two_acknowledged_completions_or_a_handout_after_one_are_double_completions() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.acknowledged_completion("1", by("a"));
        ledger.acknowledged_completion("1", by("b"));
        let tally = ledger.judge(&found(vec![job("1", &external(1), "completed", by("a"))]));
        assert_eq!(tally.completed_twice, 1);

        let mut ledger = Ledger::default();
        ledger.acknowledged_completion("2", by("a"));
        ledger.activated("2");
        let tally = ledger.judge(&found(vec![job("2", &external(2), "completed", by("a"))]));
        assert_eq!(tally.completed_twice, 1);
    }

    #[test]
    fn a_completion_acknowledged_after_its_lease_expired_fails_the_check() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.sending_completion("1", by("a"));
        ledger.stale_accepted("1");
        ledger.acknowledged_completion("1", by("a"));
        let tally = ledger.judge(&found(vec![job("1", &external(1), "completed", by("a"))]));
        assert_eq!(tally.stale_accepted, 1);
        assert!(!tally.is_clean());
    }

    #[test]
    fn an_echo_job_completed_by_two_attempts_is_completed_twice() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), echo(1));
        let mut done = job(
            "1",
            &echo(1),
            "completed",
            json!({ "seq": 1, "echoed_by": "echo" }),
        );
        let completing = pb::AttemptRecord {
            outcome: "completed".into(),
            ..Default::default()
        };
        done.attempts = vec![completing.clone(), completing];
        assert_eq!(ledger.judge(&found(vec![done])).completed_twice, 1);
    }

    #[test]
    fn a_key_returned_twice_or_a_job_with_other_variables_fails_the_check() {
        let mut ledger = Ledger::default();
        ledger.acknowledged_create("1".into(), external(1));
        ledger.acknowledged_create("1".into(), external(2));
        ledger.sending_completion("1", by("a"));
        let tally = ledger.judge(&found(vec![job("1", &external(1), "completed", by("a"))]));
        assert_eq!(tally.reused_keys, 1);
        assert!(!tally.is_clean());
        let tally = ledger.judge(&found(vec![job("1", &external(9), "completed", by("a"))]));
        assert_eq!(tally.altered, 1);
    }
}
