//! The class's server, on the instructor's laptop: the page, the board it
//! follows, and the one route the learners' laptops call.
//!
//! ```text
//! GET    /                      the page
//! GET    /board?after=N         the board, once it has changed since version N
//! PUT    /api/learners/{seat}   a learner's report: joining, and each check
//! DELETE /api/learners/{seat}   a learner leaves, and all the class kept of them
//! ```
//!
//! The two routes under /api/ need the class code
//! (`Authorization: Bearer <code>`): 401 without it, 403 with a wrong one,
//! and either way nothing changes.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use serde::Deserialize;

use super::live::{Class, SAVE_EVERY, now};
use super::outline::Outline;
use super::page::{self, Heading};
use super::problem::{Answer, Problem};
use super::report::{self, Report};
use super::room::{Arrival, MOST_LEARNERS, Refusal, Room};
use crate::course::Course;
use crate::error::{Error, Result};

/// The page runs only the class's own script and style: even if some text
/// escaped the escaping, a browser would not run it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

pub struct ServerOptions {
    pub host: String,
    pub port: u16,
    /// A learner failing one exercise for longer stands out.
    pub stuck_after: Duration,
    /// The file the class is kept in.
    pub state: PathBuf,
    /// Start a new class (a new code, no one in it) instead of the kept one.
    pub fresh: bool,
}

/// A class with its port bound: what to tell the instructor, then `run`.
pub struct Server {
    listener: TcpListener,
    class: web::Data<Class>,
    /// The address learners type: this laptop's on the room's network.
    pub learners_url: String,
    /// The page's address on this laptop.
    pub page_url: String,
    pub local_only: bool,
}

impl Server {
    pub fn open(course: &Course, options: ServerOptions) -> Result<Server> {
        let outline = Outline::of(course);
        let room = Room::open(&options.state, &outline, options.fresh).map_err(Error::new)?;
        let listener = listen(&options.host, options.port)?;
        let address = listener.local_addr().map_err(|error| crate::error::io("the port", error))?;
        let local_only = address.ip().is_loopback();
        let learners_url = format!("http://{}", address_for_the_room(address));
        let class =
            Class::new(room, outline, options.stuck_after, learners_url.clone(), local_only);
        let page_url = match address.ip().is_unspecified() {
            true => format!("http://127.0.0.1:{}", address.port()),
            false => format!("http://{address}"),
        };
        Ok(Server { listener, class: web::Data::new(class), learners_url, page_url, local_only })
    }

    pub fn code(&self) -> String {
        self.class.room().code()
    }

    /// Serves until Ctrl-C (actix's own handling, on every OS).
    pub fn run(self) -> Result<ExitCode> {
        let class = self.class;
        let last_write = class.clone();
        actix_web::rt::System::new().block_on(async move {
            // Writes what changed since the last write, every SAVE_EVERY.
            let ticking = class.clone();
            actix_web::rt::spawn(async move {
                let mut ticks = actix_web::rt::time::interval(SAVE_EVERY);
                loop {
                    ticks.tick().await;
                    ticking.save_if_changed();
                }
            });
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(class.clone())
                    .route("/", web::get().to(show_page))
                    .route("/board", web::get().to(show_board))
                    .route("/class.css", web::get().to(style))
                    .route("/class.js", web::get().to(script))
                    .service(
                        web::resource("/api/learners/{seat}")
                            .put(take_report)
                            .delete(take_leave)
                            .default_service(web::to(wrong_method)),
                    )
                    .default_service(web::to(not_found))
            })
            // One thread is plenty for a room, and keeps the laptop's memory.
            .workers(1)
            .shutdown_timeout(1)
            .listen(self.listener)
            .map_err(|error| crate::error::io("the class's port", error))?;
            server.run().await.map_err(|error| crate::error::io("the class", error))
        })?;
        last_write.save_if_changed();
        Ok(ExitCode::SUCCESS)
    }
}

async fn show_page(class: web::Data<Class>, request: HttpRequest) -> HttpResponse {
    // The code is shown only on this laptop, whose screen is the projector's.
    let on_this_laptop = request.peer_addr().is_some_and(|peer| peer.ip().is_loopback());
    let code = match on_this_laptop {
        true => class.room().code(),
        false => "<the code>".to_string(),
    };
    let join =
        format!("cargo workshop join {} --code {code} --name \"Your name\"", class.learners_url);
    let warning = "Only this laptop can reach this class: it listens on 127.0.0.1. For the room \
                   to join, restart it with --host 0.0.0.0.";
    let heading = Heading { join: &join, local_only: class.local_only.then_some(warning) };
    let (version, board) = class.board();
    html(page::page(&heading, &board, version))
}

