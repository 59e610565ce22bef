//! Prometheus' text exposition format, version 0.0.4: `# HELP`, `# TYPE`, then one line per
//! sample, `name{label="value"} number`.
//!
//! Written here rather than through `prometheus-client`, which writes OpenMetrics only (a
//! different text format, ending in `# EOF`), or `prometheus`, which brings protobuf along:
//! the format is a few lines of escaping and number formatting.

use std::fmt::{self, Write};

/// The `Content-Type` of the format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds one exposition, family by family.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
}

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub(crate) fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    /// One sample: `name{labels} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", Number(value));
        self
    }

    /// The text.
    pub(crate) fn finish(self) -> String {
        self.text
    }
}

/// A sample value as the format writes it: `+Inf`, `-Inf`, `NaN`, or the number.
struct Number(f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// `# HELP` text: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and newline escaped.
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `le` label values for histogram buckets, as the format writes them.
pub(crate) fn le(bound: f64) -> String {
    Number(bound).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_labels_and_special_numbers() {
        let mut e = Exposition::default();
        e.family("x_total", "Things\\ counted\nhere.", Kind::Counter)
            .sample("x_total", &[("reason", "a \"b\"\\\n")], 3.0)
            .family("y_seconds", "Time.", Kind::Histogram)
            .sample("y_seconds_bucket", &[("le", &le(0.0005))], 1.0)
            .sample("y_seconds_bucket", &[("le", &le(f64::INFINITY))], 2.0)
            .sample("y_seconds_sum", &[], 0.25);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things\\\\ counted\\nhere.\n\
             # TYPE x_total counter\n\
             x_total{reason=\"a \\\"b\\\"\\\\\\n\"} 3\n\
             # HELP y_seconds Time.\n\
             # TYPE y_seconds histogram\n\
             y_seconds_bucket{le=\"0.0005\"} 1\n\
             y_seconds_bucket{le=\"+Inf\"} 2\n\
             y_seconds_sum 0.25\n"
        );
    }
}
