//! The receiving end of OTLP over HTTP: `POST /v1/traces`, a protobuf
//! `ExportTraceServiceRequest`, what the steps' OpenTelemetry exporter sends.

use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::store::Store;

/// Largest export accepted: a collector's usual 4 MiB, far above a batch
/// of 512 spans (the SDK's largest).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

pub fn routes(config: &mut web::ServiceConfig) {
    config.app_data(web::PayloadConfig::new(MAX_BODY)).route("/v1/traces", web::post().to(receive));
}

async fn receive(
    store: web::Data<Mutex<Store>>,
    request: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
) -> HttpResponse {
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok());
    if content_type.is_some_and(|kind| kind.contains("json")) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this viewer reads OTLP as protobuf only: \
             set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf in the sender",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(error) => return problem(error.as_response_error().status_code(), &error.to_string()),
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the body is not an OTLP ExportTraceServiceRequest in protobuf",
        );
    };
    store.lock().expect("no panic while holding the store").add(export);
    // An empty ExportTraceServiceResponse: every span accepted.
    HttpResponse::Ok().content_type("application/x-protobuf").finish()
}

/// An RFC 9457 problem, as the workshop's services answer.
fn problem(status: StatusCode, detail: &str) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    HttpResponse::build(status).content_type("application/problem+json").body(
        serde_json::json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
}
