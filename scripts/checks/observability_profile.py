"""The observability profile of docker-compose.yml (Prometheus, Grafana, Jaeger), for scripts/check-containers."""
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlparse
import yaml

# The metrics the services expose (DOCUMENTATION.md#observability): the only names a dashboard may query.
METRICS = {
    "http_server_requests_total": "counter",
    "http_server_request_duration_seconds": "histogram",
    "downstream_requests_total": "counter",
    "downstream_request_duration_seconds": "histogram",
    "circuit_breaker_open": "gauge",
    "grpc_server_requests_total": "counter",
    "grpc_server_request_duration_seconds": "histogram",
    "kafka_messages_produced_total": "counter",
    "kafka_messages_consumed_total": "counter",
    "kafka_messages_failed_total": "counter",
    "kafka_consumer_lag": "gauge",
    "outbox_backlog": "gauge",
    "mongodb_command_duration_seconds": "histogram",
}
SERIES = {}  # the series names a query can select, and the metric each belongs to
for name, kind in METRICS.items():
    for suffix in ("_bucket", "_sum", "_count") if kind == "histogram" else ("",):
        SERIES[name + suffix] = name
PROFILE = "observability"
EXPECTED = {"jaeger": 16686, "prometheus": 9090, "grafana": 3001}  # service -> port published on 127.0.0.1

with_profile = json.load(open(sys.argv[1]))["services"]
without_profile = json.load(open(sys.argv[2]))["services"]
raw = yaml.safe_load(open(sys.argv[3]))["services"]
services = sys.argv[4:]
root = Path.cwd().resolve()
problems = []

# ---- compose: opt-in containers, local-only ports, health checks, mounted files from the repository
for name, spec in with_profile.items():
    if PROFILE in (spec.get("profiles") or []):
        if name in without_profile:
            problems.append(f"{name}: starts without --profile {PROFILE}")
        if name not in EXPECTED:
            problems.append(f"{name}: in the {PROFILE} profile but not expected there")
for name, published in EXPECTED.items():
    spec = with_profile.get(name)
    if spec is None:
        problems.append(f"{name}: missing from the {PROFILE} profile")
        continue
    if spec.get("profiles") != [PROFILE]:
        problems.append(f"{name}: profiles must be [{PROFILE}], so that it starts only when asked")
    image = str(spec.get("image", ""))
    if ":" not in image or image.endswith(":latest"):
        problems.append(f"{name}: the image {image} needs an explicit version tag")
    if not spec.get("healthcheck") or spec.get("restart") != "on-failure":
        problems.append(f"{name}: a healthcheck and restart: on-failure")
    ports = spec.get("ports") or []
    if [(p.get("host_ip"), str(p.get("published"))) for p in ports] != [("127.0.0.1", str(published))]:
        problems.append(f"{name}: publishes exactly 127.0.0.1:{published} (found {ports})")
    for volume in spec.get("volumes") or []:
        if volume.get("type") != "bind":
            continue
        source = Path(volume["source"]).resolve()
        if not source.is_relative_to(root) or not source.exists():
            problems.append(f"{name}: mounts {volume['source']}, which is not a file of the repository")
        elif not volume.get("read_only"):
            problems.append(f"{name}: mounts {source.relative_to(root)} read-write; configuration is mounted :ro")
mounts = {name: {v["target"]: Path(v["source"]) for v in (with_profile.get(name) or {}).get("volumes") or []
                 if v.get("type") == "bind"} for name in EXPECTED}
jaeger_env = (with_profile.get("jaeger") or {}).get("environment") or {}
if jaeger_env.get("JAEGER_LISTEN_HOST") != "0.0.0.0":
    problems.append("jaeger: JAEGER_LISTEN_HOST=0.0.0.0, so that OTLP on 4317/4318 is reachable from the services")

