//! gateway: the one entry point for clients. It checks who is calling
//! (authentication at the edge, so that the services behind it need not),
//! passes `/service1/…` and `/service2/…` on to those services, and at `/`
//! answers with what both services say, in one response, as JSON or XML.

use std::fmt::Write as _;
use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, Accept, Header as _, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, HttpRequest, HttpResponse, ResponseError, mime, web};
use futures_util::future::join_all;
use quick_xml::escape::escape;
use serde::Serialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::platform::{self, Problem};
use crate::{Body, Upstream, guards};

pub const NAME: &str = "gateway";

/// The key the gateway accepts when none is set, so that the README's curl
/// lines work as they are: only on a loopback address, since it is public.
pub const WORKSHOP_KEY: &str = "workshop-key";

/// The gateway's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 3001)]
    pub port: u16,

    /// Where service1 answers
    #[arg(long, env = "SERVICE1_URL", default_value = "http://127.0.0.1:3002", value_parser = platform::http_url)]
    pub service1_url: String,

    /// Where service2 answers
    #[arg(long, env = "SERVICE2_URL", default_value = "http://127.0.0.1:3003", value_parser = platform::http_url)]
    pub service2_url: String,

    /// The key clients must send as "Authorization: Bearer <key>". Needed
    /// when listening on an address other machines can reach; on 127.0.0.1
    /// it defaults to "workshop-key"
    #[arg(long, env = "GATEWAY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// How long a service may take to start answering ("2s", "500ms")
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// Largest request body passed on to a service, in bytes (larger: 413)
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: u64,
}

/// What every worker of the gateway shares.
struct Gateway {
    api_key: String,
    services: Vec<Upstream>,
    max_body_bytes: u64,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    let api_key = choose_api_key(&listener, options.api_key)?;
    let service = |name, url| Upstream::new(name, url, options.upstream_timeout);
    let services =
        vec![service("service1", options.service1_url), service("service2", options.service2_url)];
    let gateway =
        web::Data::new(Gateway { api_key, services, max_body_bytes: options.max_body_bytes });
    platform::serve(listener, move |routes| {
        routes.app_data(web::Data::new(crate::http_client())).app_data(gateway.clone());
        let root = web::resource("/").get(aggregate).default_service(web::to(platform::only_get));
        routes.service(
            web::scope("")
                .wrap(from_fn(require_api_key))
                .service(root)
                // Every other path is /<service>/<rest>: `proxy` reads it
                // itself, which costs less than matching a pattern.
                .default_service(web::to(proxy)),
        );
    })
}

/// On a loopback address only this machine can reach the gateway, so the
/// public workshop key will do; anywhere else it would let anyone in.
fn choose_api_key(listener: &TcpListener, configured: Option<String>) -> io::Result<String> {
    let address = listener.local_addr()?;
    match configured {
        Some(key) if key.is_empty() => Err(io::Error::other(
            "its API key is empty: set GATEWAY_API_KEY to a secret of your own, or leave it \
             unset on 127.0.0.1 to use the workshop key",
        )),
        Some(key) => Ok(key),
        None if address.ip().is_loopback() => Ok(WORKSHOP_KEY.to_string()),
        None => Err(io::Error::other(format!(
            "it listens on {address}, which other machines can reach, and has no API key of \
             its own. The workshop key is public (it is in the README): set a secret key \
             with GATEWAY_API_KEY=<KEY> (or `gateway --api-key <KEY>` when it runs alone)."
        ))),
    }
}

