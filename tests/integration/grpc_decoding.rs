//! Request bytes that do not decode as the method's message are the caller's mistake: they are
//! refused with INVALID_ARGUMENT naming the message and field, and change nothing.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

use crate::harness::*;

/// Sends and receives message bodies as they are, so that a test can put any bytes on the wire.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// Calls a unary `JobsService` method with `body` as the request message; returns the outcome.
async fn call_unary(server: &TestServer, method: &str, body: Vec<u8>) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("channel ready");
    grpc.unary(admin(Bytes::from(body)), path(method), RawCodec)
        .await
        .map(|response| response.into_inner())
}

/// Calls `ActivateJobs` with `body` as the request message; returns the first failure, if any.
async fn call_activate(server: &TestServer, body: Vec<u8>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("channel ready");
    let mut stream = grpc
        .server_streaming(admin(Bytes::from(body)), path("ActivateJobs"), RawCodec)
        .await?
        .into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

fn path(method: &str) -> PathAndQuery {
    format!("/atom.jobs.v1.JobsService/{method}")
        .parse()
        .expect("valid path")
}

/// The key of field `number` with wire type `wire_type`.
fn key(number: u8, wire_type: u8) -> u8 {
    (number << 3) | wire_type
}

const VARINT: u8 = 0;
const LENGTH_DELIMITED: u8 = 2;

/// Bytes that are not UTF-8 as the value of CreateJobRequest's string field `type`.
fn create_with_invalid_utf8_type() -> Vec<u8> {
    vec![key(1, LENGTH_DELIMITED), 2, 0xff, 0xfe]
}

async fn job_count(server: &TestServer) -> i64 {
    let response = server
        .client()
        .await
        .list_jobs(admin(ListJobsRequest::default()))
        .await
        .expect("jobs listed")
        .into_inner();
    response.pagination.expect("pagination").total_count
}

#[tokio::test]
async fn invalid_utf8_in_a_string_field_is_an_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let result = call_unary(&server, "CreateJob", create_with_invalid_utf8_type()).await;
    let status = assert_code(result, Code::InvalidArgument, "CreateJobRequest.type");
    assert!(status.message().contains("UTF-8"), "{status:?}");
}

#[tokio::test]
async fn a_create_request_that_does_not_decode_stores_no_job() {
    let server = TestServer::start().await;
    let result = call_unary(&server, "CreateJob", create_with_invalid_utf8_type()).await;
    assert_code(result, Code::InvalidArgument, "CreateJobRequest");
    assert_eq!(job_count(&server).await, 0);
}

#[tokio::test]
async fn a_truncated_message_is_an_invalid_argument_naming_the_cut_field() {
    let server = TestServer::start().await;
    let mut body = CompleteJobRequest {
        job_key: "1-2".into(),
        variables: [("k".to_string(), "v".to_string())].into(),
    }
    .encode_to_vec();
    body.pop();
    let result = call_unary(&server, "CompleteJob", body).await;
    assert_code(
        result,
        Code::InvalidArgument,
        "CompleteJobRequest.variables",
    );
}

#[tokio::test]
async fn a_field_of_the_wrong_wire_type_is_an_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    // `retries` is an int32 (a varint); here it comes length-delimited.
    let body = vec![key(2, LENGTH_DELIMITED), 1, b'3'];
    let result = call_unary(&server, "FailJob", body).await;
    let status = assert_code(result, Code::InvalidArgument, "FailJobRequest.retries");
    assert!(status.message().contains("wire type"), "{status:?}");
}

#[tokio::test]
async fn an_overlong_varint_is_an_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    // A varint is at most ten bytes; this `timeout` has eleven.
    let mut body = vec![key(3, VARINT)];
    body.extend([0xff; 10]);
    body.push(0x01);
    let result = call_activate(&server, body).await;
    let status = assert_code(result, Code::InvalidArgument, "ActivateJobsRequest.timeout");
    assert!(status.message().contains("varint"), "{status:?}");
}

#[tokio::test]
async fn an_undecodable_field_key_is_an_invalid_argument_naming_the_message() {
    let server = TestServer::start().await;
    // Not even the field number can be read, so only the message can be named.
    let body = [0xff; 11].to_vec();
    let result = call_unary(&server, "GetJob", body).await;
    assert_code(result, Code::InvalidArgument, "GetJobRequest");
}
