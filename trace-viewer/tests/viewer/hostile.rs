//! What a sender can do to the viewer: nothing it sends may make a page or
//! a terminal dump out of proportion, keep a post waiting on a render, grow
//! memory with its ids, or print a terminal command; and what is not kept
//! is said where the trace is shown.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use trace_viewer::store::{MAX_STORE_BYTES, MAX_TRACE_BYTES};
use trace_viewer::waterfall::{MAX_INDENT, MAX_TEXT_BYTES};
use trace_viewer::web::MAX_PAGE_BYTES;

use super::*;

#[actix_web::test]
async fn a_chain_of_a_thousand_spans_makes_a_page_and_a_text_of_bounded_size() {
    let viewer = start_viewer(100);
    let (status, _) =
        viewer.post(PROTOBUF, export_spans("service1", chain([1; 16], 1000, 50))).await;
    assert_eq!(status, StatusCode::OK);

    let trace = viewer.store.lock().unwrap().snapshot().traces[0].clone();
    let text = trace_viewer::waterfall::render(&trace);
    assert!(text.len() <= MAX_TEXT_BYTES + 200, "{} bytes", text.len());
    let longest = text.lines().map(|line| line.chars().count()).max().unwrap();
    assert!(longest <= 200, "a line of {longest} characters");
    // What is not kept, and not shown, is counted where the trace is shown.
    let header = text.lines().next().unwrap();
    assert!(header.contains(" spans over the trace's limits"), "{header}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("… and ") && last.contains(" events more, not shown"), "{last}");

    let page = viewer.page().await;
    assert!(page.len() <= MAX_PAGE_BYTES, "{} bytes", page.len());
    assert!(page.contains(" spans over the trace&#39;s limits"), "{} bytes", page.len());

    // Deeper than MAX_INDENT, a span is indented no further and says its depth.
    let (status, _) = viewer.post(PROTOBUF, export_spans("service1", chain([2; 16], 40, 0))).await;
    assert_eq!(status, StatusCode::OK);
    let snapshot = viewer.store.lock().unwrap().snapshot();
    let text = trace_viewer::waterfall::render(&snapshot.traces[0]);
    let deep = format!("{}({}) GET /chain", "  ".repeat(MAX_INDENT), MAX_INDENT + 1);
    assert!(text.contains(&deep), "{text}");
    let longest = text.lines().map(|line| line.chars().count()).max().unwrap();
    assert!(longest <= 200, "a line of {longest} characters");
}

#[actix_web::test]
async fn the_traces_kept_stay_within_the_store_s_bytes() {
    let viewer = start_viewer(100);
    let traces = MAX_STORE_BYTES / MAX_TRACE_BYTES + 2;
    for n in 0..traces {
        let trace_id = [[1; 8], (n as u64 + 1).to_be_bytes()].concat().try_into().unwrap();
        let body = export_spans("service1", chain(trace_id, 1000, 50));
        assert_eq!(viewer.post(PROTOBUF, body).await.0, StatusCode::OK);
    }
    let snapshot = viewer.store.lock().unwrap().snapshot();
    assert!(snapshot.traces.len() < traces, "{} traces kept", snapshot.traces.len());
    // The newest is kept; each kept what fits, and counts the rest.
    assert!(snapshot.traces[0].id.ends_with(&format!("{traces:016x}")));
    for trace in &snapshot.traces {
        assert_eq!(trace.spans.len() + trace.dropped.over_limit, 1000);
    }
}

#[actix_web::test]
async fn ids_that_are_not_16_or_8_bytes_are_refused() {
    let viewer = start_viewer(100);
    let mut huge = one_span([2; 16], 1, "GET /huge", "");
    huge.trace_id = vec![7; 1024 * 1024];
    let (status, body) = viewer.post(PROTOBUF, export_spans("service1", vec![huge])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("a trace id of 1048576 bytes (16, not all zero expected)"), "{body}");

    // Among good spans, the others are kept and the sender told how many were not.
    let mut short = one_span([3; 16], 1, "GET /short", "");
    short.span_id = vec![1; 9];
    let mut zero = one_span([0; 16], 1, "GET /zero", "");
    zero.parent_span_id = vec![1; 8];
    let good = one_span([4; 16], 1, "GET /good", "");
    let body = export_spans("service1", vec![short, good, zero]);
    let (status, body) = viewer.post_bytes(PROTOBUF, body).await;
    assert_eq!(status, StatusCode::OK);
    let answer = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(partial.error_message.contains("a span id of 9 bytes"), "{}", partial.error_message);

    let snapshot = viewer.store.lock().unwrap().snapshot();
    let kept: Vec<&str> = snapshot.traces.iter().map(|trace| trace.id.as_str()).collect();
    assert_eq!(kept, ["04".repeat(16)]);
    let page = viewer.page().await;
    assert!(page.contains("; 3 spans refused (ids that are not ids)."), "{page}");
}

#[actix_web::test]
async fn spans_with_a_duplicate_id_are_counted_where_the_trace_is_shown() {
    let viewer = start_viewer(100);
    let spans = vec![
        one_span([5; 16], 1, "GET /root", ""),
        one_span([5; 16], 2, "GET /first", ""),
        one_span([5; 16], 2, "GET /second", ""),
    ];
    assert_eq!(viewer.post(PROTOBUF, export_spans("service1", spans)).await.0, StatusCode::OK);
    let trace = viewer.store.lock().unwrap().snapshot().traces[0].clone();
    let header = trace_viewer::waterfall::render(&trace).lines().next().unwrap().to_string();
    let id = "05".repeat(16);
    assert!(header.starts_with(&format!("trace {id}: 2 spans, ")), "{header}");
    assert!(header.ends_with(" (not kept: 1 span with a duplicate id)"), "{header}");
    assert!(viewer.page().await.contains("(not kept: 1 span with a duplicate id)"));
}

#[actix_web::test]
async fn a_post_is_filed_while_a_render_holds_its_snapshot() {
    let viewer = start_viewer(100);
    let first = export_spans("service1", vec![one_span([6; 16], 1, "GET /first", "")]);
    assert_eq!(viewer.post(PROTOBUF, first).await.0, StatusCode::OK);
    // A render works from a snapshot, taken under the lock and rendered
    // after it is let go: a post in the meantime is filed, and the snapshot
    // still shows the trace as it was.
    let snapshot = viewer.store.lock().unwrap().snapshot();
    let second = export_spans("service1", vec![one_span([6; 16], 2, "GET /second", "")]);
    assert_eq!(viewer.post(PROTOBUF, second).await.0, StatusCode::OK);
    assert_eq!(snapshot.traces[0].spans.len(), 1);
    let now = viewer.store.lock().unwrap().snapshot();
    assert_eq!(now.traces[0].spans.len(), 2);
}

#[actix_web::test]
async fn the_terminal_gets_no_control_character_and_a_bounded_trace() {
    let ports = free_ports(2);
    let mut viewer = tokio::process::Command::new(env!("CARGO_BIN_EXE_trace-viewer"))
        .args(["--otlp-port", &ports[0].to_string(), "--ui-port", &ports[1].to_string()])
        .args(["--quiet", "100ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut terminal = BufReader::new(viewer.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let deadline = Instant::now() + PATIENCE;
    let mut read_until = async |marker: &str, printed: &mut String| {
        while !printed.contains(marker) {
            let line = tokio::time::timeout_at(deadline.into(), terminal.next_line()).await;
            let line = line.expect("the viewer printed it in time").unwrap().expect("a line");
            printed.push_str(&line);
            printed.push('\n');
        }
    };
    read_until("listening on", &mut printed).await;
    let otlp = format!("http://127.0.0.1:{}/v1/traces", ports[0]);
    let post = async |body: Vec<u8>| {
        let request = awc::Client::default().post(&otlp).content_type(PROTOBUF);
        request.send_body(body).await.unwrap().status()
    };

    let hostile = "\u{1b}[2J\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{7}\u{9b}31m";
    let span = one_span([8; 16], 1, &format!("GET /ctl{hostile}"), &format!("event{hostile}"));
    assert_eq!(post(export_spans(&format!("svc{hostile}"), vec![span])).await, StatusCode::OK);
    read_until("· +1µs event", &mut printed).await;
    assert!(!printed.contains(['\u{1b}', '\u{7}', '\u{9b}']), "{printed:?}");
    assert!(printed.contains(r"GET /ctl\u{1b}[2J\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{7}\u{9b}31m"));

    // A chain's trace: printed whole, the last line counts what is not shown.
    let before = printed.len();
    assert_eq!(post(export_spans("service1", chain([9; 16], 1000, 50))).await, StatusCode::OK);
    read_until(" events more, not shown", &mut printed).await;
    let trace = &printed[printed[before..].find("trace 0909").unwrap() + before..];
    assert!(trace.len() <= MAX_TEXT_BYTES + 200, "{} bytes", trace.len());
    viewer.start_kill().unwrap();
    viewer.wait().await.unwrap();
}
