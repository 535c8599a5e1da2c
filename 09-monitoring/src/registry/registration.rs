//! Reading a registration: what Consul's clients send, and the bounds on it.
//!
//! A registration comes from outside, and the registry keeps what it says:
//! a name becomes a key, a line on the dashboard and part of URLs; a
//! duration becomes a deadline on the registry's clock; every check is
//! work at every sweep. So everything is bounded here, before it is kept:
//! the length of names and IDs, the number of checks, the durations. A
//! registration that asks for more is a 400 that says what to change, and
//! changes nothing.
//!
//! Consul's clients do not agree on how to spell a key ("Name", "name",
//! "deregister_critical_service_after"): they are folded to one form
//! first, so that every client's registration reads the same.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::http_checks::HttpProbe;
use super::state::{Probe, Status};

/// The longest TTL or time before deregistration a check may ask for:
/// longer than any real use, and far from the overflow that a huge one
/// would cause in the registry's clock arithmetic.
pub(super) const LONGEST_CHECK_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest service name or ID (and check ID): they are keys, shown on
/// the dashboard and in URLs, not documents.
const LONGEST_NAME: usize = 256;

/// The most of a check's output the registry keeps, in bytes, as Consul
/// does (`check_output_max_size`): it is for the dashboard, not a store.
pub(super) const LONGEST_OUTPUT: usize = 4096;

/// The most checks one instance may have. Consul sets no number; a service
/// has a check or two (the workshop's have one), and every check is work
/// for the registry at every interval.
const MOST_CHECKS_PER_INSTANCE: usize = 8;

/// A registration read and found within bounds: an instance to keep.
pub(super) struct NewInstance {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) address: String,
    pub(super) port: u16,
    pub(super) checks: Vec<NewCheck>,
}

pub(super) struct NewCheck {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: Status,
    pub(super) probe: Probe,
    pub(super) deregister_after: Option<Duration>,
}

/// The body of a registration, its keys folded (see `fold_keys`).
#[derive(Deserialize)]
struct RegistrationBody {
    name: Option<String>,
    id: Option<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    check: Option<CheckBody>,
    #[serde(default)]
    checks: Vec<CheckBody>,
}

#[derive(Deserialize)]
struct CheckBody {
    checkid: Option<String>,
    name: Option<String>,
    status: Option<String>,
    ttl: Option<Value>,
    interval: Option<Value>,
    http: Option<String>,
    timeout: Option<Value>,
    deregistercriticalserviceafter: Option<Value>,
}

pub(super) fn parse_registration(body: &[u8]) -> Result<NewInstance, String> {
    let decode_failed = |error: serde_json::Error| format!("Request decode failed: {error}");
    let body: Value = serde_json::from_slice(body).map_err(decode_failed)?;
    let body: RegistrationBody = serde_json::from_value(fold_keys(body)).map_err(decode_failed)?;

    let name = body.name.filter(|name| !name.is_empty()).ok_or("Missing service name")?;
    valid_name("service name", &name)?;
    if !is_service_name(&name) {
        return Err(format!(
            "Invalid service name {name:?}: it would not be discoverable via DNS. A service \
             name is 1 to 63 letters, digits and dashes, starting and ending with a letter or digit"
        ));
    }
    if body.address == "0.0.0.0" || body.address == "::" || body.address == "[::]" {
        return Err("Invalid service address".to_string());
    }
    valid_name("service address", &body.address)?;
    let id = body.id.filter(|id| !id.is_empty()).unwrap_or_else(|| name.clone());
    valid_name("service ID", &id)?;
    let definitions: Vec<CheckBody> = body.check.into_iter().chain(body.checks).collect();
    if definitions.len() > MOST_CHECKS_PER_INSTANCE {
        return Err(format!(
            "Invalid registration: {} checks; an instance may have at most {MOST_CHECKS_PER_INSTANCE}",
            definitions.len()
        ));
    }
    let several = definitions.len() > 1;
    let mut checks = Vec::new();
    for (number, definition) in (1..).zip(definitions) {
        let probe = match (&definition.ttl, &definition.http, &definition.interval) {
            (Some(_), _, Some(_)) => {
                return Err("Invalid check: Interval and TTL cannot both be specified".to_string());
            }
            (Some(_), None, None) => Probe::ttl(
                check_duration("TTL", &definition.ttl, Duration::ZERO)?
                    .ok_or("Invalid check: TTL must be > 0 for TTL checks")?,
            ),
            (None, Some(url), interval) => Probe::Http(HttpProbe::new(
                url,
                interval,
                &definition.timeout,
                (&body.address, body.port),
            )?),
            _ => return Err("Invalid check: give it a TTL, or an HTTP URL and an Interval".into()),
        };
        let status = match definition.status.as_deref() {
            None | Some("") => Status::Critical,
            Some(text) => serde_json::from_value(Value::String(text.to_string()))
                .map_err(|_| format!("Invalid check status: '{text}'"))?,
        };
        let default_id =
            if several { format!("service:{id}:{number}") } else { format!("service:{id}") };
        let check_id = definition.checkid.filter(|id| !id.is_empty()).unwrap_or(default_id);
        valid_name("check ID", &check_id)?;
        let check_name = definition.name.unwrap_or_else(|| format!("Service '{name}' check"));
        valid_name("check name", &check_name)?;
        checks.push(NewCheck {
            id: check_id,
            name: check_name,
            status,
            probe,
            deregister_after: check_duration(
                "DeregisterCriticalServiceAfter",
                &definition.deregistercriticalserviceafter,
                Duration::ZERO,
            )?,
        });
    }
    Ok(NewInstance { id, name, address: body.address, port: body.port, checks })
}

