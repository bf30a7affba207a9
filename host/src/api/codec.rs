//! The protobuf codec of the generated gRPC server and client: prost's wire format, with a
//! message that does not decode answered as INVALID_ARGUMENT naming its message and field.
//!
//! tonic's own prost codec answers INTERNAL for every decoding error, which tells a caller who
//! sent bad bytes that the server is broken.

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes `E` and decodes `D`; `build.rs` names it as the codec of every generated method.
pub struct ProtoCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for ProtoCodec<E, D> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

impl<E, D> Codec for ProtoCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProtoEncoder<E>;
    type Decoder = ProtoDecoder<D>;

    fn encoder(&mut self) -> ProtoEncoder<E> {
        ProtoEncoder(PhantomData)
    }

    fn decoder(&mut self) -> ProtoDecoder<D> {
        ProtoDecoder(PhantomData)
    }
}

pub struct ProtoEncoder<E>(PhantomData<fn(E)>);

impl<E: Message> Encoder for ProtoEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // The buffer grows on demand, so this cannot fail; if it ever did, it is ours to fix.
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding {}: {e}", message_name::<E>())))
    }
}

pub struct ProtoDecoder<D>(PhantomData<fn() -> D>);

impl<D: Message + Default> Decoder for ProtoDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        decode(buf).map(Some)
    }
}

/// Decodes one `M` from `bytes`; bytes that are not an `M` are an INVALID_ARGUMENT whose message
/// starts with the message name and, when known, the field (`CreateJobRequest.type: …`).
pub fn decode<M: Message + Default>(bytes: impl Buf) -> Result<M, Status> {
    M::decode(bytes).map_err(|error| Status::invalid_argument(describe::<M>(&error)))
}

fn describe<M>(error: &prost::DecodeError) -> String {
    let text = error.to_string();
    // prost's text has a fixed preamble and names fields as Rust identifiers (`r#type`); the
    // caller knows them by their proto names.
    let detail = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text)
        .replace(".r#", ".");
    let name = message_name::<M>();
    // prost names the message and field only when a field's value is at fault.
    if detail.starts_with(&format!("{name}.")) {
        detail
    } else {
        format!("{name}: {detail}")
    }
}

/// The message's proto name, e.g. `CreateJobRequest` (prost's structs carry the same name).
fn message_name<M>() -> &'static str {
    let path = std::any::type_name::<M>();
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::grpc::pb;
    use tonic::Code;

    #[test]
    fn a_message_round_trips() {
        let request = pb::GetJobRequest {
            job_key: "1-2".into(),
        };
        let decoded: pb::GetJobRequest = decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn a_bad_field_value_names_the_field_by_its_proto_name() {
        let bytes: &[u8] = &[0x0a, 1, 0xff];
        let status = decode::<pb::CreateJobRequest>(bytes).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "CreateJobRequest.type: invalid string value: data is not UTF-8 encoded"
        );
    }

    #[test]
    fn an_error_outside_any_field_names_the_message() {
        let bytes: &[u8] = &[0xff; 11];
        let status = decode::<pb::GetJobRequest>(bytes).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "GetJobRequest: invalid varint");
    }
}
