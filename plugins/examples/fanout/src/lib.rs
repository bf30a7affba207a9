//! `fanout`: completes and, in the same atomic write, creates `count` jobs of type `next_type`,
//! each with its index. Its status is "fanned-out".

use jobhost_plugin::{Handler, Job, Outcome, Result};
use serde_json::json;

struct Fanout;

impl Handler for Fanout {
    fn handle(job: Job) -> Result<Outcome> {
        let next_type: String = job.variable("next_type")?;
        let count: u32 = job.variable("count")?;
        let mut completion = Outcome::completion(json!({ "created": count })).status("fanned-out");
        for index in 0..count {
            completion = completion.follow_up(
                next_type.clone(),
                json!({ "index": index, "parent": job.key() }),
            );
        }
        Ok(completion.into())
    }
}

jobhost_plugin::export_handler!(Fanout);