/// Authentication at the edge: every request must carry the API key as a
/// bearer token, before anything else happens.
async fn require_api_key(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let gateway =
        request.app_data::<web::Data<Gateway>>().expect("the gateway's settings are registered");
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let (detail, challenge) = match presented {
        // A constant-time comparison: how long it takes says nothing about
        // how much of a guessed key was right.
        Some(key) if bool::from(key.as_bytes().ct_eq(gateway.api_key.as_bytes())) => {
            return next.call(request).await.map(ServiceResponse::map_into_left_body);
        }
        Some(_) => ("that API key is not valid", r#"Bearer error="invalid_token""#),
        None => {
            ("send your API key as \"Authorization: Bearer <key>\"", r#"Bearer realm="gateway""#)
        }
    };
    let problem = Problem::new(StatusCode::UNAUTHORIZED, detail)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    // An answer, not an error, so that the request log shows the 401 too.
    Ok(request.into_response(problem.error_response()).map_into_right_body())
}

/// One service's part of the aggregate: what it answered, or the problem
/// that kept it from answering. A failed service does not fail the whole.
#[derive(Serialize)]
struct Part {
    service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Problem>,
}

#[derive(Serialize)]
struct Aggregate {
    services: Vec<Part>,
}

/// `GET /`: asks every service at once and answers with all they said.
async fn aggregate(
    request: HttpRequest,
    client: web::Data<awc::Client>,
    gateway: web::Data<Gateway>,
) -> HttpResponse {
    let answers =
        join_all(gateway.services.iter().map(|service| service.get_json(&client, "/"))).await;
    let parts: Vec<Part> = gateway
        .services
        .iter()
        .zip(answers)
        .map(|(service, answer)| match answer {
            Ok(answer) => Part { service: service.name.clone(), answer: Some(answer), error: None },
            Err(problem) => {
                Part { service: service.name.clone(), answer: None, error: Some(problem) }
            }
        })
        .collect();

    let mut response = HttpResponse::Ok();
    // The answer depends on Accept: caches must keep one copy per value.
    response.insert_header((header::VARY, "Accept"));
    if prefers_xml(&request) {
        response.content_type("application/xml").body(to_xml(&parts))
    } else {
        response.json(Aggregate { services: parts })
    }
}

/// Content negotiation: the client says in `Accept` which representations
/// it takes, best first. (Not Content-Type: that header describes the
/// body a client sends, and a GET sends none.)
fn prefers_xml(request: &HttpRequest) -> bool {
    let ranked = Accept::parse(request).map(|accept| accept.ranked()).unwrap_or_default();
    // The first of the types the gateway serves (or */*) decides.
    let served = [mime::XML, mime::JSON, mime::STAR];
    let first = ranked.iter().map(|wanted| wanted.subtype()).find(|sub| served.contains(sub));
    first == Some(mime::XML)
}

/// `<services>` with a `<service name="…">` for each part: its answer as elements, or an `<error>`.
fn to_xml(parts: &[Part]) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><services>"#);
    for part in parts {
        let _ = write!(xml, r#"<service name="{}">"#, part.service);
        if let Some(answer) = &part.answer {
            json_to_xml(answer, &mut xml);
        }
        if let Some(problem) = &part.error {
            let (status, detail) = (problem.status, escape(&problem.detail));
            let _ = write!(xml, r#"<error status="{status}">{detail}</error>"#);
        }
        xml.push_str("</service>");
    }
    xml.push_str("</services>");
    xml
}

/// A JSON value as XML: an object's fields become elements, an array's
/// items `<item>` elements, and the rest text.
fn json_to_xml(value: &Value, xml: &mut String) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                let is_xml_name = key.starts_with(|c: char| c.is_ascii_alphabetic())
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let element = if is_xml_name { key.as_str() } else { "field" };
                let _ = write!(xml, "<{element}>");
                json_to_xml(value, xml);
                let _ = write!(xml, "</{element}>");
            }
        }
        Value::Array(items) => {
            for item in items {
                xml.push_str("<item>");
                json_to_xml(item, xml);
                xml.push_str("</item>");
            }
        }
        Value::String(text) => xml.push_str(&escape(text)),
        Value::Null => {}
        other => xml.push_str(&other.to_string()),
    }
}

/// `/service1/…` and `/service2/…`: passes the request on to the service
/// (method, rest of the path, query string, headers, body) and the
/// service's answer back, both bodies streamed, neither held whole. The
/// whole request is checked first (its key before it got here; its path,
/// headers and body in `guards.rs`), then the service is chosen and called.
async fn proxy(
    request: HttpRequest,
    payload: web::Payload,
    client: web::Data<awc::Client>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    let (name, path) = route(&request)?;
    guards::check_headers(&request)?;
    let body = guards::checked_body(&request, payload, gateway.max_body_bytes)?;
    let Some(service) = gateway.services.iter().find(|service| service.name == name) else {
        return Err(no_route(&request));
    };
    forward(&request, &client, service, &path, body).await
}

/// Which service a request is for, and the path (with the query) that the
/// service will see: "/service1/orders/7?x=1" is service1's "orders/7?x=1".
fn route(request: &HttpRequest) -> Result<(String, String), Problem> {
    let segments = guards::decode_path(request.path().trim_start_matches('/'))?;
    let (name, rest) = segments.split_first().ok_or_else(|| no_route(request))?;
    Ok((name.clone(), guards::path_for_service(rest, request.uri().query())))
}

/// Sends the client's request on to `service`, through its one way out,
/// and turns the service's answer into the gateway's.
async fn forward(
    request: &HttpRequest,
    client: &awc::Client,
    service: &Upstream,
    path: &str,
    body: Body,
) -> Result<HttpResponse, Problem> {
    let outgoing = client.request(request.method().clone(), format!("{}/{path}", service.url));
    let outgoing = guards::pass_on_headers(request, outgoing);
    let answer = service.call(outgoing, body).await.map_err(|error| service.problem(&error))?;
    let mut response = HttpResponse::build(answer.status());
    for (name, value) in guards::end_to_end(answer.headers()) {
        response.append_header((name.clone(), value.clone()));
    }
    // The answer's body gets the same time again to arrive.
    Ok(response.streaming(answer.timeout(service.timeout)))
}

fn no_route(request: &HttpRequest) -> Problem {
    let detail = format!(
        "no route for {}; the gateway serves /, /service1/... and /service2/...",
        request.path()
    );
    Problem::new(StatusCode::NOT_FOUND, detail)
}
