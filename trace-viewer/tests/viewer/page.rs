//! The page as Jaeger's screens draw a trace: each trace a time line of
//! bars, errors in red, a span's attributes and events under it; who calls
//! whom as a graph; new traces without a reload; all within its bytes.

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::trace::v1::Status;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use trace_viewer::timeline::MAX_TRACE_HTML;
use trace_viewer::web::MAX_PAGE_BYTES;

use super::*;

/// A span of `service` from `start` to `end` µs, under `parent` (0: none).
fn span_of(
    trace_id: [u8; 16],
    id: u64,
    parent: u64,
    name: &str,
    (start, end): (u64, u64),
) -> OtlpSpan {
    OtlpSpan {
        parent_span_id: if parent == 0 { vec![] } else { parent.to_be_bytes().to_vec() },
        start_time_unix_nano: 1_000 * start,
        end_time_unix_nano: 1_000 * end,
        events: vec![],
        ..one_span(trace_id, id, name, "")
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    let value = Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) });
    KeyValue { key: key.into(), value, ..KeyValue::default() }
}

/// gateway -> service1 (which fails) -> service2, and gateway -> registry.
async fn post_a_failure(viewer: &Viewer, trace_id: [u8; 16]) {
    let mut root = span_of(trace_id, 1, 0, "GET /api/service1", (0, 1000));
    root.kind = SpanKind::Server.into();
    root.attributes =
        vec![string("http.route", "/api/{service}/{path}"), string("note", "<i>x</i>")];
    root.events =
        vec![Event { time_unix_nano: 50_000, name: "circuit <closed>".into(), ..Event::default() }];
    let registry = span_of(trace_id, 2, 1, "GET /v1/health/service/{name}", (0, 100));
    let mut service1 = span_of(trace_id, 3, 1, "GET /{any:.*}", (100, 600));
    service1.status =
        Some(Status { message: "502 <from service2>".into(), code: SpanStatus::Error.into() });
    let service2 = span_of(trace_id, 4, 3, "GET /{any:.*}", (200, 500));
    for (service, span) in
        [("gateway", root), ("registry", registry), ("service1", service1), ("service2", service2)]
    {
        assert_eq!(
            viewer.post(PROTOBUF, export_spans(service, vec![span])).await.0,
            StatusCode::OK
        );
    }
}

#[actix_web::test]
async fn a_trace_is_a_time_line_of_bars_in_its_services_colours_errors_in_red() {
    let viewer = start_viewer(100);
    post_a_failure(&viewer, [3; 16]).await;
    let page = viewer.page().await;
    let id = "03".repeat(16);
    let span = |n: u64| format!("{id}-{n:016x}");

    assert!(page.contains(&format!("<article class=\"trace\" id=\"{id}\">")), "{page}");
    assert!(page.contains("<span>gateway: GET /api/service1</span>"), "{page}");
    assert!(page.contains("4 spans · 1.0ms · <span class=\"failed\">1 failed</span>"), "{page}");
    // Each row: its service's colour, its depth, a bar placed and sized by
    // when it ran, its duration beside it; the failed one red.
    assert!(page.contains(&format!("<details class=\"span\" id=\"{}\" style=\"--c:", span(1))));
    assert!(
        page.contains(&format!("<details class=\"span error\" id=\"{}\" style=\"--c:", span(3)))
    );
    assert!(!page.contains(&format!("<details class=\"span error\" id=\"{}\"", span(4))));
    assert!(page.contains(";--d:2\"><summary>"), "service2's, two below the root: {page}");
    assert!(
        page.contains("<span class=\"bar\" style=\"left:10.00%;width:50.00%\"></span>"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"took after\" style=\"left:60.00%\">500µs</span>"),
        "{page}"
    );
    assert!(page.contains("<span class=\"took on\" style=\"left:0.00%\">1.0ms</span>"), "{page}");
    // Under a row, its details: what it carried, escaped.
    assert!(page.contains("<tr><th>note</th><td>&lt;i&gt;x&lt;/i&gt;</td></tr>"), "{page}");
    assert!(
        page.contains("<li><span class=\"at\">+50µs</span> circuit &lt;closed&gt;</li>"),
        "{page}"
    );
    assert!(page.contains("failed: 502 &lt;from service2&gt;"), "{page}");
    assert!(page.contains("server span of gateway · at +0µs · took 1.0ms"), "{page}");
    assert!(!page.contains("<i>x") && !page.contains("<closed>"), "{page}");
    // The colours: the same service, the same colour; red for errors only.
    let colour = |service: &str| {
        let at = page.find(&format!("<span class=\"service\">{service}</span>")).unwrap();
        let row = &page[page[..at].rfind("<details").unwrap()..at];
        row[row.find("--c:").unwrap() + 4..row.find(";--d").unwrap()].to_string()
    };
    let colours: BTreeSet<String> =
        ["gateway", "registry", "service1", "service2"].map(colour).into();
    assert_eq!(colours.len(), 4, "{colours:?}");
    assert!(page.contains(".error .bar { background: #e02424;"), "{page}");

    // The graph: a box per service, an arrow per caller -> callee with
    // its count, columns left to right by call depth.
    for (from, to) in [("gateway", "service1"), ("service1", "service2"), ("gateway", "registry")] {
        let call = format!(
            "<g class=\"call\" data-from=\"{from}\" data-to=\"{to}\"><title>{from} → {to}: 1 call</title>"
        );
        assert!(page.contains(&call), "{page}");
    }
    let x = |service: &str| -> f64 { box_x(&page, service) };
    assert!(x("gateway") < x("service1") && x("service1") < x("service2"), "{page}");
}

