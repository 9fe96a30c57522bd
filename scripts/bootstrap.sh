#!/usr/bin/env bash
# Installs what building and testing need, idempotently:
#   - Debian packages: gcc, make and perl (librdkafka with its OpenSSL and zlib is compiled from source; no
#     protoc, no system zlib or OpenSSL), wrk (benchmarks), chromium (the Swagger UI browser test), gdb (the
#     stacks of a test that hangs past scripts/test's deadline), and nodejs + npm when no node is on the PATH;
#   - a project-local virtualenv (.venv) with the test engines (Tansu, SecantusDB);
#   - the project-local npm packages in scripts/e2e/node_modules (newman, playwright-core).
# Safe to run repeatedly; fast when everything is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(gcc make perl wrk chromium gdb)
# Any node >= 18 will do (e.g. NodeSource's); Debian's only when there is none.
command -v node >/dev/null && command -v npm >/dev/null || apt_packages+=(nodejs npm)
scripts/apt-install "${apt_packages[@]}"

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

# newman and playwright-core, exactly as locked; again only when the lock file changed.
e2e="$root/scripts/e2e"
e2e_stamp="$e2e/node_modules/.package-lock.sha256"
e2e_want="$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$e2e_stamp" 2>/dev/null)" != "$e2e_want" ]]; then
    echo "bootstrap: installing the npm packages in scripts/e2e (npm ci)"
    (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$e2e_want" >"$e2e_stamp"
fi
