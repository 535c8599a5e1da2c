//! Answers every service gives the same way, whatever it serves: a method
//! a route does not serve is 405 Method Not Allowed, with the `Allow`
//! header a client reads and a detail a person reads, as problem+json.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, Handler, HttpRequest, Responder, web};

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
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not served here; only GET is", request.method()),
    )
    .with_header(header::ALLOW, HeaderValue::from_static("GET"))
}
