//! Request metrics in the Prometheus text format: a request counter and a latency histogram, both
//! labelled by method, route template (never the raw path, so ids do not explode the series) and status.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Labels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Per-bucket counts (not cumulative); rendering accumulates them.
    buckets: [u64; BUCKETS.len()],
}

/// The process's request metrics.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<Labels, Series>>,
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let labels = Labels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series.entry(labels).or_default();
        entry.count += 1;
        entry.sum_seconds += seconds;
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            entry.buckets[bucket] += 1;
        }
    }

    /// The metrics in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        out.push_str("# HELP agentd_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE agentd_http_requests_total counter\n");
        for (labels, data) in series.iter() {
            let _ = writeln!(
                out,
                "agentd_http_requests_total{{{}}} {}",
                label_text(labels),
                data.count
            );
        }
        out.push_str("# HELP agentd_http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE agentd_http_request_duration_seconds histogram\n");
        for (labels, data) in series.iter() {
            let text = label_text(labels);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(data.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "agentd_http_request_duration_seconds_bucket{{{text},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "agentd_http_request_duration_seconds_bucket{{{text},le=\"+Inf\"}} {}",
                data.count
            );
            let _ = writeln!(
                out,
                "agentd_http_request_duration_seconds_sum{{{text}}} {}",
                data.sum_seconds
            );
            let _ = writeln!(
                out,
                "agentd_http_request_duration_seconds_count{{{text}}} {}",
                data.count
            );
        }
        out
    }
}

fn label_text(labels: &Labels) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{}\"",
        escape(&labels.method),
        escape(&labels.route),
        labels.status
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let metrics = Metrics::default();
        metrics.record("GET", "/keys/{key_id}", 200, Duration::from_millis(3));
        metrics.record("GET", "/keys/{key_id}", 200, Duration::from_millis(30));
        metrics.record("GET", "/keys/{key_id}", 404, Duration::from_secs(10));
        let text = metrics.render();
        let ok = r#"method="GET",route="/keys/{key_id}",status="200""#;
        assert!(
            text.contains(&format!("agentd_http_requests_total{{{ok}}} 2")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "agentd_http_request_duration_seconds_bucket{{{ok},le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "agentd_http_request_duration_seconds_bucket{{{ok},le=\"0.05\"}} 2"
        )));
        let slow = r#"method="GET",route="/keys/{key_id}",status="404""#;
        assert!(text.contains(&format!(
            "agentd_http_request_duration_seconds_bucket{{{slow},le=\"5\"}} 0"
        )));
        assert!(text.contains(&format!(
            "agentd_http_request_duration_seconds_bucket{{{slow},le=\"+Inf\"}} 1"
        )));
    }
}
