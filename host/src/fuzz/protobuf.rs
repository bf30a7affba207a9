//! gRPC request bytes through the codec and the adapter: a message decodes or is refused as
//! INVALID_ARGUMENT naming it, and a decoded request is answered or refused precisely.

use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use tonic::{Code, Request, Status};

use super::*;
use crate::api::codec::decode;
use crate::api::grpc::GrpcJobs;
use crate::api::grpc::pb;
use crate::api::grpc::pb::jobs_service_server::JobsService;

/// A field's value as it goes on the wire.
#[derive(Clone, Debug)]
enum Wire {
    Varint(u64),
    Delimited(Vec<u8>),
    Fixed32(u32),
    Fixed64(u64),
}

/// One encoded field: mostly well-formed, with values a request might carry, sometimes with
/// a key no message has or a wire type its field does not take.
fn field() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        text_around(&[
            "1",
            "2",
            "3-1",
            "2-1",
            "t",
            "w",
            "default",
            "{}",
            r#"{"a":1}"#
        ]),
        any::<String>(),
    ];
    let value = prop_oneof![
        2 => any::<u64>().prop_map(Wire::Varint),
        2 => (-5i64..2000).prop_map(|v| Wire::Varint(v as u64)),
        3 => text.clone().prop_map(|t| Wire::Delimited(t.into_bytes())),
        1 => (text.clone(), text).prop_map(|(name, value)| {
            // A map entry: key 1, value 2.
            let mut entry = Vec::new();
            for (tag, part) in [(1, name), (2, value)] {
                encode_key(tag, WireType::LengthDelimited, &mut entry);
                encode_varint(part.len() as u64, &mut entry);
                entry.extend(part.into_bytes());
            }
            Wire::Delimited(entry)
        }),
        1 => any::<Vec<u8>>().prop_map(Wire::Delimited),
        1 => any::<u32>().prop_map(Wire::Fixed32),
        1 => any::<u64>().prop_map(Wire::Fixed64),
    ];
    prop_oneof![
        12 => (1u32..16, value).prop_map(|(tag, value)| {
            let mut bytes = Vec::new();
            match value {
                Wire::Varint(v) => {
                    encode_key(tag, WireType::Varint, &mut bytes);
                    encode_varint(v, &mut bytes);
                }
                Wire::Delimited(payload) => {
                    encode_key(tag, WireType::LengthDelimited, &mut bytes);
                    encode_varint(payload.len() as u64, &mut bytes);
                    bytes.extend(payload);
                }
                Wire::Fixed32(v) => {
                    encode_key(tag, WireType::ThirtyTwoBit, &mut bytes);
                    bytes.extend(v.to_le_bytes());
                }
                Wire::Fixed64(v) => {
                    encode_key(tag, WireType::SixtyFourBit, &mut bytes);
                    bytes.extend(v.to_le_bytes());
                }
            }
            bytes
        }),
        // Any key at all, groups and unknown wire types included.
        1 => (any::<u32>(), any::<Vec<u8>>()).prop_map(|(key, rest)| {
            let mut bytes = Vec::new();
            encode_varint(u64::from(key), &mut bytes);
            bytes.extend(rest);
            bytes
        }),
    ]
}

/// A few well-formed fields, one after the other.
fn fields() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(field(), 0..8).prop_map(|fields| fields.concat())
}

/// Bytes as a message might arrive: well-formed fields, the same damaged, or noise.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => fields(),
        3 => (fields(), mutations(3)).prop_map(|(mut bytes, damage)| {
            mutate(&mut bytes, &damage);
            bytes
        }),
        1 => any::<Vec<u8>>(),
    ]
}

/// Fails the case unless `bytes` decode as an `M` or are an INVALID_ARGUMENT naming `M`.
fn decodes_or_names<M: Message + Default>(name: &str, bytes: &[u8]) -> TestCaseResult {
    if let Err(status) = decode::<M>(bytes) {
        prop_assert_eq!(status.code(), Code::InvalidArgument);
        prop_assert!(
            status.message().starts_with(name),
            "{:?} does not start with {name}",
            status.message()
        );
    }
    Ok(())
}

