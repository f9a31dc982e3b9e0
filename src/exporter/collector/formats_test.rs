//! Protobuf and OpenMetrics of the golden read (golden.rs): the same families,
//! series and values as its text exposition, through the wire and back.

use std::sync::Arc;
use std::time::Duration;

use super::super::golden::{snapshot, topology};
use super::super::{pb, Exposition};
use super::classic_text;
use hge_shared::config::StatusLabel;

fn exposition() -> Arc<Exposition> {
    let exp = Exposition::new(vec![0.001, 0.1], StatusLabel::Class, 10_000);
    exp.set_topology(&topology());
    exp.record_read(Ok(snapshot()), Duration::from_millis(12)).unwrap();
    exp.state_mut().last_good_read_unix = 1_796_000_000.5;
    exp
}

/// Without the process_* families, which describe this test process as it runs.
fn not_process(text: &str) -> String {
    let mut out = String::new();
    let mut process = false;
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# HELP ").and_then(|l| l.split(' ').next()) {
            process = family.starts_with("process_");
        }
        if !process {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn names(families: &[pb::MetricFamily]) -> Vec<String> {
    families.iter().map(|f| f.name().to_string()).collect()
}

#[test]
fn the_protobuf_families_are_the_text_exposition_family_for_family_and_value_for_value() {
    let exp = exposition();
    let text = String::from_utf8(exp.render().concat()).unwrap();
    let families = exp.families();
    assert_eq!(not_process(&classic_text(&families)), not_process(&text));
    // The process metrics are there too, by the same names.
    let process: Vec<String> = names(&families).into_iter().filter(|n| n.starts_with("process_")).collect();
    assert!(process.contains(&"process_resident_memory_bytes".to_string()), "{process:?}");
    for name in &process {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} is not in the text");
    }
}

#[test]
fn the_delimited_body_decodes_to_the_same_families() {
    let exp = exposition();
    let decoded = pb::decode_delimited(&exp.protobuf().collect::<Vec<_>>().concat()).unwrap();
    let families = exp.families();
    assert_eq!(names(&decoded), names(&families));
    let fixed = |f: &Vec<pb::MetricFamily>| -> Vec<pb::MetricFamily> {
        f.iter().filter(|f| !f.name().starts_with("process_")).cloned().collect()
    };
    assert_eq!(fixed(&decoded), fixed(&families));
    let h = decoded.iter().find(|f| f.name() == "http_server_request_duration_seconds").unwrap();
    assert_eq!(h.r#type(), pb::MetricType::Histogram);
    let first = h.metric[0].histogram.as_ref().unwrap();
    // Classic buckets, cumulative, +Inf left to the count; no native buckets (yet).
    let buckets: Vec<(f64, u64)> = first.bucket.iter().map(|b| (b.upper_bound(), b.cumulative_count())).collect();
    assert_eq!(buckets, vec![(0.001, 4), (0.1, 6)]);
    assert_eq!((first.sample_count(), first.sample_sum()), (6, 0.00725));
    assert!(first.schema.is_none() && first.positive_span.is_empty());
    assert!(first.created_timestamp.is_some());
}

#[test]
fn openmetrics_names_counters_without_total_and_adds_created_and_eof() {
    let exp = exposition();
    let om = String::from_utf8(exp.scrape_openmetrics().plain().collect::<Vec<_>>().concat()).unwrap();
    // The own counters' as a Timestamp holds it (seconds and nanoseconds); the HTTP series' as read.
    let started = pb::Timestamp::from_unix(exp.started).unix();
    let read = exp.state().read.created.requests[0];
    let labels = r#"{target="host",interface="eth0",port="80",method="GET"}"#;
    for want in [
        "# TYPE http_server_requests counter\n".to_string(),
        format!("http_server_requests_total{labels} 7\n"),
        format!("http_server_requests_created{labels} {read}\n"),
        "# TYPE http_server_request_duration_seconds histogram\n".to_string(),
        "http_server_request_duration_seconds_created{target=\"host\",interface=\"eth0\",port=\"80\",method=\"GET\",\
         status_class=\"2xx\"} "
            .to_string(),
        "# TYPE http_golden_exporter_map_reads counter\nhttp_golden_exporter_map_reads_total 1\n".to_string(),
        format!("http_golden_exporter_map_reads_created {started}\n"),
        "# TYPE http_golden_exporter_flows gauge\nhttp_golden_exporter_flows 12\n".to_string(),
        // HELP escapes quotes in OpenMetrics.
        r#"its route is what its start decides, a template ending in *, or \"other\"."#.to_string(),
        "# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total ".to_string(),
    ] {
        assert!(om.contains(&want), "missing {want:?} in\n{om}");
    }
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    assert_eq!(om.matches("# EOF").count(), 1);
    assert!(!om.contains("_total_created") && !om.contains("# TYPE http_server_requests_total"), "{om}");
    // Every sample line of the text is in the OpenMetrics text (counters' aside, named alike).
    let text = String::from_utf8(exp.render().concat()).unwrap();
    for line in not_process(&text).lines().filter(|l| !l.starts_with('#')) {
        assert!(om.contains(&format!("\n{line}\n")), "{line:?} is not in the OpenMetrics text");
    }
}

#[test]
fn gzipped_openmetrics_and_gzipped_text_are_each_their_own_text() {
    use std::io::Read;
    let exp = exposition();
    let gunzip = |parts: Vec<bytes::Bytes>| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&parts.concat()[..]).read_to_string(&mut text).unwrap();
        text
    };
    let plain = |s: super::super::Scrape| String::from_utf8(s.plain().collect::<Vec<_>>().concat()).unwrap();
    // Each deflates its HTTP part once per read, apart; whichever comes first.
    // (The process metrics' values move from one scrape to the next.)
    let classic = gunzip(exp.scrape().gzip());
    let om = gunzip(exp.scrape_openmetrics().gzip());
    assert_eq!(not_process(&classic), not_process(&plain(exp.scrape())));
    assert_eq!(not_process(&om), not_process(&plain(exp.scrape_openmetrics())));
    assert!(om.contains("\nhttp_server_requests_created{") && om.ends_with("# EOF\n"), "{om}");
}
