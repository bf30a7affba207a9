//! `echo`: completes with the job's variables, plus who handled it and when.

use jobhost_plugin::{Handler, Job, Outcome, Result};
use serde_json::{Map, Value};

struct Echo;

impl Handler for Echo {
    fn handle(job: Job) -> Result<Outcome> {
        let mut result: Map<String, Value> = job.variables()?;
        jobhost_plugin::log::info(&format!(
            "echoing {} variables of job {}",
            result.len(),
            job.key()
        ));
        println!("echo handled job {} (attempt {})", job.key(), job.attempt());
        result.insert("echoed_by".into(), Value::from("echo"));
        result.insert("attempt".into(), Value::from(job.attempt()));
        Ok(Outcome::complete(result))
    }
}

jobhost_plugin::export_handler!(Echo);
