//! A key's story as a picture: one self-contained HTML page (inline SVG and CSS; no script,
//! nothing fetched) with the key's lifecycle on a time axis, its uses as marks by principal
//! and outcome, and the pages raised. Uses are counted into columns of the axis, so a key
//! with half a million uses draws as quickly, and as legibly, as one with five.

use crate::render::entry_text;
use keywatch_core::alert::Alert;
use keywatch_core::event::{KeyEventKind, UsageOutcome};
use keywatch_core::page::sanitise;
use keywatch_core::preflight::Preflight;
use keywatch_core::timeline::{EntryDetail, KeyTimeline, ScheduleEnd};
use keywatch_core::{KmsEvent, Severity, Timestamp};
use keywatch_database::{DatabaseError, StreamId};
use keywatch_sqlite::SqliteDatabase;
use std::collections::HashMap;
use std::fmt::Write;

/// Principals drawn on lanes of their own (the most active); the rest share one lane.
pub const MAX_LANES: usize = 12;
/// Columns of the time axis into which uses are counted.
pub const COLUMNS: usize = 160;
/// Lifecycle entries and pages listed under the picture (all are drawn).
const MAX_LISTED: usize = 200;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 290.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 22.0;

/// How a use ended, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded.
    Succeeded = 0,
    /// Rejected because the key was pending deletion.
    RejectedPendingDeletion = 1,
    /// Failed for another reason (AccessDenied, throttling…).
    Failed = 2,
}

impl From<&UsageOutcome> for Outcome {
    fn from(o: &UsageOutcome) -> Self {
        match o {
            UsageOutcome::Succeeded => Outcome::Succeeded,
            UsageOutcome::RejectedPendingDeletion => Outcome::RejectedPendingDeletion,
            UsageOutcome::Failed { .. } => Outcome::Failed,
        }
    }
}

const OUTCOME_COLOUR: [&str; 3] = ["#2e8540", "#d62728", "#8c8c8c"];
const OUTCOME_NAME: [&str; 3] = ["succeeded", "rejected: pending deletion", "failed"];

/// The longest stretch the axis shows: a key created years ago is drawn at the left edge,
/// so that the weeks around its deletion stay readable.
const MAX_SPAN_MS: i64 = 90 * 86_400_000;

/// The span of the time axis.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    start: i64,
    end: i64,
    /// The first thing known, when it is before `start` (drawn at the left edge).
    earlier: Option<i64>,
}

impl Span {
    /// From the first activity (uses, schedules, lifecycle changes and pages, but not the
    /// creation) to the last thing known (including deletion dates), at most
    /// [`MAX_SPAN_MS`], with a margin.
    pub fn of(t: &KeyTimeline, alerts: &[Alert]) -> Self {
        let mut activity: Vec<i64> = Vec::new();
        activity.extend(
            t.entries
                .iter()
                .filter(|e| {
                    !matches!(
                        e.detail,
                        EntryDetail::Lifecycle(KeyEventKind::Created { .. })
                    )
                })
                .map(|e| e.event_time.millis()),
        );
        for u in &t.usage {
            activity.push(u.first_seen.millis());
            activity.push(u.last_seen.millis());
        }
        for s in &t.schedules {
            activity.push(s.scheduled_at.millis());
            activity.extend(s.deletion_date.map(Timestamp::millis));
        }
        activity.extend(t.deletion_date.map(Timestamp::millis));
        activity.extend(alerts.iter().map(|a| a.event_time.millis()));
        let created = t
            .created_at
            .map(Timestamp::millis)
            .into_iter()
            .chain(t.entries.first().map(|e| e.event_time.millis()));
        let first = activity.iter().copied().chain(created.clone()).min();
        let (lo, hi) = match (activity.iter().min(), activity.iter().max()) {
            (Some(lo), Some(hi)) => (*lo, *hi),
            _ => {
                let c = first.unwrap_or(0);
                (c, c)
            }
        };
        let lo = lo.max(hi - MAX_SPAN_MS);
        let pad = ((hi - lo) / 25).max(3_600_000);
        let start = lo - pad;
        Span {
            start,
            end: hi + pad,
            earlier: first.filter(|f| *f < start),
        }
    }

