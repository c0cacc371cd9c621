//! What people look at, in a real browser: the demo key's HTML page (`keywatch timeline KEY
//! --format html`) and the report, rendered by headless Chromium (Debian's package, which
//! `make test` installs) to PNG. The picture must not be blank, must show the waiting period
//! and the uses, and the page must raise no script error and fetch nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "1111aaaa-11aa-11aa-11aa-111111111111";
const AS_OF: &str = "2026-11-23T12:00:00Z";

fn chromium() -> String {
    let bin = std::env::var("KEYWATCH_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "headless Chromium ({bin}) is not installed: `make test` installs Debian's chromium; this test needs it and is NOT passed"
    );
    bin
}

fn keywatch(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(args)
        .output()
        .expect("run keywatch");
    assert!(
        out.status.success(),
        "keywatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Renders `page` to a PNG of `width`×`height`; returns the PNG's path and what the browser
/// logged on the page's console.
fn render(page: &Path, dir: &Path, width: u32, height: u32) -> (PathBuf, Vec<String>) {
    let png = page.with_extension("png");
    let profile = dir.join(format!(
        "profile-{}",
        page.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_owned)
        .collect();
    (png, console)
}

/// Pixels of a PNG as RGB.
fn pixels(png: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png).expect("png"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

/// The share of pixels near a colour.
fn share(px: &[[u8; 3]], near: impl Fn([u8; 3]) -> bool) -> f64 {
    px.iter().filter(|p| near(**p)).count() as f64 / px.len() as f64
}

fn self_contained(html: &str) {
    for fetch in [
        "src=",
        "href=\"http",
        "href='http",
        "url(",
        "@import",
        "<script",
        "<link",
    ] {
        assert!(
            !html.contains(fetch),
            "the page fetches or runs something: {fetch}"
        );
    }
}

#[test]
fn the_demo_keys_page_renders_in_chromium_as_a_picture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("k.db");
    let db = db.to_str().expect("utf-8");
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    keywatch(&[
        "replay",
        "--quiet",
        "--db",
        db,
        "--as-of",
        AS_OF,
        samples.to_str().expect("utf-8"),
    ]);
    let html = String::from_utf8(keywatch(&[
        "timeline", KEY, "--db", db, "--format", "html", "--as-of", AS_OF,
    ]))
    .expect("UTF-8");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"), "a picture");
    assert!(html.contains("pending deletion, 7-day window"));
    assert!(html.contains("deletion date 2026-11-24T09:00:00Z"));
    assert!(
        html.contains("role/orders-service"),
        "a lane for the principal"
    );
    self_contained(&html);
    let page = dir.path().join("key.html");
    std::fs::write(&page, &html).expect("write");

    let (png, console) = render(&page, dir.path(), 1280, 900);
    assert!(console.is_empty(), "the page logged: {console:?}");
    let (w, h, px) = pixels(&png);
    assert_eq!((w, h), (1280, 900));
    let white = share(&px, |p| p.iter().all(|c| *c > 245));
    assert!(white < 0.97, "not blank: {:.1}% white", white * 100.0);
    // The waiting period's band (#fdecea), the uses (green #2e8540, red #d62728).
    let band = share(&px, |[r, g, b]| {
        r > 245 && (225..=245).contains(&g) && (225..=245).contains(&b)
    });
    let green = share(&px, |[r, g, b]| r < 90 && g > 110 && b < 100);
    let red = share(&px, |[r, g, b]| r > 180 && g < 80 && b < 80);
    assert!(band > 0.01, "the waiting period is drawn: {band}");
    assert!(green > 0.0003, "successful uses are drawn: {green}");
    assert!(red > 0.0003, "rejected uses and pages are drawn: {red}");

    // The report of every key at risk renders too.
    let report =
        String::from_utf8(keywatch(&["report", "--db", db, "--as-of", AS_OF])).expect("UTF-8");
    self_contained(&report);
    assert!(report.contains(KEY));
    let page = dir.path().join("report.html");
    std::fs::write(&page, &report).expect("write");
    let (png, console) = render(&page, dir.path(), 1280, 2400);
    assert!(console.is_empty(), "the report logged: {console:?}");
    let (_, _, px) = pixels(&png);
    assert!(share(&px, |p| p.iter().all(|c| *c > 245)) < 0.97);
}

/// The harness itself: a page with a script error is caught, and a blank page is blank.
#[test]
fn the_browser_check_sees_script_errors_and_blank_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>no_such_function()</script></body></html>",
    )
    .expect("write");
    let (png, console) = render(&page, dir.path(), 400, 300);
    assert!(
        console.iter().any(|l| l.contains("no_such_function")),
        "{console:?}"
    );
    let (_, _, px) = pixels(&png);
    assert!(
        share(&px, |p| p.iter().all(|c| *c > 245)) > 0.99,
        "blank is blank"
    );
}
