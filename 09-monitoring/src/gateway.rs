//! gateway: the one entry point for clients. It checks who is calling
//! (authentication at the edge, so that the services behind it need not),
//! passes `/api/<service>/…` on to a passing instance of that service, found
//! in the registry (server-side discovery: clients need not know it exists)
//! and called through its circuit breaker, and at `/` answers with what
//! every registered service says, in one response, as JSON or XML.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, Accept, Header as _, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, ResponseError, mime, web};
use futures_util::future::join_all;
use quick_xml::escape::escape;
use serde::Serialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::platform::{self, Problem};
use crate::{
    Body, Breakers, DependencyCheck, Discovery, Health, HealthOverride, RegistrationOptions,
    Upstream, guards, monitoring, telemetry,
};

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

    #[command(flatten)]
    pub registration: RegistrationOptions,

    #[command(flatten)]
    pub breaker: crate::BreakerOptions,
}

/// What every worker of the gateway shares.
struct Gateway {
    api_key: String,
    discovery: Discovery,
    max_body_bytes: u64,
    last_answers: LastAnswers,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    let api_key = choose_api_key(&listener, options.api_key)?;
    let breakers = web::Data::new(Breakers::new(options.breaker));
    let discovery = Discovery::new(options.registration.registry_url, options.upstream_timeout)
        .with_breakers(breakers.clone());
    let (max_body_bytes, last_answers) = (options.max_body_bytes, LastAnswers::default());
    let gateway = web::Data::new(Gateway { api_key, discovery, max_body_bytes, last_answers });
    platform::serve(listener, move |routes| {
        routes.app_data(web::Data::new(crate::http_client())).app_data(gateway.clone());
        routes.app_data(breakers.clone());
        // Health is for the registry and operators: no API key needed.
        routes.route("/healthz", web::get().to(healthz));
        let root = web::resource("/").get(aggregate).default_service(web::to(platform::only_get));
        routes.service(
            web::scope("")
                .wrap(from_fn(require_api_key))
                .service(root)
                .route("/breakers", web::get().to(crate::breaker_states))
                // Every other path should be /api/<service>/<rest>: `proxy`
                // reads it itself, which costs less than matching a pattern.
                .default_service(web::to(proxy)),
        );
    })
}

/// The gateway needs the registry to find services; without it, it calls
/// the instances it knew before, degraded (warn) rather than dead.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    client: web::Data<awc::Client>,
    gateway: web::Data<Gateway>,
    breakers: web::Data<Breakers>,
) -> HttpResponse {
    let registry = gateway.discovery.check_registry(&client);
    let checks = vec![
        DependencyCheck::new("registry:reachability", Health::Warn, registry),
        DependencyCheck::new("circuits", Health::Warn, async { breakers.check() }),
    ];
    crate::health_report(&overridden, checks).await
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
    /// Why `answer` is not fresh, when it comes from the fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
}

#[derive(Serialize)]
struct Aggregate {
    services: Vec<Part>,
    /// The services not asked, when there are more than `MOST_ASKED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    left_out: Option<String>,
}

/// The most services `/` asks: each is a call, and one request must not
/// make thousands. (The workshop has six; a registry may list any number.)
const MOST_ASKED: usize = 32;

/// `GET /`: asks every service registered (but the gateway itself, and
/// no more than `MOST_ASKED`) at once, and answers with all they said.
async fn aggregate(
    request: HttpRequest,
    client: web::Data<awc::Client>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    let mut services = gateway.discovery.services(&client).await?;
    services.retain(|service| service != NAME);
    services.sort();
    gateway.last_answers.keep_only(&services);
    let left_out = leave_out(&mut services);
    let answers =
        join_all(services.iter().map(|service| ask(&gateway.discovery, &client, service))).await;
    let parts: Vec<Part> = services
        .into_iter()
        .zip(answers)
        .map(|(service, answer)| gateway.last_answers.part(service, answer))
        .collect();

    let mut response = HttpResponse::Ok();
    // The answer depends on Accept: caches must keep one copy per value.
    response.insert_header((header::VARY, "Accept"));
    if prefers_xml(&request) {
        let mut xml = to_xml(&parts);
        if let Some(why) = &left_out {
            let end = xml.len() - "</services>".len();
            xml.insert_str(end, &format!("<left-out>{}</left-out>", escape(why)));
        }
        Ok(response.content_type("application/xml").body(xml))
    } else {
        Ok(response.json(Aggregate { services: parts, left_out }))
    }
}

