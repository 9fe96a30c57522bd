"""The Dockerfile rules and the build context each image gets (.dockerignore), for scripts/check-containers."""
import re
import sys
import tomllib
from pathlib import Path
from docker.utils.build import exclude_paths

services = sys.argv[1:]
problems = []
stages = {}
for service in services:
    path = Path(service, "Dockerfile")
    if not path.is_file():
        continue
    text = path.read_text()
    # the part from the first ARG/FROM up to the runtime stage: must be the same in every Dockerfile
    start = re.search(r"^(ARG|FROM)\b", text, re.M)
    runtime = list(re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I))
    if not start or len(runtime) < 2:
        problems.append(f"{path}: expected a multi-stage build")
        continue
    last = runtime[-1]
    stages[service] = re.sub(r"^#.*\n", "", text[start.start():last.start()], flags=re.M)
    final = text[last.start():]
    image = last.group(1)
    if not re.match(r"(gcr\.io/distroless/cc-debian\d+|debian:[a-z]+-slim)", image):
        problems.append(f"{path}: the runtime image {image} is neither distroless/cc nor debian-slim")
    stage_names = {m.group(2) for m in runtime if m.group(2)}
    for m in runtime:
        if m.group(1) not in stage_names and (":" not in m.group(1) or m.group(1).endswith(":latest")):
            problems.append(f"{path}: the image {m.group(1)} needs an explicit tag")
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not user or user[-1].split(":")[0] in {"0", "root"} or not user[-1].split(":")[0].isdigit():
        problems.append(f"{path}: the runtime stage must end as a numeric non-root USER (Kubernetes runAsNonRoot)")
    if not re.search(rf'^HEALTHCHECK\b.*\n?.*CMD \["/usr/local/bin/{service}", "--healthcheck"\]', final, re.M):
        problems.append(f"{path}: HEALTHCHECK must run the binary's own `{service} --healthcheck` (no curl)")
    if not re.search(rf'^ENTRYPOINT \["/usr/local/bin/{service}"\]', final, re.M):
        problems.append(f"{path}: ENTRYPOINT must be the {service} binary")
    if not re.search(r"^EXPOSE\s+\d+", final, re.M):
        problems.append(f"{path}: the runtime stage must EXPOSE the service's port")
    if re.search(r"^\s*RUN\b", final, re.M):
        problems.append(f"{path}: the runtime stage runs nothing (no shell, no package manager, no build tools)")
    if not re.search(r"cargo chef cook", text):
        problems.append(f"{path}: dependencies must be cooked in their own layer (cargo chef cook)")
if len(set(stages.values())) > 1:
    reference = next(iter(stages))
    different = [s for s in stages if stages[s] != stages[reference]]
    problems.append(f"the build stages of {', '.join(different)} differ from {reference}'s: keep them identical "
                    "so that BuildKit builds the workspace once for the five images")

patterns = [line.strip() for line in Path(".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
context = set(exclude_paths(".", patterns))
members = tomllib.loads(Path("Cargo.toml").read_text())["workspace"]["members"]
required = ["Cargo.toml", "Cargo.lock", "proto"]
for member in members:
    required += [f"{member}/Cargo.toml", f"{member}/src"]
    if Path(member, "build.rs").is_file():
        required.append(f"{member}/build.rs")
for needed in required:
    if needed not in context:
        problems.append(f".dockerignore: {needed} must be in the build context")
for path in context:
    top = path.split("/")[0]
    if top in {"target", ".git", ".venv", ".local", "secrets", "scripts"} or top.startswith(".env") \
            or "/k8s/" in f"/{path}/" or path.endswith(".pem"):
        problems.append(f".dockerignore: {path} must stay out of the build context")
for problem in problems:
    print(f"  {problem}", file=sys.stderr)
if not problems:
    print(f"  {len(stages)} Dockerfiles share their build stages; runtime stages distroless, non-root, self-probing;"
          f" build context: {len(context)} files")
sys.exit(1 if problems else 0)