# ---- the services: trace export off unless .env enables it, a service name, the payment-service's metrics port
ports = {}
for name in services:
    environment = (raw.get(name) or {}).get("environment") or {}
    if environment.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "${OTEL_EXPORTER_OTLP_ENDPOINT:-}":
        problems.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT: ${{OTEL_EXPORTER_OTLP_ENDPOINT:-}} (empty: no export)")
    if environment.get("OTEL_SERVICE_NAME") != name:
        problems.append(f"{name}: OTEL_SERVICE_NAME: {name}")
    rendered = (with_profile.get(name) or {}).get("environment") or {}
    ports[name] = rendered.get("METRICS_PORT") or rendered.get("PORT")
    if name == "payment-service" and not rendered.get("METRICS_PORT"):
        problems.append(f"{name}: METRICS_PORT (its port speaks gRPC only; /metrics is on the side port)")
if "http://jaeger:4318" not in Path(".env.example").read_text():
    problems.append(".env.example: say that OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318 sends traces to Jaeger")

# ---- prometheus.yml: one job per service, named after it, scraping its metrics port
prometheus = with_profile.get("prometheus") or {}
config_flag = next((a.split("=", 1)[1] for a in prometheus.get("command") or [] if a.startswith("--config.file=")),
                   "/etc/prometheus/prometheus.yml")
config_path = mounts.get("prometheus", {}).get(config_flag)
if config_path is None:
    problems.append(f"prometheus: nothing of the repository is mounted on {config_flag}")
else:
    config = yaml.safe_load(config_path.read_text()) or {}
    jobs = {}
    for job in config.get("scrape_configs") or []:
        targets = [t for static in job.get("static_configs") or [] for t in static.get("targets") or []]
        jobs[job.get("job_name")] = (targets, job.get("metrics_path", "/metrics"))
    if set(jobs) != set(services):
        problems.append(f"prometheus.yml: the jobs must be the services, named after them: {sorted(services)},"
                        f" found {sorted(map(str, jobs))}")
    for name in services:
        targets, path = jobs.get(name, ([], "/metrics"))
        if name in jobs and (targets != [f"{name}:{ports[name]}"] or path != "/metrics"):
            problems.append(f"prometheus.yml: job {name} scrapes {name}:{ports[name]}/metrics (found {targets} {path})")

# ---- Grafana: a Prometheus datasource reaching the prometheus container, the dashboards' folder mounted
grafana = with_profile.get("grafana") or {}
grafana_mounts = mounts.get("grafana", {})
provisioning = grafana_mounts.get("/etc/grafana/provisioning")
datasource_uids = set()
dashboard_dirs = []
if provisioning is None:
    problems.append("grafana: scripts/observability/grafana/provisioning must be mounted on /etc/grafana/provisioning")
