//! A URL given as an option (`--service2-url`, `REGISTRY_URL`), checked
//! when the service starts: a typo should stop it at once with a message
//! that says what is wrong, not turn every request into a puzzling 502
//! later.

use actix_web::http::Uri;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// An `http://` URL with a host and, if any, a port from 1 to 65535;
/// without its trailing `/`, so that a path can be added to it. For clap's
/// `value_parser`: the error is what clap shows after the option's name.
pub fn http_url(text: &str) -> Result<String, String> {
    let not_http = || "not an http:// URL (for example http://127.0.0.1:3003)".to_string();
    let uri: Uri = text.parse().map_err(|_| not_http())?;
    let port = uri.authority().and_then(|authority| authority.as_str().rsplit_once(':'));
    let port = port.map(|(_, port)| port).filter(|port| !port.ends_with(']')); // not IPv6's
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_))
            if port.is_some_and(|port| !matches!(port.parse(), Ok(1..=u16::MAX))) =>
        {
            Err("the port is not a number from 1 to 65535".into())
        }
        (Some("http"), Some(_)) => Ok(text.trim_end_matches('/').to_string()),
        (Some("https"), _) => Err("https is not supported by the workshop's services".into()),
        _ => Err(not_http()),
    }
}

/// Bytes a path segment is sent with as they are: RFC 3986's unreserved
/// characters, and `:` and `@`, which a segment may hold as they are (so
/// that a check's id, `service:service2-…`, reads the same in every log).
/// Every other byte is percent-encoded.
const AS_THEY_ARE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b':').remove(b'@');

/// `text` as one segment of a URL's path. Whatever goes into a URL is
/// encoded, so that it cannot add a segment, a query or a fragment of its
/// own: `users?1` is sent as `users%3F1`.
pub fn path_segment(text: &str) -> String {
    utf8_percent_encode(text, AS_THEY_ARE).to_string()
}
