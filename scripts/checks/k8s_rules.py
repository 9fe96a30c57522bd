"""The Kubernetes manifest rules, read from the rendered local overlay, for scripts/check-containers."""
import sys
from pathlib import Path
import yaml

overlay = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
services = sys.argv[2:]
problems = []
for service in services:
    base_dir = Path(service, "k8s")
    base = [d for p in sorted(base_dir.glob("*.yaml")) for d in yaml.safe_load_all(open(p)) if d]
    kinds = {}
    for doc in base:
        kinds.setdefault(doc.get("kind"), []).append(doc)
    if kinds.get("Secret"):
        problems.append(f"{service}/k8s: a base refers to Secrets, it never holds one")
    deployments = [d for d in overlay if d["kind"] == "Deployment" and d["metadata"]["name"] == service]
    if len(deployments) != 1:
        problems.append(f"{service}: expected one Deployment in the local overlay")
        continue
    deployment = deployments[0]
    spec = deployment["spec"]
    if spec.get("replicas", 1) < 2:
        problems.append(f"{service}: a stateless service runs 2+ replicas")
    pod = spec["template"]["spec"]
    pod_security = pod.get("securityContext") or {}
    if not pod_security.get("runAsNonRoot"):
        problems.append(f"{service}: securityContext.runAsNonRoot")
    for container in pod["containers"]:
        security = container.get("securityContext") or {}
        if not security.get("readOnlyRootFilesystem") or security.get("allowPrivilegeEscalation") is not False \
                or "ALL" not in (security.get("capabilities") or {}).get("drop", []):
            problems.append(f"{service}: readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(bound) or {}):
                problems.append(f"{service}: resources.{bound} for cpu and memory")
        readiness, liveness = container.get("readinessProbe"), container.get("livenessProbe")
        if not readiness or not liveness:
            problems.append(f"{service}: readiness and liveness probes")
        elif service == "payment-service":
            if (readiness.get("grpc") or {}).get("service") != "payment.v1.PaymentService":
                problems.append(f"{service}: readiness through gRPC health of payment.v1.PaymentService")
        else:
            paths = {(readiness.get("httpGet") or {}).get("path"), (liveness.get("httpGet") or {}).get("path")}
            if (liveness.get("httpGet") or {}).get("path") != "/health" or not paths <= {"/ready", "/health"}:
                problems.append(f"{service}: HTTP probes on /ready (readiness) and /health (liveness)")
            if service != "api-gateway" and (readiness.get("httpGet") or {}).get("path") != "/ready":
                problems.append(f"{service}: readiness on /ready")
    labels = spec["selector"]["matchLabels"]
    def selects(selector, labels=labels):
        return selector and all(labels.get(k) == v for k, v in selector.items())
    if not any(d["kind"] == "Service" and selects(d["spec"].get("selector")) for d in overlay):
        problems.append(f"{service}: no Service selects its pods")
    hpas = [d for d in overlay if d["kind"] == "HorizontalPodAutoscaler"
            and d["spec"]["scaleTargetRef"]["name"] == service]
    if not hpas or hpas[0]["spec"].get("minReplicas", 1) < 2 or hpas[0]["apiVersion"] != "autoscaling/v2":
        problems.append(f"{service}: an autoscaling/v2 HorizontalPodAutoscaler with minReplicas >= 2")
    if not any(d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"].get("matchLabels")) for d in overlay):
        problems.append(f"{service}: no PodDisruptionBudget covers its pods")
for problem in problems:
    print(f"  {problem}", file=sys.stderr)
if not problems:
    print(f"  {len(services)} services: 2+ replicas, probes, requests and limits, locked-down security contexts,"
          " Service, HPA and PDB each; no Secret in a base")
sys.exit(1 if problems else 0)