else:
    for path in sorted((provisioning / "datasources").glob("*.y*ml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("datasources") or []:
            if source.get("type") == "prometheus":
                url = urlparse(source.get("url", ""))
                if url.hostname != "prometheus" or url.port != 9090:
                    problems.append(f"{path.relative_to(root)}: the Prometheus datasource must use http://prometheus:9090")
                datasource_uids.add(source.get("uid"))
    if not datasource_uids:
        problems.append("grafana: no Prometheus datasource provisioned (provisioning/datasources/*.yml)")
    for path in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in (yaml.safe_load(path.read_text()) or {}).get("providers") or []:
            folder = (provider.get("options") or {}).get("path")
            if folder not in grafana_mounts:
                problems.append(f"{path.relative_to(root)}: dashboards path {folder} is not mounted from the repository")
            else:
                dashboard_dirs.append(grafana_mounts[folder])
    if not dashboard_dirs:
        problems.append("grafana: no dashboard provider (provisioning/dashboards/*.yml)")
home = ((grafana.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"))
if home:
    folder = next((source for target, source in grafana_mounts.items() if home.startswith(target + "/")), None)
    if folder is None or not (folder / home.rsplit("/", 1)[1]).is_file():
        problems.append(f"grafana: the home dashboard {home} is not a mounted file of the repository")
env = grafana.get("environment") or {}
if env.get("GF_AUTH_ANONYMOUS_ENABLED") != "true" or env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer":
    problems.append("grafana: anonymous access as Viewer (GF_AUTH_ANONYMOUS_ENABLED, GF_AUTH_ANONYMOUS_ORG_ROLE)")

# ---- the dashboards: JSON, and queries that name only the metrics above
def series_in(expr):
    """The series names a PromQL expression selects: what is left once strings, label matchers, ranges,
    grouping clauses, Grafana variables and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end():].lstrip()
        word = match.group()
        if following.startswith("(") or word.lower() in {"by", "without", "on", "ignoring", "group_left", "group_right",
                                                         "and", "or", "unless", "bool", "offset", "inf", "nan"}:
            continue
        names.add(word)
    return names

def all_panels(panels):
    for panel in panels or []:
        yield panel
        yield from all_panels(panel.get("panels"))

used = set()
dashboard_files = sorted({p for folder in dashboard_dirs for p in folder.glob("*.json")})
if dashboard_dirs and not dashboard_files:
    problems.append("grafana: no dashboard JSON in the provisioned folder")
uids = {}
query_count = 0
for path in dashboard_files:
    where = path.relative_to(root)
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        problems.append(f"{where}: not valid JSON: {error}")
        continue
    if not dashboard.get("uid") or dashboard["uid"] in uids:
        problems.append(f"{where}: needs a uid of its own")
    uids[dashboard.get("uid")] = where
    ids = [panel.get("id") for panel in all_panels(dashboard.get("panels"))]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{where}: every panel needs an id of its own")
    queries = []  # (where, PromQL)
    for panel in all_panels(dashboard.get("panels")):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", f"panel {panel.get('id')}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: panel \"{title}\" has no query")
        for target in targets:
            datasource = target.get("datasource") or panel.get("datasource") or {}
            uid = datasource.get("uid") if isinstance(datasource, dict) else datasource
            if uid not in datasource_uids and not str(uid).startswith("$"):
                problems.append(f"{where}: panel \"{title}\" queries the datasource {uid!r}, which is not provisioned")
            if not (target.get("expr") or "").strip():
                problems.append(f"{where}: panel \"{title}\" has an empty query ({target.get('refId')})")
            queries.append((f"panel \"{title}\"", target.get("expr") or ""))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query", "") if isinstance(query, dict) else str(query or "")
            inner = re.fullmatch(r"\s*(?:label_values|query_result)\((.*)\)\s*", query, re.S)
            if inner and "," in inner.group(1):
                query = inner.group(1).rsplit(",", 1)[0]
            elif inner:
                query = inner.group(1) if query.lstrip().startswith("query_result") else ""
            queries.append((f"variable ${variable.get('name')}", query))
    for label, expr in queries:
        query_count += 1
        if "__name__" in expr:
            problems.append(f"{where}: {label}: selects by __name__; name the metric")
        for name in sorted(series_in(expr)):
            if name in SERIES:
                used.add(SERIES[name])
            elif METRICS.get(name) == "histogram":
                problems.append(f"{where}: {label}: {name} is a histogram: query {name}_bucket, _sum or _count")
            else:
                problems.append(f"{where}: {label}: {name} is not a metric the services expose")
for name in sorted(set(METRICS) - used):
    problems.append(f"the dashboards show nothing of {name}")
documented = set(re.findall(r"`([a-z_:][a-z0-9_:]*)`", Path("DOCUMENTATION.md").read_text()))
for name in sorted(set(METRICS) - documented):
    problems.append(f"DOCUMENTATION.md: the metric {name} is not documented (in backquotes)")

for problem in problems:
    print(f"  {problem}", file=sys.stderr)
if not problems:
    print(f"  {', '.join(EXPECTED)} only with --profile {PROFILE}, on 127.0.0.1; prometheus.yml scrapes the"
          f" {len(services)} services on their ports; {len(dashboard_files)} dashboard(s), {query_count} queries over"
          f" the {len(METRICS)} documented metrics, each shown")
sys.exit(1 if problems else 0)
