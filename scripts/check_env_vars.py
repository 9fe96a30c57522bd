#!/usr/bin/env python3
"""Every environment variable the deployment files set for a service is one the service reads.

A misspelt or stale variable in docker-compose.yml or a manifest is silently ignored by the service, which then
runs on its default: this check turns that into a failure naming the file, the service and the variable.

What each service reads, it says itself: `<service> --print-env` (platform::service_main) prints every variable
its configuration reads (read through a recording source, with every development default), and RUST_LOG. The
binaries are built first (`cargo build --workspace --bins`; CARGO_TARGET_DIR is honoured).

What is set for a service, and checked against that:
  - docker-compose.yml: `environment` and `env_file` of the compose services built from <service>/Dockerfile
    (or named like a service directory);
  - .env.example: every variable must be used by docker-compose.yml, and every variable docker-compose.yml
    interpolates must be listed there (it is the one place the settings are documented for compose users);
  - <service>/Dockerfile: `ENV` of the final stage;
  - Kubernetes: every YAML file under <service>/k8s/ and scripts/k8s/ (kustomizations, resources, patches):
    container `env` names; the keys of ConfigMaps and Secrets (resources, patches, configMapGenerator and
    secretGenerator, whose `envs` files under secrets/ are read from secrets.example/ when absent) that reach a
    container through `envFrom`. Keys of ConfigMaps and Secrets read one by one (secretKeyRef) must each be
    referenced by some container, and every ConfigMap and Secret must be used by some container.
    A resource belongs to the service whose directory holds it, or whose name prefixes its own
    (user-service-secrets belongs to user-service).
  - and every variable set for a service must appear in DOCUMENTATION.md (in backquotes), its configuration
    reference.

Exit status 0 when everything is consistent, 1 with one line per problem otherwise.
Usage: python3 scripts/check_env_vars.py [--root DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - the virtualenv always has it
    sys.exit("check_env_vars: PyYAML is missing: run scripts/bootstrap.sh and use .venv/bin/python")

ENV_NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"
ENV_NAME_RE = re.compile(rf"^{ENV_NAME}$")
INTERPOLATION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


@dataclass
class Setting:
    """One variable set for one service, and where."""

    service: str
    name: str
    where: str


@dataclass
class DataSource:
    """A ConfigMap or Secret (resource, patch or generator) and the keys it holds."""

    kind: str  # ConfigMap | Secret
    name: str
    service: str | None
    keys: dict[str, str] = field(default_factory=dict)  # key -> where it is set


@dataclass
class Consumers:
    env_from: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    key_refs: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    volumes: set[tuple[str, str]] = field(default_factory=set)


class Checker:
    def __init__(self, root: Path, verbose: bool) -> None:
        self.root = root
        self.verbose = verbose
        self.problems: list[str] = []
        self.services = self.discover_services()
        self.target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or self.root / "target")
        build = ["cargo", "build", "--workspace", "--bins", "--locked", "--quiet"]
        if subprocess.run(build, cwd=self.root).returncode != 0:
            sys.exit("check_env_vars: cargo build --workspace --bins failed")
        self.reads = {service: self.variables_read(service) for service in self.services}
        self.settings: list[Setting] = []

    # ---- what the services read ------------------------------------------------------------------------

    def discover_services(self) -> list[str]:
        """Workspace members with a binary: a directory with Cargo.toml and src/main.rs."""
        services = sorted(
            path.parent.parent.name
            for path in self.root.glob("*/src/main.rs")
            if (path.parent.parent / "Cargo.toml").is_file()
        )
        if not services:
            sys.exit(f"check_env_vars: no service (*/src/main.rs) under {self.root}")
        return services

    def variables_read(self, service: str) -> set[str]:
        binary = self.target_dir / "debug" / service
        try:
            output = subprocess.run([str(binary), "--print-env"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            self.problem(f"{service}: cannot list the variables it reads ({binary} --print-env): {error}")
            return set()
        names = {line.strip() for line in output.splitlines() if line.strip()}
        if not names:
            self.problem(f"{service}: --print-env named no variable")
        return names

    # ---- helpers --------------------------------------------------------------------------------------

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def owner_by_name(self, name: str) -> str | None:
        matches = [s for s in self.services if name == s or name.startswith(s + "-")]
        return max(matches, key=len) if matches else None

    def owner_by_path(self, path: Path) -> str | None:
        parts = path.relative_to(self.root).parts
        return parts[0] if parts and parts[0] in self.services else None

    def set_for(self, service: str, name: str, where: str) -> None:
        self.settings.append(Setting(service, name, where))

    @staticmethod
    def load_yaml_documents(path: Path) -> list:
        with path.open(encoding="utf-8") as handle:
            return [doc for doc in yaml.safe_load_all(handle) if doc is not None]

    @staticmethod
    def env_file_keys(path: Path) -> list[str]:
        keys = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export ") :].lstrip()
            keys.append(line.split("=", 1)[0].strip())
        return keys

    # ---- docker compose -------------------------------------------------------------------------------

    def check_compose(self) -> None:
        compose_path = self.root / "docker-compose.yml"
        if not compose_path.is_file():
            self.problem("docker-compose.yml is missing")
            return
        compose_text = compose_path.read_text(encoding="utf-8")
        compose = yaml.safe_load(compose_text) or {}
        for compose_name, spec in (compose.get("services") or {}).items():
            spec = spec or {}
            service = self.compose_service_owner(compose_name, spec)
            if service is None:
                continue  # an engine (mongodb, kafka…): its variables are its image's business
            environment = spec.get("environment") or {}
            if isinstance(environment, list):
                names = [item.split("=", 1)[0] for item in environment]
            else:
                names = list(environment)
            for name in names:
                self.set_for(service, name, f"docker-compose.yml: services.{compose_name}.environment")
            env_files = spec.get("env_file") or []
            for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
                file_name = entry["path"] if isinstance(entry, dict) else entry
                env_path = self.root / file_name
                if env_path.is_file():
                    for name in self.env_file_keys(env_path):
                        self.set_for(service, name, f"{file_name} (env_file of services.{compose_name})")

        # .env.example ⟷ the variables docker-compose.yml interpolates. `$$` escapes a literal dollar.
        interpolated = {a or b for a, b in INTERPOLATION_RE.findall(compose_text.replace("$$", ""))}
        example_path = self.root / ".env.example"
        example = self.env_file_keys(example_path) if example_path.is_file() else []
        if not example_path.is_file():
            self.problem(".env.example is missing")
        for name in example:
            if name not in interpolated:
                self.problem(f".env.example: {name} is used nowhere in docker-compose.yml")
        for name in sorted(interpolated - set(example)):
            self.problem(f"docker-compose.yml: interpolates ${{{name}}}, which .env.example does not list")

    def compose_service_owner(self, compose_name: str, spec: dict) -> str | None:
        build = spec.get("build")
        if isinstance(build, dict) and build.get("dockerfile"):
            owner = Path(build["dockerfile"]).parts[0]
            if owner in self.services:
                return owner
        return compose_name if compose_name in self.services else None

    # ---- Dockerfiles ----------------------------------------------------------------------------------

    def check_dockerfiles(self) -> None:
        for service in self.services:
            path = self.root / service / "Dockerfile"
            if not path.is_file():
                continue
            lines = path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
            final_stage_start = max((i for i, line in enumerate(lines) if re.match(r"\s*FROM\s", line, re.I)), default=0)
            for line in lines[final_stage_start:]:
                match = re.match(r"\s*ENV\s+(.*)", line, re.I)
                if not match:
                    continue
                body = match.group(1).strip()
                if "=" in body.split()[0]:
                    names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", body)
                else:
                    names = [body.split()[0]]
                for name in names:
                    self.set_for(service, name, f"{service}/Dockerfile: ENV")

    # ---- Kubernetes -----------------------------------------------------------------------------------

    def k8s_files(self) -> list[Path]:
        files: list[Path] = []
        for base in [self.root / service / "k8s" for service in self.services] + [self.root / "scripts" / "k8s"]:
            if base.is_dir():
                files.extend(sorted(p for p in base.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file()))
        return files

    def check_kubernetes(self) -> None:
        sources: list[DataSource] = []
        consumers = Consumers()
        workload_count = 0
        for path in self.k8s_files():
            where = self.rel(path)
            try:
                documents = self.load_yaml_documents(path)
            except yaml.YAMLError as error:
                self.problem(f"{where}: not valid YAML: {error}")
                continue
            for doc in documents:
                if not isinstance(doc, dict):
                    continue
                kind = doc.get("kind")
                if kind == "Kustomization":
                    sources.extend(self.kustomization_sources(path, doc))
                elif kind in WORKLOAD_KINDS:
                    workload_count += 1
                    self.workload(path, doc, consumers)
                elif kind in {"ConfigMap", "Secret"}:
                    name = (doc.get("metadata") or {}).get("name", "")
                    source = DataSource(kind, name, self.owner_by_path(path) or self.owner_by_name(name))
                    for section in ("data", "stringData", "binaryData"):
                        for key in doc.get(section) or {}:
                            source.keys[key] = f"{where}: {kind} {name}"
                    sources.append(source)
        if workload_count == 0:
            self.problem("no Kubernetes workload found under */k8s or scripts/k8s")
        self.match_sources(sources, consumers)

    def workload(self, path: Path, doc: dict, consumers: Consumers) -> None:
        where = self.rel(path)
        name = (doc.get("metadata") or {}).get("name", "")
        service = self.owner_by_path(path) or self.owner_by_name(name)
        spec = doc.get("spec") or {}
        if doc["kind"] == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        pod = spec if doc["kind"] == "Pod" else ((spec.get("template") or {}).get("spec") or {})
        for volume in pod.get("volumes") or []:
            for kind, field_name in (("Secret", "secret"), ("ConfigMap", "configMap")):
                ref = volume.get(field_name)
                if ref:
                    consumers.volumes.add((kind, ref.get("secretName") or ref.get("name")))
            for projected in ((volume.get("projected") or {}).get("sources")) or []:
                for kind, field_name in (("Secret", "secret"), ("ConfigMap", "configMap")):
                    if projected.get(field_name):
                        consumers.volumes.add((kind, projected[field_name].get("name")))
        for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            if service is None:
                self.problem(f"{where}: workload {name} belongs to no service (name it after one, or move it)")
                continue
            for env in container.get("env") or []:
                self.set_for(service, env["name"], f"{where}: {doc['kind']} {name}, container {container.get('name')}")
                value_from = env.get("valueFrom") or {}
                for kind, field_name in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    ref = value_from.get(field_name)
                    if ref:
                        consumers.key_refs[(kind, ref.get("name"))].add(ref.get("key"))
            for env_from in container.get("envFrom") or []:
                if env_from.get("prefix"):
                    self.problem(f"{where}: envFrom with a prefix is not supported by this check")
                for kind, field_name in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    ref = env_from.get(field_name)
                    if ref:
                        consumers.env_from[(kind, ref.get("name"))].add(service)

    def kustomization_sources(self, path: Path, doc: dict) -> list[DataSource]:
        """ConfigMaps and Secrets a kustomization generates or patches."""
        where = self.rel(path)
        folder = path.parent
        sources: list[DataSource] = []
        for kind, section in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for generator in doc.get(section) or []:
                name = generator.get("name", "")
                source = DataSource(kind, name, self.owner_by_path(path) or self.owner_by_name(name))
                for literal in generator.get("literals") or []:
                    source.keys[literal.split("=", 1)[0]] = f"{where}: {section} {name} literals"
                for env_file in generator.get("envs") or ([generator["env"]] if generator.get("env") else []):
                    env_path = folder / env_file
                    if not env_path.is_file():
                        parts = Path(env_file).parts
                        if parts and parts[0] == "secrets":
                            env_path = folder / "secrets.example" / Path(*parts[1:])
                    if not env_path.is_file():
                        self.problem(f"{where}: {section} {name}: {env_file} and its secrets.example/ copy are missing")
                        continue
                    for key in self.env_file_keys(env_path):
                        source.keys[key] = f"{self.rel(env_path)} ({section} {name})"
                for file_entry in generator.get("files") or []:
                    key = file_entry.split("=", 1)[0] if "=" in file_entry else Path(file_entry).name
                    source.keys[key] = f"{where}: {section} {name} files"
                sources.append(source)
        for patch in doc.get("patches") or []:
            target = patch.get("target") or {}
            if patch.get("path"):
                patch_path = folder / patch["path"]
                if not patch_path.is_file():
                    self.problem(f"{where}: patch {patch['path']} is missing")
                    continue
                documents = self.load_yaml_documents(patch_path)
                patch_where = self.rel(patch_path)
            else:
                documents = [yaml.safe_load(patch.get("patch") or "")]
                patch_where = f"{where}: inline patch"
            for patch_doc in documents:
                sources.extend(self.patch_sources(patch_doc, target, patch_where))
        for entry in doc.get("patchesStrategicMerge") or []:
            patch_path = folder / entry
            if patch_path.is_file():
                for patch_doc in self.load_yaml_documents(patch_path):
                    sources.extend(self.patch_sources(patch_doc, {}, self.rel(patch_path)))
        return sources

    def patch_sources(self, patch_doc, target: dict, where: str) -> list[DataSource]:
        if isinstance(patch_doc, list):  # JSON 6902: only additions of ConfigMap/Secret keys concern this check
            kind, name = target.get("kind"), target.get("name", "")
            if kind not in {"ConfigMap", "Secret"}:
                return []
            source = DataSource(kind, name, self.owner_by_name(name))
            for operation in patch_doc:
                match = re.match(r"^/(?:data|stringData)/(.+)$", operation.get("path", ""))
                if operation.get("op") in {"add", "replace"} and match:
                    source.keys[match.group(1).replace("~1", "/").replace("~0", "~")] = where
            return [source]
        if isinstance(patch_doc, dict) and patch_doc.get("kind") in {"ConfigMap", "Secret"}:
            name = (patch_doc.get("metadata") or {}).get("name") or target.get("name", "")
            source = DataSource(patch_doc["kind"], name, self.owner_by_name(name))
            for section in ("data", "stringData"):
                for key in patch_doc.get(section) or {}:
                    source.keys[key] = f"{where}: {patch_doc['kind']} {name}"
            return [source]
        if isinstance(patch_doc, dict) and patch_doc.get("kind") in WORKLOAD_KINDS:
            self.workload_patch(patch_doc, where)
        return []

    def workload_patch(self, doc: dict, where: str) -> None:
        name = (doc.get("metadata") or {}).get("name", "")
        service = self.owner_by_name(name)
        pod = (((doc.get("spec") or {}).get("template") or {}).get("spec")) or {}
        for container in pod.get("containers") or []:
            for env in container.get("env") or []:
                if service:
                    self.set_for(service, env["name"], f"{where}: {doc['kind']} {name}")

    def match_sources(self, sources: list[DataSource], consumers: Consumers) -> None:
        for source in sources:
            ident = (source.kind, source.name)
            readers = consumers.env_from.get(ident, set())
            if readers:
                for key, where in source.keys.items():
                    for service in readers:
                        self.set_for(service, key, where)
            elif ident in consumers.key_refs:
                for key, where in source.keys.items():
                    if key not in consumers.key_refs[ident]:
                        self.problem(f"{where}: key {key} of {source.kind} {source.name} reaches no container")
            elif ident in consumers.volumes:
                pass  # files, not variables
            else:
                self.problem(f"{source.kind} {source.name} (from {next(iter(source.keys.values()), '?')}) is used by no container")

    # ---- the verdict ----------------------------------------------------------------------------------

    def check_settings(self) -> None:
        documentation_path = self.root / "DOCUMENTATION.md"
        documented = set()
        if documentation_path.is_file():
            documented = set(re.findall(rf"`({ENV_NAME})`", documentation_path.read_text(encoding="utf-8")))
        for setting in self.settings:
            reads = self.reads.get(setting.service, set())
            if setting.name not in reads:
                close = difflib.get_close_matches(setting.name, sorted(reads), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.problem(f"{setting.where}: {setting.service} does not read {setting.name}{hint}")
            elif documentation_path.is_file() and setting.name not in documented:
                self.problem(f"{setting.where}: {setting.name} is not documented in DOCUMENTATION.md")

    def run(self) -> int:
        self.check_compose()
        self.check_dockerfiles()
        self.check_kubernetes()
        self.check_settings()
        per_service: dict[str, set[str]] = defaultdict(set)
        for setting in self.settings:
            per_service[setting.service].add(setting.name)
        if self.verbose or not self.problems:
            for service in self.services:
                print(
                    f"check_env_vars: {service}: reads {len(self.reads[service])} variables; "
                    f"compose, Dockerfile and manifests set {len(per_service[service])}: "
                    + (", ".join(sorted(per_service[service])) or "none")
                )
        if self.problems:
            problems = list(dict.fromkeys(self.problems))
            print(f"check_env_vars: FAILED: {len(problems)} problem(s):", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"check_env_vars: OK: {len(self.settings)} settings, each read by its service and documented")
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--verbose", action="store_true", help="also list what each service reads")
    arguments = parser.parse_args()
    checker = Checker(arguments.root.resolve(), arguments.verbose)
    if arguments.verbose:
        for service in checker.services:
            print(f"check_env_vars: {service} reads: {', '.join(sorted(checker.reads[service]))}")
    return checker.run()


if __name__ == "__main__":
    sys.exit(main())
