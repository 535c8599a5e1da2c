//! The receiving end of OTLP over HTTP: `POST /v1/traces`, a protobuf
//! `ExportTraceServiceRequest`, what the steps' OpenTelemetry exporter sends.

use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::span::{self, Received, Refused};
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
    // Checked and made printable before the store is locked: a post holds
    // the lock only to file what it keeps.
    let (received, refused) = receive_spans(export);
    let (kept, refused_count) = (received.len(), refused.len());
    {
        let mut store = store.lock().expect("no panic while holding the store");
        store.add(received);
        store.refused(refused_count);
    }
    let Some(first) = refused.first() else {
        // An empty ExportTraceServiceResponse: every span accepted.
        return HttpResponse::Ok().content_type("application/x-protobuf").finish();
    };
    let error_message = format!("{refused_count} spans refused, the first: {first}");
    if kept == 0 {
        return problem(StatusCode::BAD_REQUEST, &error_message);
    }
    // OTLP's partial success: the others are kept, the sender is told how many were not.
    let rejected_spans = i64::try_from(refused_count).unwrap_or(i64::MAX);
    let partial_success = Some(ExportTracePartialSuccess { rejected_spans, error_message });
    let answer = ExportTraceServiceResponse { partial_success }.encode_to_vec();
    HttpResponse::Ok().content_type("application/x-protobuf").body(answer)
}

/// Every span of an export, checked: those kept, and why the others are not.
fn receive_spans(export: ExportTraceServiceRequest) -> (Vec<Received>, Vec<Refused>) {
    let (mut received, mut refused) = (Vec::new(), Vec::new());
    for resource_spans in export.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service = resource.attributes.iter().find(|attribute| attribute.key == "service.name");
        let service = match service.map(|attribute| span::value(attribute.value.as_ref())) {
            Some(name) if !name.is_empty() => name,
            _ => "unknown".to_string(),
        };
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            match span::receive(span, &service) {
                Ok(span) => received.push(span),
                Err(why) => refused.push(why),
            }
        }
    }
    (received, refused)
}

/// An RFC 9457 problem, as the workshop's services answer.
fn problem(status: StatusCode, detail: &str) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    HttpResponse::build(status).content_type("application/problem+json").body(
        serde_json::json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
}
