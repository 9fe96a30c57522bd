-- Shared by every scenario: prints one JSON line with the figures the benchmark keeps.
-- wrk counts non-2xx/3xx answers in summary.errors.status (they are also in summary.requests);
-- connect/read/write errors and timeouts are requests that got no answer.
-- A script may define extra_figures(), returning a table of name -> integer added to the line.
done = function(summary, latency, requests)
  local e = summary.errors
  local line = string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max)
  if extra_figures then
    for name, value in pairs(extra_figures()) do
      line = line .. string.format(',"%s":%d', name, value)
    end
  end
  io.write(line .. "}\n")
end