#[derive(Deserialize)]
struct Since {
    after: Option<u64>,
}

/// The board, as soon as its version is past `after` (or after HOLD).
async fn show_board(class: web::Data<Class>, request: HttpRequest) -> Answer<HttpResponse> {
    let since = web::Query::<Since>::from_query(request.query_string()).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad query",
            "after= takes a board version (a number)",
        )
    })?;
    if let Some(after) = since.after {
        class.changed_since(after).await;
    }
    let (version, board) = class.board();
    let mut response = html(board);
    response
        .headers_mut()
        .insert(header::HeaderName::from_static("x-board-version"), HeaderValue::from(version));
    Ok(response)
}

async fn take_report(
    class: web::Data<Class>,
    request: HttpRequest,
    seat: web::Path<String>,
    body: web::Payload,
) -> Answer<HttpResponse> {
    class.admit(&request)?;
    let seat = known_seat(&seat)?;
    let body = match body.to_bytes_limited(report::BODY_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return Err(Problem::bad_request(format!("the body broke off: {error}"))),
        Err(_) => {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Report too large",
                format!("a report is at most {} KiB", report::BODY_BYTES / 1024),
            ));
        }
    };
    let report: Report = serde_json::from_slice(&body).map_err(|error| {
        Problem::bad_request(format!("the report is not one this class reads: {error}"))
    })?;
    let name = report.name.clone();
    let mut room = class.room();
    match room.report(seat, report, &class.outline, now()) {
        Ok(arrival) => {
            class.changed(&room);
            if let Arrival::Joined = arrival {
                println!("{name} joined ({} in the class)", room.learners().count());
            }
            Ok(HttpResponse::NoContent().finish())
        }
        Err(Refusal::Invalid(why)) => Err(Problem::bad_request(why)),
        Err(Refusal::NameTaken) => Err(Problem::new(
            StatusCode::CONFLICT,
            "Name taken",
            format!("someone in this class already goes by {name}: join with another --name"),
        )),
        Err(Refusal::Full) => Err(Problem::new(
            StatusCode::CONFLICT,
            "Class full",
            format!("this class takes at most {MOST_LEARNERS} learners, and has them all"),
        )),
    }
}

async fn take_leave(
    class: web::Data<Class>,
    request: HttpRequest,
    seat: web::Path<String>,
) -> Answer<HttpResponse> {
    class.admit(&request)?;
    let seat = known_seat(&seat)?;
    let mut room = class.room();
    if let Some(name) = room.leave(seat) {
        class.changed(&room);
        println!("{name} left ({} in the class)", room.learners().count());
    }
    Ok(HttpResponse::NoContent().finish())
}

fn known_seat(seat: &str) -> Answer<&str> {
    match report::is_seat(seat) {
        true => Ok(seat),
        false => Err(Problem::bad_request("a seat is 32 hexadecimal digits".to_string())),
    }
}

async fn style() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(page::STYLE)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(page::SCRIPT)
}

async fn not_found(request: HttpRequest) -> Problem {
    let detail = format!("the class has no {}: its page is /", request.path());
    Problem::new(StatusCode::NOT_FOUND, "Not found", detail)
}

async fn wrong_method() -> HttpResponse {
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "a learner's seat takes PUT (a report) and DELETE (leaving)",
    );
    let mut response = problem.error_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("PUT, DELETE"));
    response
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Binds the class's port, with what to do about the errors an instructor
/// can meet.
fn listen(host: &str, port: u16) -> Result<TcpListener> {
    TcpListener::bind((host, port)).map_err(|error| {
        let place = format!("the class cannot listen on {host}:{port}");
        Error::new(match error.kind() {
            io::ErrorKind::AddrInUse => format!(
                "{place}: the port is already in use. Is a class already running? Stop it \
                 with Ctrl-C in its terminal, or give this one another port: --port <N> \
                 (CLASS_PORT)"
            ),
            io::ErrorKind::AddrNotAvailable => format!(
                "{place}: {host} is not an address of this laptop. Use --host 127.0.0.1 \
                 (this laptop only) or --host 0.0.0.0 (the room)"
            ),
            _ => format!("{place}: {error}"),
        })
    })
}

/// The address learners type. Listening on every network (0.0.0.0), it is
/// this laptop's address on the network its traffic leaves by: connecting a
/// UDP socket sends nothing, it only asks the system for the route.
fn address_for_the_room(bound: SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let outbound = UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.connect("192.0.2.1:9").map(|()| socket))
        .and_then(|socket| socket.local_addr());
    match outbound {
        Ok(local) if !local.ip().is_unspecified() => {
            SocketAddr::new(local.ip(), bound.port()).to_string()
        }
        _ => format!("<this laptop's address>:{}", bound.port()),
    }
}
