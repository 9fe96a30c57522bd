"""The docker-compose.yml rules, read from `docker compose config --format json`, for scripts/check-containers."""
import json
import re
import sys
import yaml

compose = json.load(open(sys.argv[1]))["services"]
raw = yaml.safe_load(open(sys.argv[2]))["services"]
services = sys.argv[3:]
problems = []


def seconds(value):
    return int(value.rstrip("s")) if value.endswith("s") and value[:-1].isdigit() else None



for name in services:
    spec = compose.get(name)
    if spec is None:
        problems.append(f"{name}: not in docker-compose.yml")
        continue
    build = spec.get("build") or {}
    if build.get("dockerfile") != f"{name}/Dockerfile" or not build.get("context"):
        problems.append(f"{name}: must build {name}/Dockerfile with the workspace root as context")
    health = spec.get("healthcheck") or {}
    if health.get("test") != ["CMD", f"/usr/local/bin/{name}", "--healthcheck"]:
        problems.append(f"{name}: the healthcheck must run `/usr/local/bin/{name} --healthcheck`")
    if health.get("interval") not in ("10s", "10000000000"):
        problems.append(f"{name}: the healthcheck runs every 10 s (interval: 10s), not {health.get('interval')}")
    if spec.get("restart") != "on-failure":
        problems.append(f"{name}: restart: on-failure")
    depends = spec.get("depends_on") or {}
    if not depends:
        problems.append(f"{name}: depends on its engines or services (depends_on with conditions)")
    for dependency, condition in depends.items():
        if condition.get("condition") not in ("service_healthy", "service_completed_successfully"):
            problems.append(f"{name}: depends_on {dependency} must wait for service_healthy")
for name, spec in compose.items():
    if spec.get("ports") and name != "api-gateway":
        problems.append(f"{name}: publishes a port; only the gateway's is published by default")
    one_shot = name.endswith("-init")
    if not one_shot and not spec.get("healthcheck"):
        problems.append(f"{name}: has no healthcheck, so nothing can wait for it")
    for key, value in (raw.get(name, {}).get("environment") or {}).items():
        if re.search(r"PASSWORD|SECRET|PRIVATE_KEY|TOKEN|CREDENTIAL", key) and \
                not re.fullmatch(r"\$\{" + re.escape(key) + r"(:?-)?\}", str(value)):
            problems.append(f"{name}: {key} must come from .env only (`${{{key}:-}}`), not be written here")
if not compose.get("api-gateway", {}).get("ports"):
    problems.append("api-gateway: its port must be published")
mongo = compose.get("mongodb", {})
if not str(mongo.get("image", "")).startswith("mongo:") or not mongo.get("volumes"):
    problems.append("mongodb: the official mongo image, with a volume for its data")
kafka = compose.get("kafka", {})
if not str(kafka.get("image", "")).startswith("apache/kafka:") or "broker,controller" not in json.dumps(kafka):
    problems.append("kafka: the official apache/kafka image in KRaft mode (broker and controller roles)")
if any("zookeeper" in name for name in compose):
    problems.append("no ZooKeeper: Kafka runs in KRaft mode")
init = json.dumps(compose.get("kafka-init", {}))
for topic in ("new-order", "order-processed", "payment-processed", "new-order.dlq", "payment-processed.dlq"):
    if f" {topic} " not in init and f" {topic};" not in init:
        problems.append(f"kafka-init: does not create the topic {topic}")
for problem in problems:
    print(f"  {problem}", file=sys.stderr)
if not problems:
    print(f"  {len(compose)} services: health checks every 10 s, depends_on conditions, restart on failure,"
          " only the gateway published, secrets only from .env")
sys.exit(1 if problems else 0)