    fn x(&self, at: i64) -> f64 {
        let f = (at - self.start) as f64 / (self.end - self.start).max(1) as f64;
        LEFT + f.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn column(&self, at: i64) -> usize {
        let f = (at - self.start) as f64 / (self.end - self.start).max(1) as f64;
        ((f * COLUMNS as f64) as usize).min(COLUMNS - 1)
    }

    fn column_start(&self, c: usize) -> i64 {
        self.start + (self.end - self.start) * c as i64 / COLUMNS as i64
    }
}

/// Uses counted by lane (principal), column of the time axis and outcome: bounded by
/// `MAX_LANES + 1` × [`COLUMNS`] whatever the number of uses.
pub struct UsageGrid {
    span: Span,
    lanes: Vec<String>,
    lane_of: HashMap<String, usize>,
    cells: Vec<[u64; 3]>,
    totals: Vec<[u64; 3]>,
}

impl UsageGrid {
    /// An empty grid whose lanes are the timeline's most active principals.
    pub fn new(t: &KeyTimeline, span: Span) -> Self {
        let mut by_principal: HashMap<&str, u64> = HashMap::new();
        for u in &t.usage {
            *by_principal.entry(u.principal.0.as_str()).or_default() += u.successes + u.failures;
        }
        let mut ranked: Vec<(&str, u64)> = by_principal.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let lanes: Vec<String> = ranked
            .iter()
            .take(MAX_LANES)
            .map(|(p, _)| (*p).to_owned())
            .collect();
        let lane_of = lanes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i))
            .collect();
        let rows = lanes.len() + 1;
        UsageGrid {
            span,
            lanes,
            lane_of,
            cells: vec![[0; 3]; rows * COLUMNS],
            totals: vec![[0; 3]; rows],
        }
    }

    /// Counts one use.
    pub fn add(&mut self, at: Timestamp, principal: &str, outcome: Outcome) {
        let lane = self
            .lane_of
            .get(principal)
            .copied()
            .unwrap_or(self.lanes.len());
        let c = self.span.column(at.millis());
        self.cells[lane * COLUMNS + c][outcome as usize] += 1;
        self.totals[lane][outcome as usize] += 1;
    }

    /// Uses counted, all lanes.
    pub fn total(&self) -> u64 {
        self.totals.iter().flatten().sum()
    }

    /// Counts every use of `t`'s key in the store's event log, one record at a time.
    pub fn from_event_log(
        store: &SqliteDatabase,
        t: &KeyTimeline,
        span: Span,
    ) -> Result<Self, DatabaseError> {
        let mut grid = UsageGrid::new(t, span);
        store.visit_stream_records(&StreamId::Key(t.key_arn.clone()), |record| {
            let Ok(events) = record.into_events() else {
                return;
            };
            for e in events {
                if let KmsEvent::Key(k) = e {
                    if let (true, KeyEventKind::Used { outcome, .. }) =
                        (k.key == t.key_arn, &k.kind)
                    {
                        grid.add(k.context.event_time, &k.context.principal.0, outcome.into());
                    }
                }
            }
        })?;
        Ok(grid)
    }
}

