//! The least a reverse proxy does, written directly on hyper, to tell how
//! far the workshop's gateway is from what its HTTP stack could do:
//!
//!     hyper-proxy <port> <upstream URL>
//!
//! It does the work a proxy cannot skip, as the gateway does: the request's
//! path and query to the upstream over kept-alive connections, its headers
//! without the hop-by-hop ones and the API key, `X-Forwarded-*` added, a
//! deadline on the call, bodies streamed both ways, 502 or 504 when the
//! upstream fails. It has none of what makes the gateway the workshop's
//! (routes, API keys, limits, messages that explain): bench/run only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Incoming>;
type Answer = Response<Either<Incoming, Full<Bytes>>>;

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const DEADLINE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper-proxy <port> <upstream URL>");
        std::process::exit(2);
    };
    let port: u16 = port.parse().map_err(std::io::Error::other)?;
    let upstream: &'static str = upstream.trim_end_matches('/').to_string().leak();
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let client = client.clone();
        let serve = service_fn(move |request| proxy(request, peer, upstream, client.clone()));
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), serve));
    }
}

async fn proxy(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    upstream: &str,
    client: Upstream,
) -> Result<Answer, Infallible> {
    let path = request.uri().path_and_query().map_or("/", |path| path.as_str());
    let Ok(uri) = format!("{upstream}{path}").parse::<Uri>() else {
        return Ok(failed(StatusCode::BAD_REQUEST));
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    let host = headers.remove(header::HOST);
    for name in HOP_BY_HOP.iter().chain([&header::AUTHORIZATION]) {
        headers.remove(name);
    }
    let forwarded = HeaderValue::try_from(peer.ip().to_string()).expect("an IP address");
    headers.append(HeaderName::from_static("x-forwarded-for"), forwarded);
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    match tokio::time::timeout(DEADLINE, client.request(request)).await {
        Ok(Ok(mut answer)) => {
            for name in &HOP_BY_HOP {
                answer.headers_mut().remove(name);
            }
            Ok(answer.map(Either::Left))
        }
        Ok(Err(_)) => Ok(failed(StatusCode::BAD_GATEWAY)),
        Err(_) => Ok(failed(StatusCode::GATEWAY_TIMEOUT)),
    }
}

fn failed(status: StatusCode) -> Answer {
    let mut answer = Response::new(Either::Right(Full::new(Bytes::new())));
    *answer.status_mut() = status;
    answer
}
