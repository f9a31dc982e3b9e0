//! Building metric families and encoding them as Prometheus text.

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

/// A family's name, help and type: everything but its samples.
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
}

/// One sample's labels and value.
pub type Sample = (Vec<(&'static str, String)>, f64);

impl Desc {
    pub const fn counter(name: &'static str, help: &'static str) -> Desc {
        Desc { name, help, kind: MetricType::COUNTER }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Desc {
        Desc { name, help, kind: MetricType::GAUGE }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Desc {
        Desc { name, help, kind: MetricType::HISTOGRAM }
    }

    /// The family with no samples yet.
    pub fn family(&self) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(self.name.to_string());
        f.set_help(self.help.to_string());
        f.set_field_type(self.kind);
        f
    }

    /// A counter or gauge family with these samples.
    pub fn with(&self, samples: impl IntoIterator<Item = Sample>) -> MetricFamily {
        let mut f = self.family();
        for (labels, v) in samples {
            let mut m = proto::Metric::from_label(labels.iter().map(|(n, v)| label(n, v)).collect());
            if self.kind == MetricType::COUNTER {
                let mut c = proto::Counter::default();
                c.set_value(v);
                m.set_counter(c);
            } else {
                let mut g = proto::Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
            f.mut_metric().push(m);
        }
        f
    }

    /// A family of one unlabelled sample.
    pub fn single(&self, v: f64) -> MetricFamily {
        self.with([(vec![], v)])
    }
}

pub fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// Append the text form of `families` to `buf`. Encoding only fails on
/// inconsistent families, which we build ourselves: logged, not returned.
pub fn encode(families: &[MetricFamily], buf: &mut Vec<u8>) {
    if let Err(e) = TextEncoder::new().encode(families, buf) {
        log::error!("encoding metrics: {e}");
    }
}