/// Consul's clients write keys in any case ("Name", "name") and sometimes
/// in snake_case ("deregister_critical_service_after"): fold the keys of a
/// registration and of its checks to one form, lowercase without
/// underscores.
fn fold_keys(value: Value) -> Value {
    let Value::Object(fields) = value else { return value };
    let folded = fields.into_iter().map(|(key, value)| {
        let key = key.to_lowercase().replace('_', "");
        let value = match (key.as_str(), value) {
            ("check", check) => fold_keys(check),
            ("checks", Value::Array(checks)) => {
                Value::Array(checks.into_iter().map(fold_keys).collect())
            }
            (_, value) => value,
        };
        (key, value)
    });
    Value::Object(folded.collect())
}

/// Whether `name` can be a service's name: a DNS label (1 to 63 ASCII
/// letters, digits and dashes, starting and ending with a letter or digit),
/// which is what Consul can serve over DNS. A service name goes into URLs,
/// routes and metric labels: this keeps it one plain word, with nothing to
/// encode or escape.
pub fn is_service_name(name: &str) -> bool {
    let label = name.as_bytes();
    let letter_or_digit = |byte: &u8| byte.is_ascii_alphanumeric();
    label.len() <= 63
        && label.first().is_some_and(letter_or_digit)
        && label.last().is_some_and(letter_or_digit)
        && label.iter().all(|byte| letter_or_digit(byte) || *byte == b'-')
}

/// The start of `text`, at most `longest` bytes, cut between characters.
pub(super) fn cut(text: &str, longest: usize) -> &str {
    let mut end = text.len().min(longest);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A name or ID that will be a key, a line on the dashboard and part of a
/// URL: control characters and a megabyte of text have no place there.
pub(super) fn valid_name(what: &str, text: &str) -> Result<(), String> {
    if text.len() > LONGEST_NAME {
        return Err(format!("Invalid {what}: longer than {LONGEST_NAME} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("Invalid {what} {text:?}: it contains control characters"));
    }
    Ok(())
}

/// The duration `field` of a check, if given and not zero, from `shortest`
/// to `LONGEST_CHECK_DURATION`.
pub(super) fn check_duration(
    field: &str,
    value: &Option<Value>,
    shortest: Duration,
) -> Result<Option<Duration>, String> {
    let Some(value) = value else { return Ok(None) };
    let duration =
        go_duration(value).map_err(|error| format!("Invalid check: {field}: {error}"))?;
    if duration.is_zero() {
        return Ok(None);
    }
    if duration < shortest || duration > LONGEST_CHECK_DURATION {
        let longest = humantime::format_duration(LONGEST_CHECK_DURATION);
        let allowed = match shortest {
            Duration::ZERO => format!("at most {longest}"),
            shortest => format!("from {} to {longest}", humantime::format_duration(shortest)),
        };
        return Err(format!("Invalid check: {field} must be {allowed}, not {value}"));
    }
    Ok(Some(duration))
}

/// A Go duration as Consul's clients send it: "10s", "1m30s", "500ms".
fn go_duration(value: &Value) -> Result<Duration, String> {
    let text = value.as_str().ok_or(format!("invalid duration {value}"))?;
    humantime::parse_duration(text).map_err(|error| format!("invalid duration '{text}': {error}"))
}