/// Text from a record, for HTML: control characters removed, bounded, escaped.
fn esc(s: &str) -> String {
    let clean = sanitise(s, 512);
    let mut out = String::with_capacity(clean.len());
    for ch in clean.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#b10000",
        Severity::High => "#e67e00",
        Severity::Medium => "#1f77b4",
        Severity::Info => "#7f7f7f",
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}\
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}\
.facts dt{color:#666}.facts dd{margin:0}code{background:#f3f3f3;padding:1px 4px;border-radius:3px}\
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}\
th{color:#666;font-weight:600;border-bottom:1px solid #ddd}tr:nth-child(even) td{background:#fafafa}\
.warn{color:#b10000;font-weight:600}svg text{font:12px system-ui,sans-serif;fill:#333}\
.key+.key{border-top:2px solid #ddd;margin-top:36px;padding-top:12px}nav a{margin-right:12px}";

/// One page for one key.
pub fn key_page(t: &KeyTimeline, grid: &UsageGrid, alerts: &[Alert], p: &Preflight) -> String {
    let mut body = String::new();
    key_section(&mut body, t, grid, alerts, p);
    page(&format!("keywatch: {}", t.key_arn), &body)
}

/// One page for several keys (`keywatch report`): an index, then a section per key.
pub fn report_page(
    keys: &[(KeyTimeline, UsageGrid, Vec<Alert>, Preflight)],
    as_of: Timestamp,
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>keywatch: {} key(s) at risk</h1><p>As of {as_of}: keys pending deletion, deleted \
         with key material possibly left in a CloudHSM cluster, or that raised a high or \
         critical page.</p><nav>",
        keys.len()
    );
    for (t, ..) in keys {
        let _ = write!(
            body,
            "<a href=\"#{id}\">{id}</a>",
            id = esc(t.key_arn.key_id())
        );
    }
    body.push_str("</nav>");
    for (t, grid, alerts, p) in keys {
        key_section(&mut body, t, grid, alerts, p);
    }
    if keys.is_empty() {
        body.push_str("<p>No key is at risk.</p>");
    }
    page("keywatch report", &body)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

fn key_section(
    out: &mut String,
    t: &KeyTimeline,
    grid: &UsageGrid,
    alerts: &[Alert],
    p: &Preflight,
) {
    let _ = write!(
        out,
        "<section class=\"key\" id=\"{}\"><h1>{}</h1><dl class=\"facts\">",
        esc(t.key_arn.key_id()),
        esc(t.key_arn.as_str())
    );
    let mut fact = |name: &str, value: String| {
        let _ = write!(out, "<dt>{name}</dt><dd>{value}</dd>");
    };
    fact("state", esc(t.state.as_str()));
    if let Some(d) = t.deletion_date {
        fact("deletion date", esc(&d.to_string()));
    }
    fact("verdict", esc(&p.verdict_line));
    if let Some(ks) = &t.custom_key_store {
        fact(
            "custom key store",
            esc(&format!(
                "{} ({:?})",
                ks.custom_key_store_id, ks.key_store_type
            )),
        );
    }
    if t.orphaned_key_material.is_some() {
        fact(
            "warning",
            "<span class=\"warn\">key material may remain in the CloudHSM cluster and its backups</span>".into(),
        );
    }
    if t.state.is_pending_deletion() {
        fact(
            "rescue",
            format!(
                "<code>{}</code>",
                esc(&keywatch_core::alert::rescue_command(t))
            ),
        );
    }
    fact(
        "uses",
        format!(
            "{} counted from the event log: {} succeeded, {} rejected as pending deletion, {} failed",
            grid.total(),
            grid.totals.iter().map(|c| c[0]).sum::<u64>(),
            grid.totals.iter().map(|c| c[1]).sum::<u64>(),
            grid.totals.iter().map(|c| c[2]).sum::<u64>(),
        ),
    );
    out.push_str("</dl>");
    svg(out, t, grid, alerts);
    lists(out, t, alerts);
    out.push_str("</section>");
}

/// The picture: axis, lifecycle lane, pages lane, one lane per principal.
fn svg(out: &mut String, t: &KeyTimeline, grid: &UsageGrid, alerts: &[Alert]) {
    let span = grid.span;
    let lifecycle_y = 70.0;
    let pages_y = lifecycle_y + 46.0;
    let lanes_top = pages_y + 34.0;
    let lane_count =
        grid.lanes.len() + usize::from(grid.totals[grid.lanes.len()].iter().sum::<u64>() > 0);
    let height = lanes_top + LANE * lane_count as f64 + 80.0;
    let _ = write!(
        out,
        "<svg role=\"img\" aria-label=\"Timeline of {}\" width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\">",
        esc(t.key_arn.key_id())
    );
    // Waiting periods, behind everything.
    for s in &t.schedules {
        let from = s.scheduled_at.millis();
        let (to, how) = match &s.ended {
            Some(ScheduleEnd::Cancelled { at, .. }) => (at.millis(), "cancelled"),
            Some(ScheduleEnd::Deleted { at, .. }) => (at.millis(), "deleted"),
            None => (
                s.deletion_date.map_or(span.end, Timestamp::millis),
                "pending",
            ),
        };
        let (x0, x1) = (span.x(from), span.x(to));
        // The label inside a wide band, else beside it on the left.
        let (label_x, anchor) = if x1 - x0 > 180.0 {
            (x0 + 4.0, "start")
        } else {
            (x0 - 4.0, "end")
        };
        let _ = write!(
            out,
            "<rect x=\"{x0:.1}\" y=\"30\" width=\"{:.1}\" height=\"{:.0}\" fill=\"#fdecea\"><title>pending deletion from {} ({}-day window, {how})</title></rect>\
             <text x=\"{label_x:.1}\" y=\"44\" text-anchor=\"{anchor}\" style=\"fill:#b10000\">pending deletion, {}-day window</text>",
            (x1 - x0).max(1.0),
            height - 80.0,
            s.scheduled_at,
            s.window_days,
            s.window_days
        );
        if let Some(d) = s.deletion_date {
            let x = span.x(d.millis());
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" y1=\"30\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#b10000\" stroke-dasharray=\"4 3\"/>\
                 <text x=\"{:.1}\" y=\"24\" text-anchor=\"end\" style=\"fill:#b10000\">deletion date {d}</text>",
                height - 50.0,
                x - 2.0
            );
        }
    }
    // Axis.
    let axis_y = height - 50.0;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{axis_y:.0}\" x2=\"{:.0}\" y2=\"{axis_y:.0}\" stroke=\"#999\"/>",
        WIDTH - RIGHT
    );
    for i in 0..=6 {
        let at = span.start + (span.end - span.start) * i / 6;
        let x = span.x(at);
        let label = Timestamp::from_millis(at)
            .to_datetime()
            .format("%Y-%m-%d %H:%M");
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{axis_y:.0}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#999\"/>\
             <text x=\"{x:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{label}</text>",
            axis_y + 5.0,
            axis_y + 20.0
        );
    }
    if let Some(first) = span.earlier {
        let _ = write!(
            out,
            "<text x=\"{LEFT}\" y=\"{:.0}\" style=\"fill:#888\">← earlier, from {}: drawn at this edge</text>",
            axis_y + 34.0,
            Timestamp::from_millis(first)
        );
    }
    // Lifecycle.
    let _ = write!(
        out,
        "<text x=\"8\" y=\"{:.0}\">lifecycle</text><line x1=\"{LEFT}\" y1=\"{lifecycle_y}\" x2=\"{:.0}\" y2=\"{lifecycle_y}\" stroke=\"#ccc\"/>",
        lifecycle_y + 4.0,
        WIDTH - RIGHT
    );
    let mut shown = 0;
    for e in &t.entries {
        let (shape, colour) = match &e.detail {
            EntryDetail::Lifecycle(KeyEventKind::Created { .. }) => ("circle", "#2e8540"),
            EntryDetail::Lifecycle(KeyEventKind::DeletionScheduled { .. }) => {
                ("triangle", "#b10000")
            }
            EntryDetail::Lifecycle(KeyEventKind::DeletionCancelled) => ("square", "#2e8540"),
            EntryDetail::Lifecycle(KeyEventKind::Deleted { .. }) => ("cross", "#000"),
            EntryDetail::KeyStore { .. } => ("square", "#6a3d9a"),
            EntryDetail::UsedWhilePendingDeletion { .. }
            | EntryDetail::RejectedAfterCancel { .. } => continue,
            _ => ("circle", "#555"),
        };
        let x = span.x(e.event_time.millis());
        let y = lifecycle_y;
        let title = format!(
            "<title>{} {}: {} ({})</title>",
            e.event_time,
            esc(&e.event_name),
            esc(&entry_text(e)),
            esc(&e.principal.0)
        );
        let _ = match shape {
            "triangle" => write!(out, "<path d=\"M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z\" fill=\"{colour}\">{title}</path>", x, y - 7.0, x - 7.0, y + 6.0, x + 7.0, y + 6.0),
            "square" => write!(out, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"11\" height=\"11\" fill=\"{colour}\">{title}</rect>", x - 5.5, y - 5.5),
            "cross" => write!(out, "<path d=\"M{:.1} {:.1}l12 12m0 -12l-12 12\" stroke=\"{colour}\" stroke-width=\"3\">{title}</path>", x - 6.0, y - 6.0),
            _ => write!(out, "<circle cx=\"{x:.1}\" cy=\"{y}\" r=\"6\" fill=\"{colour}\">{title}</circle>"),
        };
        // Labels for the few that matter, alternately above and below.
        if shown < 12 {
            let dy = if shown % 2 == 0 { -12.0 } else { 22.0 };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                y + dy,
                esc(&e.event_name)
            );
            shown += 1;
        }
    }
    // Pages.
    let _ = write!(
        out,
        "<text x=\"8\" y=\"{:.0}\">pages raised ({})</text><line x1=\"{LEFT}\" y1=\"{pages_y}\" x2=\"{:.0}\" y2=\"{pages_y}\" stroke=\"#ccc\"/>",
        pages_y + 4.0,
        alerts.len(),
        WIDTH - RIGHT
    );
    for a in alerts {
        let x = span.x(a.event_time.millis());
        let _ = write!(
            out,
            "<path d=\"M{x:.1} {:.1}l6 6l-6 6l-6 -6Z\" fill=\"{}\"><title>{} [{}] {}: {}</title></path>",
            pages_y - 6.0,
            severity_colour(a.severity),
            a.event_time,
            a.severity.as_str(),
            esc(a.kind.as_str()),
            esc(&a.summary)
        );
    }
    // Uses, one lane per principal: per column a bar, its height by the log of the uses in
    // it, split by outcome.
    let max = grid
        .cells
        .iter()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        out,
        "<text x=\"8\" y=\"{:.0}\" style=\"font-weight:600\">uses by principal</text>",
        lanes_top - 8.0
    );
    let col_w = (WIDTH - LEFT - RIGHT) / COLUMNS as f64;
    for lane in 0..lane_count {
        let y = lanes_top + LANE * lane as f64;
        let name = grid
            .lanes
            .get(lane)
            .map_or("other principals".to_owned(), |p| short_principal(p));
        let tot = grid.totals[lane];
        let _ = write!(
            out,
            "<text x=\"8\" y=\"{:.1}\">{} <tspan style=\"fill:#888\">{}</tspan></text>",
            y + 15.0,
            esc(&name),
            tot.iter().sum::<u64>()
        );
        for c in 0..COLUMNS {
            let cell = grid.cells[lane * COLUMNS + c];
            let total = cell.iter().sum::<u64>();
            if total == 0 {
                continue;
            }
            let x = LEFT + col_w * c as f64;
            let bar = 2.0 + 16.0 * ((total as f64).ln_1p() / max.ln_1p());
            let mut below = 0.0;
            for (o, n) in cell.iter().enumerate() {
                if *n == 0 {
                    continue;
                }
                let h = bar * *n as f64 / total as f64;
                let _ = write!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {n} {} from {}</title></rect>",
                    y + 19.0 - below - h,
                    (col_w - 0.5).max(1.0),
                    OUTCOME_COLOUR[o],
                    esc(&name),
                    OUTCOME_NAME[o],
                    Timestamp::from_millis(grid.span.column_start(c))
                );
                below += h;
            }
        }
    }
    // Legend.
    let ly = height - 4.0;
    let mut lx = LEFT + 380.0;
    for (i, name) in OUTCOME_NAME.iter().enumerate() {
        let _ = write!(
            out,
            "<rect x=\"{lx:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{ly:.0}\">{name}</text>",
            ly - 9.0,
            OUTCOME_COLOUR[i],
            lx + 14.0
        );
        lx += 190.0;
    }
    out.push_str("</svg>");
}

