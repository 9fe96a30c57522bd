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
  -- The latency distribution, for the percentile plot: [[percentile, microseconds], ...].
  local points = {}
  for _, p in ipairs({1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99}) do
    points[#points + 1] = string.format("[%g,%d]", p, latency:percentile(p))
  end
  points[#points + 1] = string.format("[100,%d]", latency.max)
  line = line .. ',"distribution_us":[' .. table.concat(points, ",") .. "]"
  if extra_figures then
    for name, value in pairs(extra_figures()) do
      line = line .. string.format(',"%s":%d', name, value)
    end
  end
  io.write(line .. "}\n")
end
