//! The page in a real browser, headless Chromium, with step 08 sending it
//! one failed request: what a learner sees instead of Jaeger.
//!
//! ```sh
//! cargo test -p trace-viewer --test viewer -- --ignored browser
//! ```
//!
//! With `TRACE_VIEWER_SCREENSHOT=slides/screens/trace-viewer.png` (relative
//! to the workspace), the same run writes the screenshot the README and the
//! slides show. `CHROMIUM` names another browser program than `chromium`.

use super::*;

/// The longest Chromium may take to load and dump or draw the page.
const BROWSER_PATIENCE: Duration = Duration::from_secs(120);

/// Runs headless Chromium on `url` with `what` (`--dump-dom`, or
/// `--screenshot=<file>`), in a profile of its own; what it printed.
async fn chromium(what: &[&str], url: &str) -> String {
    let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let profile =
        std::env::temp_dir().join(format!("trace-viewer-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let run = tokio::process::Command::new(&program)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .args(what)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_PATIENCE, run).await;
    let _ = std::fs::remove_dir_all(&profile);
    let output = output.expect("chromium answered in time").expect("chromium on PATH");
    let (printed, said) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} failed: {said}");
    // The page's script ran without an error.
    assert!(!said.contains("Uncaught"), "{said}");
    printed.into_owned()
}

#[actix_web::test]
#[ignore = "needs chromium on PATH"]
async fn in_a_browser_a_failed_request_is_one_trace_in_red_and_a_graph() {
    let viewer = start_viewer(100);
    let (mut step, gateway) = start_step08(&viewer).await;
    let (status, trace_id) = through_gateway(&gateway, "/api/service1/?fail=true").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    viewer.trace(&trace_id, whole).await;

    let dom = chromium(&["--dump-dom"], &viewer.page_url).await;
    let spans = viewer.trace(&trace_id, whole).await;
    // One trace, the request's; its spans as rows, the failed ones red:
    // every one from service2's up to the gateway's.
    assert_eq!(dom.matches("<article class=\"trace\"").count(), 1, "{dom}");
    assert!(dom.contains(&format!("<article class=\"trace\" id=\"{trace_id}\">")), "{dom}");
    let row = |span: &Span| format!(" id=\"{trace_id}-{}\"", span.span_id);
    let shown: Vec<&Span> = spans.iter().filter(|span| dom.contains(&row(span))).collect();
    for span in &shown {
        let class = if span.error { "span error" } else { "span" };
        assert!(
            dom.contains(&format!("<details class=\"{class}\"{}", row(span))),
            "{span:#?}\n{dom}"
        );
    }
    let failed =
        |service: &str| shown.iter().filter(|span| span.service == service && span.error).count();
    assert!(failed("gateway") >= 2 && failed("service1") >= 3 && failed("service2") == 2, "{dom}");
    assert!(dom.contains(".error .bar { background: #e02424;"), "{dom}");
    // The graph: gateway -> service1 -> service2, left to right.
    for (from, to) in [("gateway", "service1"), ("service1", "service2")] {
        assert!(
            dom.contains(&format!("<g class=\"call\" data-from=\"{from}\" data-to=\"{to}\">")),
            "{dom}"
        );
    }
    let x = |service: &str| super::page::box_x(&dom, service);
    assert!(x("gateway") < x("service1") && x("service1") < x("service2"), "{dom}");

    screenshot(&viewer.page_url).await;

    // A span named with HTML in it: shown as its text, no element made.
    let html = "GET /<img src=x onerror=alert(1)><b>bold</b>";
    let span = one_span([0x0b; 16], 1, html, "<script>alert(2)</script>");
    assert_eq!(
        viewer.post(PROTOBUF, export_spans("service<9>", vec![span])).await.0,
        StatusCode::OK
    );
    let dom = chromium(&["--dump-dom"], &viewer.page_url).await;
    let text = "GET /&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;bold&lt;/b&gt;";
    assert!(dom.contains(&format!("<span class=\"name\">{text}</span>")), "{dom}");
    assert!(dom.contains("service&lt;9&gt;: "), "{dom}");
    assert!(
        !dom.contains("<img") && !dom.contains("<b>") && !dom.contains("<script>alert"),
        "{dom}"
    );

    step.start_kill().unwrap();
    step.wait().await.unwrap();
}

/// The page as a projector shows it, 1280 x 720, drawn at 1.5 times for a
/// sharp picture: to `TRACE_VIEWER_SCREENSHOT`, or to a file that is then
/// removed.
async fn screenshot(url: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let (file, keep) = match std::env::var_os("TRACE_VIEWER_SCREENSHOT") {
        Some(file) => (root.join(file), true),
        None => {
            (std::env::temp_dir().join(format!("trace-viewer-{}.png", std::process::id())), false)
        }
    };
    let _ = std::fs::remove_file(&file);
    let target = format!("--screenshot={}", file.display());
    let size = ["--window-size=1280,720", "--force-device-scale-factor=1.5", "--hide-scrollbars"];
    chromium(&[&size[..], &[target.as_str()]].concat(), url).await;
    let png =
        std::fs::read(&file).unwrap_or_else(|_| panic!("no screenshot in {}", file.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is no PNG", file.display());
    if !keep {
        let _ = std::fs::remove_file(&file);
    }
}
