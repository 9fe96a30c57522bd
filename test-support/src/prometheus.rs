//! Reading a Prometheus text exposition (`GET /metrics`) in tests.

/// The sum of the samples `name{labels…}` in `text` whose labels include `labels` (0 when there is none).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|(key, value)| line.contains(&format!("{key}=\"{value}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The HTTP requests `method route status` counted between two scrapes of `platform::http::observe`'s
/// metrics, checking that every one counted was also timed.
pub fn requests_between(before: &str, after: &str, method: &str, route: &str, status: &str) -> f64 {
    let labels = [("method", method), ("route", route), ("status", status)];
    let moved = |name| sample(after, name, &labels) - sample(before, name, &labels);
    let (requests, timed) = (moved("http_server_requests_total"), moved("http_server_request_duration_seconds_count"));
    assert_eq!(requests, timed, "{method} {route} {status}: every counted request is also timed");
    requests
}

/// Checks that each of `commands` (`insert`, `find`…) reached MongoDB and was timed by `platform::mongo`'s
/// command monitoring, as `text` (a scrape) reports it.
pub fn assert_mongodb_commands_timed(text: &str, commands: &[&str]) {
    for command in commands {
        let labels = [("command", *command), ("outcome", "success")];
        let count = sample(text, "mongodb_command_duration_seconds_count", &labels);
        assert!(count > 0.0, "no successful {command} timed:\n{text}");
        assert!(sample(text, "mongodb_command_duration_seconds_sum", &labels) > 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_samples_whose_labels_match() {
        let text =
            "# HELP x y\nreqs{method=\"GET\",status=\"200\"} 3\nreqs{method=\"GET\",status=\"404\"} 2\nreqs_sum 9\n";
        assert_eq!(sample(text, "reqs", &[("method", "GET")]), 5.0);
        assert_eq!(sample(text, "reqs", &[("status", "404")]), 2.0);
        assert_eq!(sample(text, "reqs", &[("method", "POST")]), 0.0);
        assert_eq!(sample(text, "reqs_sum", &[]), 9.0);
    }
}
