//! Fuzz targets on the stable toolchain: property tests that feed arbitrary and mutated input
//! to everything that parses what callers send, each asserting that the answer is a success or
//! a precise invalid-argument error, and never a panic. A few cases each run under `./test`;
//! `docs/fuzzing.md` tells how to run millions.
//!
//! An input a target once failed on is kept as a plain test beside it.

mod components;
mod listing;
mod protobuf;
mod schedules;
mod variables;

use std::fmt::Debug;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::clock::SystemClock;
use crate::quota::Quotas;
use crate::service::handlers::HandlerMaxima;
use crate::service::{ApiKeys, CreateJob, HandlerRegistry, JobService, ServiceError, ServiceParts};
use crate::store::{JobStore, SledStore};

/// The admin key of a fixture's service.
const ADMIN_KEY: &str = "fuzz-admin-key";

/// The seed of the short runs, so that `./test` tries the same inputs every time.
const DEFAULT_SEED: u64 = 0x6a6f_6268_6f73_7421;

/// A target's settings: `default_cases` cases unless `JOBHOST_FUZZ_CASES` says how many, from
/// a fixed seed unless `JOBHOST_FUZZ_SEED` names one (a number, or `random`).
fn config(default_cases: u32) -> Config {
    let cases = std::env::var("JOBHOST_FUZZ_CASES")
        .ok()
        .map(|text| text.parse().expect("JOBHOST_FUZZ_CASES is a number"))
        .unwrap_or(default_cases);
    let rng_seed = match std::env::var("JOBHOST_FUZZ_SEED").as_deref() {
        Err(_) => RngSeed::Fixed(DEFAULT_SEED),
        Ok("random") => RngSeed::Random,
        Ok(seed) => RngSeed::Fixed(
            seed.parse()
                .expect("JOBHOST_FUZZ_SEED is a number or `random`"),
        ),
    };
    Config {
        cases,
        rng_seed,
        // A failing input is kept as a named test, not in a file of seeds.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `test` on inputs drawn from `strategy`; a failure reports the smallest failing input
/// found.
fn fuzz<S>(default_cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let mut runner = TestRunner::new(config(default_cases));
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{error}");
    }
}

/// A job service on a fresh store, with the runtime its async calls run on.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    service: Arc<JobService>,
    store: Arc<dyn JobStore>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn JobStore> = Arc::new(SledStore::open(dir.path()).expect("store"));
        let keys = runtime
            .block_on(ApiKeys::load(
                store.clone(),
                Some(ADMIN_KEY),
                None,
                Default::default(),
            ))
            .expect("keys");
        let (stop, shutdown) = watch::channel(false);
        let sandbox = crate::runtime::Runtime::new(crate::runtime::RuntimeConfig {
            max_memory_mb: 16,
            max_concurrent_attempts: 1,
            cache_dir: None,
        })
        .expect("runtime");
        let handlers = runtime
            .block_on(HandlerRegistry::open(
                store.clone(),
                Arc::new(sandbox),
                HandlerMaxima::default(),
                &Quotas::default(),
                Default::default(),
            ))
            .expect("handlers");
        let service = Arc::new(JobService::new(
            store.clone(),
            ServiceParts {
                keys: Arc::new(keys),
                handlers: Arc::new(handlers),
                shutdown,
                clock: Arc::new(SystemClock),
                signals: crate::signals::Signals::default(),
                quotas: Quotas::default(),
                capabilities: crate::service::capabilities::CapabilitySource::new(
                    store.clone(),
                    Arc::new(crate::secrets::SecretBox::new([0; 32])),
                    Default::default(),
                    Default::default(),
                    Arc::default(),
                ),
                secret_box: Arc::new(crate::secrets::SecretBox::new([0; 32])),
            },
        ));
        Fixture {
            runtime,
            service,
            store,
            _stop: stop,
            _dir: dir,
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Creates a job of type `t` with these variables; returns its key.
    fn create(&self, variables: &str) -> String {
        let request = CreateJob {
            job_type: "t".into(),
            variables: variables.into(),
            ..CreateJob::default()
        };
        self.block_on(self.service.create_job(&Principal::admin(), request))
            .expect("job created")
            .to_string()
    }
}

/// Fails the case unless `result` is a success or an invalid argument that mentions one of
/// `names` (the fields a request can get wrong).
fn assert_ok_or_invalid<T: Debug>(
    result: &Result<T, ServiceError>,
    names: &[&str],
) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(ServiceError::InvalidArgument(message)) => {
            prop_assert!(
                names.iter().any(|name| message.contains(name)),
                "{message:?} names none of {names:?}"
            );
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "expected success or an invalid argument, got {other:?}"
        ))),
    }
}

/// Text that is sometimes one of `known` (what a parser accepts), sometimes a near miss and
/// sometimes anything at all.
fn text_around(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    let known = proptest::sample::select(known);
    prop_oneof![
        3 => known.clone().prop_map(str::to_string),
        2 => (known, any::<char>(), any::<prop::sample::Index>()).prop_map(|(text, c, at)| {
            let mut text = text.to_string();
            let at = at.index(text.chars().count() + 1);
            let byte = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
            text.insert(byte, c);
            text
        }),
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

/// Damage done to some bytes: how input goes wrong in transit or by hand.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
}

fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), 1..=u8::MAX).prop_map(|(at, x)| Mutation::Flip(at, x)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
    ];
    prop::collection::vec(one, 1..=max)
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        match mutation {
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
            Mutation::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
            Mutation::Flip(at, mask) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            Mutation::Remove(at) if !bytes.is_empty() => {
                bytes.remove(at.index(bytes.len()));
            }
            Mutation::Flip(..) | Mutation::Remove(_) => {}
        }
    }
}

/// Text damaged byte-wise, with what is no longer UTF-8 replaced.
fn mutate_text(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    mutate(&mut bytes, mutations);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Any JSON value, up to a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}
