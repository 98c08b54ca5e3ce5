//! The web dashboard in a real browser: Debian's Chromium, headless, against
//! a real `sluice serve` running a job. The page must show the job, its
//! graph and live operator figures (fetched by its script, not served in
//! the HTML), and a screenshot is kept at `<target>/dashboard.png`.

use crate::api::Server;
use crate::support::{self, stderr};
use std::path::Path;
use std::process::Command;

fn chromium(dir: &Path, args: &[&str], url: &str) -> std::process::Output {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a headless browser: `apt-get install chromium` (scripts/setup.sh does)");
    Command::new(bin)
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
            "--window-size=1400,800",
            // Let the page's script fetch and render for a few (virtual)
            // seconds before the page is read.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn the_dashboard_shows_a_running_job_live() {
    let s = Server::start(&[]);
    assert_eq!(s.upload("usd_orders.wasm", "usd_orders.wasm").0, 201);
    assert_eq!(s.upload("count_sum.wasm", "count_sum.wasm").0, 201);
    let id = s.submit_orders_live();
    s.wait_for(&id, "records and rates", |j| {
        crate::api::operator(j, "orders")["records_in_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    });
    let browser = support::temp_dir();
    let o = chromium(browser.path(), &["--dump-dom"], &s.dashboard_url());
    assert!(o.status.success(), "{}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout);
    // What the script rendered from the API: the job, its status, the graph
    // and a row per operator with a count that has moved.
    assert!(dom.contains(&format!("data-id=\"{id}\"")), "{dom}");
    assert!(
        dom.contains("<span class=\"status running\" id=\"job-status\">running</span>"),
        "{dom}"
    );
    for uid in [
        "orders",
        "completed-usd",
        "revenue-per-minute",
        "revenue",
        "late-orders",
    ] {
        assert!(
            dom.contains(&format!("<g data-uid=\"{uid}\">")),
            "graph node {uid}: {dom}"
        );
        assert!(
            dom.contains(&format!("<tr data-uid=\"{uid}\"")),
            "row {uid}: {dom}"
        );
    }
    let counted = dom
        .split("<tr data-uid=\"orders\" data-records-in=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count for orders: {dom}"));
    assert!(counted > 0, "{dom}");

    let shot = support::target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let o = chromium(browser.path(), &[&arg], &s.dashboard_url());
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "a blank page? {} bytes", png.len());
    assert_eq!(
        s.request("POST", &format!("/v1/jobs/{id}/cancel"), None).0,
        202
    );
}

#[test]
fn the_dashboard_shows_a_sql_jobs_script_as_text() {
    let s = Server::start(&[]);
    // A comment with markup in it: the page must show it, not run it.
    let script = "-- <script>document.title='owned'</script> a slow generator
CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '50');
CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT id FROM gen;";
    let (status, body) = s.request(
        "POST",
        "/v1/jobs",
        Some(
            serde_json::to_vec(&serde_json::json!({ "sql": script, "file": "slow.sql" })).unwrap(),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    s.wait_for(&id, "the job to run", |j| j["status"] == "running");
    let browser = support::temp_dir();
    let o = chromium(browser.path(), &["--dump-dom"], &s.dashboard_url());
    assert!(o.status.success(), "{}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.contains("<details id=\"job-sql-box\"><summary>SQL script</summary><pre id=\"job-sql\">-- &lt;script&gt;document.title='owned'&lt;/script&gt; a slow generator\nCREATE TABLE gen"),
        "{dom}"
    );
    assert!(!dom.contains("<title>owned</title>"), "{dom}");
    assert_eq!(
        s.request("POST", &format!("/v1/jobs/{id}/cancel"), None).0,
        202
    );
}