/// `arn:aws:sts::111122223333:assumed-role/app/session` → `assumed-role/app/session (111122223333)`.
fn short_principal(p: &str) -> String {
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    let short = match parts.as_slice() {
        ["arn", _, _, _, account, resource] => format!("{resource} ({account})"),
        _ => p.to_owned(),
    };
    if short.chars().count() > 40 {
        format!("{}…", short.chars().take(39).collect::<String>())
    } else {
        short
    }
}

/// Under the picture: the entries, the pages and the usage, as tables.
fn lists(out: &mut String, t: &KeyTimeline, alerts: &[Alert]) {
    let _ = write!(out, "<h2>Pages raised ({})</h2>", alerts.len());
    if !alerts.is_empty() {
        out.push_str("<table><tr><th>when</th><th>severity</th><th>kind</th><th>summary</th></tr>");
        for a in alerts.iter().take(MAX_LISTED) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td style=\"color:{}\">{}</td><td>{}</td><td>{}</td></tr>",
                a.event_time,
                severity_colour(a.severity),
                a.severity.as_str(),
                esc(a.kind.as_str()),
                esc(&a.summary)
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(
        out,
        "<h2>Lifecycle and uses while pending deletion ({} events in all)</h2>",
        t.event_count
    );
    out.push_str("<table><tr><th>when</th><th>event</th><th>what</th><th>who</th></tr>");
    for e in t.entries.iter().take(MAX_LISTED) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.event_time,
            esc(&e.event_name),
            esc(&entry_text(e)),
            esc(&e.principal.0)
        );
    }
    out.push_str("</table>");
    if t.entries.len() > MAX_LISTED || t.pending_use_entries_dropped > 0 {
        let _ = write!(
            out,
            "<p>… {} more not listed (the picture counts them all).</p>",
            t.entries.len().saturating_sub(MAX_LISTED) as u64 + t.pending_use_entries_dropped
        );
    }
    if t.key_store_entries_dropped > 0 {
        let _ = write!(
            out,
            "<p>… {} earlier changes of its custom key store, not kept.</p>",
            t.key_store_entries_dropped
        );
    }
    out.push_str("<h2>Usage by principal and operation</h2><table><tr><th>principal</th><th>operation</th><th>succeeded</th><th>rejected (pending deletion)</th><th>refused (disabled)</th><th>failed otherwise</th><th>last seen</th></tr>");
    let mut usage: Vec<_> = t.usage.iter().collect();
    usage.sort_by_key(|u| std::cmp::Reverse(u.successes + u.failures));
    for u in usage.iter().take(MAX_LISTED) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.principal.0),
            esc(u.operation.as_str()),
            u.successes,
            u.rejected_pending_deletion,
            u.rejected_disabled,
            u.failures
                .saturating_sub(u.rejected_pending_deletion)
                .saturating_sub(u.rejected_disabled),
            u.last_seen
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywatch_core::KeyArn;

    #[test]
    fn half_a_million_uses_draw_in_bounded_space() {
        let key = KeyArn::parse(
            "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-11aa-11aa-11aa-111111111111",
        )
        .expect("arn");
        let t = KeyTimeline::new(key);
        let start = Timestamp::parse_rfc3339("2026-10-01T00:00:00Z").expect("time");
        let span = Span {
            start: start.millis(),
            end: start.millis() + 30 * 86_400_000,
            earlier: None,
        };
        let draw = |uses: u64| {
            let mut grid = UsageGrid::new(&t, span);
            for i in 0..uses {
                let at = start.plus_millis((i as i64 * 5_171) % (30 * 86_400_000));
                let who = format!("arn:aws:iam::111122223333:role/app-{}", i % 40);
                let outcome = match i % 7 {
                    0 => Outcome::RejectedPendingDeletion,
                    1 => Outcome::Failed,
                    _ => Outcome::Succeeded,
                };
                grid.add(at, &who, outcome);
            }
            assert_eq!(grid.total(), uses);
            key_page(
                &t,
                &grid,
                &[],
                &keywatch_core::preflight::preflight(&t, start, 30),
            )
        };
        let few = draw(5);
        let many = draw(500_000);
        assert!(many.contains("500000 counted from the event log"));
        assert!(
            many.len() < 600_000,
            "aggregated, not one mark per use: {} bytes",
            many.len()
        );
        assert!(few.len() < many.len());
        let marks = many.matches("<rect").count();
        assert!(marks <= (MAX_LANES + 1) * COLUMNS * 3 + 20, "{marks} marks");
    }

    /// Calls refused because the key was disabled have a column of their own: each is
    /// something that still depends on the key, unlike an access denied.
    #[test]
    fn the_usage_table_shows_calls_refused_as_disabled_apart() {
        let key = KeyArn::parse(
            "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-11aa-11aa-11aa-111111111111",
        )
        .expect("arn");
        let mut t = KeyTimeline::new(key);
        let at = Timestamp::parse_rfc3339("2026-10-01T00:00:00Z").expect("time");
        t.usage.push(keywatch_core::timeline::UsageRollup {
            principal: keywatch_core::event::Principal(
                "arn:aws:iam::111122223333:role/nightly".into(),
            ),
            operation: keywatch_core::KmsOperation::Decrypt,
            successes: 5,
            failures: 6,
            rejected_pending_deletion: 1,
            last_used: Some(at),
            first_seen: at,
            last_seen: at,
            rejected_disabled: 3,
            last_rejected_disabled: Some(at),
        });
        let grid = UsageGrid::new(
            &t,
            Span {
                start: at.millis(),
                end: at.millis() + 86_400_000,
                earlier: None,
            },
        );
        let page = key_page(
            &t,
            &grid,
            &[],
            &keywatch_core::preflight::preflight(&t, at, 30),
        );
        assert!(page.contains("<th>refused (disabled)</th><th>failed otherwise</th>"));
        assert!(
            page.contains("<td>Decrypt</td><td>5</td><td>1</td><td>3</td><td>2</td>"),
            "{page}"
        );
    }

    #[test]
    fn record_text_cannot_break_out_of_the_page() {
        assert_eq!(
            esc("<script>alert(1)</script>\u{1b}[2J\"'&"),
            "&lt;script&gt;alert(1)&lt;/script&gt; [2J&quot;&#39;&amp;"
        );
    }
}