/// Keeps the first `MOST_ASKED` of `services`; says what is left out.
fn leave_out(services: &mut Vec<String>) -> Option<String> {
    let registered = services.len();
    if registered <= MOST_ASKED {
        return None;
    }
    services.truncate(MOST_ASKED);
    Some(format!("{registered} services are registered; / asks the first {MOST_ASKED} by name"))
}

/// What one service answers at `/`, asked through discovery.
async fn ask(discovery: &Discovery, client: &awc::Client, service: &str) -> Result<Value, Problem> {
    discovery.find(client, service).await?.get_json(client, "/").await
}

/// Each service's last answer at `/`, and when: the fallback for when it
/// cannot answer now (its circuit is open, say).
#[derive(Default)]
struct LastAnswers(Mutex<HashMap<String, (Value, Instant)>>);

impl LastAnswers {
    /// Forgets the answers of services no longer `registered` (sorted).
    fn keep_only(&self, registered: &[String]) {
        let mut last_answers = self.0.lock().expect("last answers");
        last_answers.retain(|service, _| registered.binary_search(service).is_ok());
    }

    /// `service`'s part of the aggregate: its answer, which is remembered;
    /// or, when it has none, its last one marked as such (better than none).
    fn part(&self, service: String, answer: Result<Value, Problem>) -> Part {
        let mut last_answers = self.0.lock().expect("last answers");
        match answer {
            Ok(answer) => {
                last_answers.insert(service.clone(), (answer.clone(), Instant::now()));
                Part { service, answer: Some(answer), error: None, fallback: None }
            }
            Err(problem) => match last_answers.get(&service) {
                Some((answer, at)) => {
                    let age = at.elapsed().as_secs();
                    let why =
                        format!("{}; this is its last answer, from {age} s ago", problem.detail);
                    Part { service, answer: Some(answer.clone()), error: None, fallback: Some(why) }
                }
                None => Part { service, answer: None, error: Some(problem), fallback: None },
            },
        }
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
        let _ = write!(xml, r#"<service name="{}""#, escape(&part.service));
        if let Some(why) = &part.fallback {
            let _ = write!(xml, r#" fallback="{}""#, escape(why));
        }
        xml.push('>');
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

/// `/api/<service>/…`: passes the request on to a healthy instance of the
/// service (method, rest of the path, query string, headers, body) and the
/// service's answer back, both bodies streamed, neither held whole. The
/// whole request is checked first (its key before it got here; its path,
/// headers and body in `guards.rs`), then an instance is chosen and called.
async fn proxy(
    request: HttpRequest,
    payload: web::Payload,
    client: web::Data<awc::Client>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    let (name, path) = route(&request)?;
    // The request's span is named after the service, not the whole path:
    // "GET /api/service1", one name per service however many paths it has.
    let span_name = format!("{} /api/{name}", request.method());
    telemetry::rename_request_span("/api/{service}/{path}", span_name);
    // And counted under that route, for Prometheus.
    request.extensions_mut().insert(monitoring::Route("/api/{service}/{path}"));
    guards::check_headers(&request)?;
    let body = guards::checked_body(&request, payload, gateway.max_body_bytes)?;
    // One lookup in the registry tells all: no such service (404), none
    // healthy (503), or the instance whose turn it is.
    let service = gateway.discovery.find_requested(&client, &name).await?;
    forward(&request, &client, &service, &path, body).await
}

/// Which service a request is for, and the path (with the query) that the
/// service will see: "/api/service1/orders/7?x=1" is service1's "orders/7?x=1".
fn route(request: &HttpRequest) -> Result<(String, String), Problem> {
    let Some(path) = request.path().strip_prefix("/api/").filter(|path| !path.is_empty()) else {
        return Err(no_route(request));
    };
    let segments = guards::decode_path(path)?;
    let (name, rest) = segments.split_first().ok_or_else(|| no_route(request))?;
    guards::check_service_name(name)?;
    guards::check_not_internal(rest)?;
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
    let detail =
        format!("no route for {}; the gateway serves / and /api/<service>/...", request.path());
    Problem::new(StatusCode::NOT_FOUND, detail)
}
