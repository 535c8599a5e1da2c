//! Answers every service gives the same way, whatever it serves, all as
//! problem+json: a method a route does not serve is 405 Method Not Allowed,
//! with the `Allow` header a client reads and a detail a person reads; a
//! path it does not serve is 404; a body or a query string it cannot read
//! is 400, saying what is wrong with it.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, Handler, HttpRequest, Responder, ResponseError, web};

use super::Problem;

/// Routes a GET on any path to `handler`, and answers any other method
/// with 405 Method Not Allowed.
pub fn on_every_get<F, Args>(routes: &mut web::ServiceConfig, handler: F)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    routes.service(web::resource("/{any:.*}").get(handler).default_service(web::to(only_get)));
}

/// The answer to a method a GET-only route does not serve.
pub async fn only_get(request: HttpRequest) -> Problem {
    method_not_allowed(&request, "GET", "only GET is")
}

/// How the services that take commands read a JSON body or a query
/// string: what serde says is wrong with it (a field missing, unknown, of
/// the wrong type or out of range) is the detail of a 400 problem.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(64 * 1024).error_handler(|error, _| {
        let detail = match error {
            JsonPayloadError::ContentType => {
                format!("{error}; send a JSON body, with Content-Type: application/json")
            }
            _ => error.to_string(),
        };
        Problem::new(error.status_code(), detail).into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        Problem::new(StatusCode::BAD_REQUEST, format!("the query string: {error}")).into()
    })
}

/// The answer to a method a resource does not serve: 405, saying which it does.
pub fn not_allowed(allowed: &'static str) -> actix_web::Route {
    web::to(move |request: HttpRequest| async move {
        method_not_allowed(&request, allowed, &format!("{allowed} are"))
    })
}

/// 405 Method Not Allowed: the methods served are listed in the `Allow`
/// header, for a client, and said `in_words` in the detail, for a person.
fn method_not_allowed(request: &HttpRequest, allowed: &'static str, in_words: &str) -> Problem {
    let detail = format!("{} is not served here; {in_words}", request.method());
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, detail)
        .with_header(header::ALLOW, HeaderValue::from_static(allowed))
}

/// The answer to a path a service does not serve: 404, naming it.
pub async fn no_such_path(request: HttpRequest) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("nothing is served at {}", request.path()))
}
