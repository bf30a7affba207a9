//! Handler uploads: bytes that are not a handler component are refused before anything is
//! stored, a damaged real component is refused or still works, and limits are checked.

use proptest::prelude::*;

use super::*;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::service::handlers::{Deployment, HandlerMaxima, HandlerRegistry};

/// The bytes of the example handler `echo`, built from `plugins/`.
fn echo() -> Vec<u8> {
    let path = std::path::Path::new(env!("JOBHOST_PLUGINS_DIR")).join("echo.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A registry on the fixture's store, caching compiled code in `cache`.
fn registry(fixture: &Fixture, cache: &std::path::Path) -> HandlerRegistry {
    let maxima = HandlerMaxima::default();
    let runtime = Runtime::new(RuntimeConfig {
        max_memory_mb: maxima.memory_mb,
        max_concurrent_attempts: 1,
        cache_dir: Some(cache.to_path_buf()),
    })
    .expect("runtime");
    let quotas = Quotas::default();
    let opened = HandlerRegistry::open(
        fixture.store.clone(),
        Arc::new(runtime),
        maxima,
        &quotas,
        Default::default(),
    );
    fixture.block_on(opened).expect("registry")
}

fn deployment(component: Vec<u8>) -> Deployment {
    Deployment {
        job_type: "fuzzed".into(),
        component,
        ..Deployment::default()
    }
}

/// Bytes that are no handler: noise, and noise behind the headers of a component and of a
/// core module, so that parsing gets past the first bytes.
fn not_a_component() -> impl Strategy<Value = Vec<u8>> {
    let after = |header: &'static [u8]| {
        prop::collection::vec(any::<u8>(), 0..512).prop_map(move |rest| [header, &rest].concat())
    };
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        after(b"\0asm\x0d\0\x01\0"),
        after(b"\0asm\x01\0\0\0"),
    ]
}

#[test]
fn bytes_that_are_not_a_component_are_refused_and_nothing_is_stored() {
    let fixture = Fixture::new();
    let cache = tempfile::tempdir().expect("cache dir");
    let registry = registry(&fixture, cache.path());
    fuzz(256, not_a_component(), |bytes| {
        let deployed = fixture.block_on(registry.deploy(&Principal::admin(), deployment(bytes)));
        prop_assert!(
            matches!(deployed, Err(ServiceError::InvalidArgument(_))),
            "{:?}",
            deployed.map(|handler| handler.record.id.clone())
        );
        prop_assert!(registry.snapshot().is_empty());
        Ok(())
    });
}

#[test]
fn a_damaged_component_is_refused_or_still_deploys() {
    let fixture = Fixture::new();
    let cache = tempfile::tempdir().expect("cache dir");
    let registry = registry(&fixture, cache.path());
    let original = echo();
    fuzz(24, mutations(4), |damage| {
        let mut bytes = original.clone();
        mutate(&mut bytes, &damage);
        let deployed = fixture.block_on(registry.deploy(&Principal::admin(), deployment(bytes)));
        prop_assert!(
            matches!(deployed, Ok(_) | Err(ServiceError::InvalidArgument(_))),
            "{:?}",
            deployed.map(|handler| handler.record.id.clone())
        );
        Ok(())
    });
}

#[test]
fn deployment_limits_are_accepted_within_the_maxima_or_refused_naming_the_limit() {
    let fixture = Fixture::new();
    let cache = tempfile::tempdir().expect("cache dir");
    let registry = registry(&fixture, cache.path());
    let component = echo();
    let small = || prop::option::of(prop_oneof![0u32..300, any::<u32>()]);
    let large = || prop::option::of(prop_oneof![0u64..2_000_000, any::<u64>()]);
    let limits = (
        (small(), large(), small(), small()),
        (large(), large(), large()),
        text_around(&["", "default", "acme", "bad tenant!"]),
    );
    fuzz(
        64,
        limits,
        |((memory, timeout, concurrency, retries), (backoff, cap, fuel), tenant)| {
            let upload = Deployment {
                tenant_id: tenant,
                memory_mb: memory,
                timeout_ms: timeout,
                max_concurrency: concurrency,
                max_retries: retries,
                backoff_ms: backoff,
                backoff_cap_ms: cap,
                fuel,
                ..deployment(component.clone())
            };
            let deployed = fixture.block_on(registry.deploy(&Principal::admin(), upload));
            assert_ok_or_invalid(
                &deployed.map(|handler| handler.record.id.clone()),
                &[
                    "tenant",
                    "memory_mb",
                    "timeout_ms",
                    "max_concurrency",
                    "max_retries",
                    "backoff_ms",
                    "backoff_cap_ms",
                    "fuel",
                ],
            )
        },
    );
}
