#!/usr/bin/env bash
# Installs what building and testing need, idempotently:
#   - Debian packages: protoc (tonic code generation), zlib (rdkafka), wrk (benchmarks);
#   - a project-local virtualenv (.venv) with the test engines (Tansu, SecantusDB).
# Safe to run repeatedly; fast when everything is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(protobuf-compiler zlib1g-dev wrk)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat scripts/requirements-*.txt | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "bootstrap: creating the virtualenv in .venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    for requirements in scripts/requirements-*.txt; do
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    done
    echo "$want" >"$stamp"
fi
