//! `fanout`: completes and, in the same atomic write, creates `count` jobs of type `next_type`,
//! each with its index. Its status is "fanned-out". With `once` (a string), follow-up `index` is
//! created under the idempotency key `{once}-{index}`: parents that share `once` create each
//! follow-up once between them.

use jobhost_plugin::{FollowUp, Handler, Job, Outcome, Result};
use serde_json::json;

struct Fanout;

impl Handler for Fanout {
    fn handle(job: Job) -> Result<Outcome> {
        let next_type: String = job.variable("next_type")?;
        let count: u32 = job.variable("count")?;
        let mut completion = Outcome::completion(json!({ "created": count })).status("fanned-out");
        let once: Option<String> = job.variable("once").ok();
        for index in 0..count {
            let mut follow_up = FollowUp::new(
                next_type.clone(),
                json!({ "index": index, "parent": job.key() }),
            );
            if let Some(once) = &once {
                follow_up = follow_up.idempotency_key(format!("{once}-{index}"));
            }
            completion = completion.with(follow_up);
        }
        Ok(completion.into())
    }
}

jobhost_plugin::export_handler!(Fanout);
