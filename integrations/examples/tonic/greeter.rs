//! A gRPC service written by hand, without `.proto` files, protoc or code generation: what
//! `tonic-build` would generate for
//!
//! ```proto
//! service Greeter { rpc SayHello (Name) returns (Greeting); }
//! ```
//!
//! with each message a UTF-8 string (`StringCodec`) instead of a protobuf message. A generated
//! service plugs into the server in `main.rs` in exactly the same way: both are a tower `Service`
//! over `http::Request`s with a `NamedService` name.

use std::convert::Infallible;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// The service's name on the wire.
pub(crate) const SERVICE: &str = "staunch.Greeter";
/// The path of its one method.
pub(crate) const SAY_HELLO: &str = "/staunch.Greeter/SayHello";

/// Messages are UTF-8 strings, sent as they are.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StringCodec;

impl Codec for StringCodec {
    type Encode = String;
    type Decode = String;
    type Encoder = StringCodec;
    type Decoder = StringCodec;

    fn encoder(&mut self) -> StringCodec {
        StringCodec
    }

    fn decoder(&mut self) -> StringCodec {
        StringCodec
    }
}

impl Encoder for StringCodec {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for StringCodec {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.into())
            .map(Some)
            .map_err(|_| Status::invalid_argument("message is not UTF-8"))
    }
}

/// The server side of `Greeter`, as a tower `Service`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = SERVICE;
}

/// The handler of `SayHello`.
struct SayHello;

impl UnaryService<String> for SayHello {
    type Response = String;
    type Future = BoxFuture<Response<String>, Status>;

    fn call(&mut self, request: Request<String>) -> Self::Future {
        Box::pin(async move {
            let name = request.into_inner();
            if name.is_empty() {
                return Err(Status::invalid_argument("say who you are"));
            }
            Ok(Response::new(format!("hello, {name}")))
        })
    }
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match request.uri().path() {
            SAY_HELLO => {
                Box::pin(async move { Ok(Grpc::new(StringCodec).unary(SayHello, request).await) })
            }
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
