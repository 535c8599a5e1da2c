//! Who may write to the registry, and with which method.
//!
//! A registry decides where traffic goes: whoever can register an instance
//! of service2 is sent service2's calls. On 127.0.0.1 only this machine can
//! write, which is what the workshop's commands expect. On an address that
//! other machines reach, the registry refuses to start without a token,
//! and then every write must carry it, as Consul's ACLs ask
//! (`X-Consul-Token`). Reads stay open: the dashboard, health and catalog
//! are what a learner watches and what every service asks, and they show
//! no more than the addresses the services answer on anyway.
//!
//! Writes are PUT and reads GET, as in Consul; any other method is a 405
//! that names the one to use.

use std::io;
use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, FromRequest, Handler, HttpResponse, Resource, Responder, web};
use subtle::ConstantTimeEq;

use super::api::plain;

/// What a write must carry as `X-Consul-Token`, if anything.
pub(super) struct AclToken(pub(super) Option<String>);

/// On a loopback address only this machine can write, as the workshop's
/// commands expect; anywhere else anyone could register a fake instance of
/// a service and be sent its traffic.
pub fn choose_acl_token(
    listener: &TcpListener,
    configured: Option<String>,
) -> io::Result<Option<String>> {
    let address = listener.local_addr()?;
    match configured {
        Some(token) if token.is_empty() => Err(io::Error::other(
            "its ACL token is empty: set REGISTRY_ACL_TOKEN to a secret of your own, or leave \
             it unset on 127.0.0.1",
        )),
        Some(token) => Ok(Some(token)),
        None if address.ip().is_loopback() => Ok(None),
        None => Err(io::Error::other(format!(
            "it listens on {address}, which other machines can reach, and has no ACL token: \
             anyone could register a fake instance and be sent its traffic. Set a secret token \
             with REGISTRY_ACL_TOKEN=<TOKEN> (or `registry --acl-token <TOKEN>` when it runs \
             alone), and give the services the same with REGISTRY_TOKEN=<TOKEN>."
        ))),
    }
}

/// A write: PUT only, as in Consul, and only with the ACL token if one is set.
pub(super) fn put<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::put().to(handler).wrap(from_fn(require_acl_token)))
        .default_service(web::to(|| async { wrong_method("PUT") }))
}

/// With an ACL token set, a write without it is refused as Consul refuses
/// it (403 "Permission denied").
async fn require_acl_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let acl_token =
        request.app_data::<web::Data<AclToken>>().expect("the registry's ACL token is registered");
    if let Some(token) = &acl_token.0 {
        let presented = request.headers().get("X-Consul-Token").map(HeaderValue::as_bytes);
        // A constant-time comparison: how long it takes says nothing about
        // how much of a guessed token was right.
        if !presented.is_some_and(|presented| bool::from(presented.ct_eq(token.as_bytes()))) {
            let message = "Permission denied: writes need the registry's ACL token as \
                           X-Consul-Token (services: set REGISTRY_TOKEN)";
            let response = plain(StatusCode::FORBIDDEN, message);
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    next.call(request).await.map(ServiceResponse::map_into_left_body)
}

/// A read: GET only.
pub(super) fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path).get(handler).default_service(web::to(|| async { wrong_method("GET") }))
}

fn wrong_method(allowed: &'static str) -> HttpResponse {
    let mut response =
        plain(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed; use {allowed}"));
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}