#[test]
fn every_message_decodes_or_is_an_invalid_argument_naming_it() {
    fuzz(1024, message_bytes(), |bytes| {
        macro_rules! each {
            ($($message:ident),* $(,)?) => {
                $(decodes_or_names::<pb::$message>(stringify!($message), &bytes)?;)*
            };
        }
        each!(
            ActivateJobsRequest,
            ActivateJobsResponse,
            ActivatedJob,
            CompleteJobRequest,
            CompleteJobResponse,
            FailJobRequest,
            FailJobResponse,
            CreateJobRequest,
            CreateJobResponse,
            GetJobRequest,
            GetJobResponse,
            FailureRecord,
            AttemptRecord,
            Job,
            ListJobsRequest,
            Pagination,
            ListJobsResponse,
            UpdateJobRetriesRequest,
            UpdateJobRetriesResponse,
            UpdateJobTimeoutRequest,
            UpdateJobTimeoutResponse,
            CancelJobRequest,
            CancelJobResponse,
        );
        Ok(())
    });
}

/// The methods of `JobsService`.
#[derive(Clone, Copy, Debug)]
enum Method {
    ActivateJobs,
    CompleteJob,
    FailJob,
    CreateJob,
    GetJob,
    ListJobs,
    UpdateJobRetries,
    UpdateJobTimeout,
    CancelJob,
}

const METHODS: &[Method] = &[
    Method::ActivateJobs,
    Method::CompleteJob,
    Method::FailJob,
    Method::CreateJob,
    Method::GetJob,
    Method::ListJobs,
    Method::UpdateJobRetries,
    Method::UpdateJobTimeout,
    Method::CancelJob,
];

/// A request as the server hands it to the adapter: the admin's key, and a client deadline
/// so short that an activation answers at once instead of waiting.
fn request<M>(message: M) -> Request<M> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-api-key", ADMIN_KEY.parse().expect("ascii"));
    metadata.insert("grpc-timeout", "1m".parse().expect("ascii"));
    request
}

/// Decodes `bytes` as `method`'s request, as the server would, and calls the adapter with it.
async fn call(jobs: &GrpcJobs, method: Method, bytes: &[u8]) -> Result<(), Status> {
    match method {
        Method::ActivateJobs => {
            let mut stream = jobs
                .activate_jobs(request(decode(bytes)?))
                .await?
                .into_inner();
            while let Some(response) = futures::StreamExt::next(&mut stream).await {
                response?;
            }
        }
        Method::CompleteJob => drop(jobs.complete_job(request(decode(bytes)?)).await?),
        Method::FailJob => drop(jobs.fail_job(request(decode(bytes)?)).await?),
        Method::CreateJob => drop(jobs.create_job(request(decode(bytes)?)).await?),
        Method::GetJob => drop(jobs.get_job(request(decode(bytes)?)).await?),
        Method::ListJobs => drop(jobs.list_jobs(request(decode(bytes)?)).await?),
        Method::UpdateJobRetries => drop(jobs.update_job_retries(request(decode(bytes)?)).await?),
        Method::UpdateJobTimeout => drop(jobs.update_job_timeout(request(decode(bytes)?)).await?),
        Method::CancelJob => drop(jobs.cancel_job(request(decode(bytes)?)).await?),
    }
    Ok(())
}

#[test]
fn request_bytes_are_answered_or_refused_precisely() {
    let fixture = Fixture::new();
    for _ in 0..3 {
        fixture.create("{}");
    }
    let jobs = GrpcJobs::new(fixture.service.clone());
    let method = proptest::sample::select(METHODS);
    fuzz(512, (method, message_bytes()), |(method, bytes)| {
        let answer = fixture.block_on(call(&jobs, method, &bytes));
        if let Err(status) = answer {
            prop_assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
                ),
                "{status:?}"
            );
            prop_assert!(!status.message().is_empty());
        }
        Ok(())
    });
}