/// Where the graph puts `service`'s box.
pub(super) fn box_x(page: &str, service: &str) -> f64 {
    let group = format!(
        "<g class=\"service\" data-service=\"{service}\"><title>{service}</title><rect x=\""
    );
    let at =
        page.find(&group).unwrap_or_else(|| panic!("no box for {service}: {page}")) + group.len();
    page[at..at + page[at..].find('"').unwrap()].parse().unwrap()
}

#[actix_web::test]
async fn an_open_page_gets_new_traces_without_a_reload() {
    let viewer = start_viewer(100);
    let page = viewer.page().await;
    assert!(page.contains("None yet: run a step"), "{page}");
    let version = |page: &str| {
        let prefix = "<main id=\"live\" data-version=\"";
        let at = page.find(prefix).unwrap() + prefix.len();
        page[at..at + page[at..].find('"').unwrap()].to_string()
    };
    let seen = version(&page);
    // What the page's script asks every 2 s: nothing new, nothing sent.
    let live = |since: &str| {
        let url = format!("{}live?since={since}", viewer.page_url);
        async move {
            let mut response = awc::Client::default().get(url).send().await.unwrap();
            let body = response.body().limit(MAX_PAGE_BYTES).await.unwrap();
            (response.status(), String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (status, body) = live(&seen).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));

    post_a_failure(&viewer, [4; 16]).await;
    let (status, fresh) = live(&seen).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fresh.starts_with("<main id=\"live\" data-version=\""), "{fresh}");
    assert_ne!(version(&fresh), seen);
    assert!(
        fresh.contains(&format!("<article class=\"trace\" id=\"{}\">", "04".repeat(16))),
        "{fresh}"
    );
    assert!(
        fresh.contains("Keeps the last 100 traces, at most 1000 spans each: 1 now. "),
        "{fresh}"
    );
    assert!(fresh.contains("<strong>0 spans dropped</strong>"), "{fresh}");
    assert_eq!(live(&version(&fresh)).await.0, StatusCode::NO_CONTENT);
    // The page itself has the script that asks.
    assert!(page.contains("fetch(\"live?since=\" + live.dataset.version"), "{page}");
}

#[actix_web::test]
async fn a_page_of_large_traces_stays_within_its_bytes() {
    let viewer = start_viewer(100);
    for n in 1..=10 {
        let body = export_spans("service1", chain([n; 16], 1000, 50));
        assert_eq!(viewer.post(PROTOBUF, body).await.0, StatusCode::OK);
    }
    let page = viewer.page().await;
    assert!(page.len() <= MAX_PAGE_BYTES, "{} bytes", page.len());
    assert!(page.contains(" older traces, not shown: the page stops at 4 MiB."));
    let cut = format!("a trace's part of the page stops at {} KiB.", MAX_TRACE_HTML / 1024);
    assert!(page.contains(&cut));
    assert!(page.trim_end().ends_with("</html>"));
}
