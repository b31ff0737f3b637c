# Shared set-up for scripts/local-up and scripts/test: sourced, not run.
# Everything a fresh machine needs is installed here, idempotently and quickly when already done.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ensure_venv() {
  local python=${PYTHON:-python3} stamp want
  if [ ! -x "$repo/.venv/bin/python" ]; then
    echo "==> creating .venv" >&2
    "$python" -m venv "$repo/.venv"
  fi
  stamp=$repo/.venv/.requirements-stamp
  want=$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing Python requirements" >&2
    "$repo/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo/requirements-dev.txt"
    echo "$want" > "$stamp"
  fi
}

# Puts the pinned Pulumi toolchain on PATH, installing it first when needed. Returns non-zero (after
# install-pulumi has said which module could not be had) when it cannot be installed.
ensure_pulumi() {
  local bin
  if ! bin=$("$repo/scripts/install-pulumi" --print-bin 2>/dev/null); then
    "$repo/scripts/install-pulumi" >&2 || return 1
    bin=$("$repo/scripts/install-pulumi" --print-bin) || return 1
  fi
  export PATH="$bin:$PATH"
  # Offline machines: no update checks, and the engine must not try to download plugins we built.
  export PULUMI_SKIP_UPDATE_CHECK=true
  export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
  export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
}

# The migration test runs `airflow db migrate` against a real PostgreSQL server (Debian's package).
ensure_postgres_server() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing the PostgreSQL server (Debian package postgresql)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "==> no PostgreSQL server and no root to install one: the migration test will be skipped" >&2
  fi
}

# The API server fixture's binaries (built from Go modules once, ~4 minutes cold) and the operator CRDs it
# serves. Returns non-zero, after the script has said why, when they cannot be had.
ensure_kube_apiserver() {
  if ! "$repo/scripts/install-kube-apiserver" --print-bin >/dev/null 2>&1; then
    "$repo/scripts/install-kube-apiserver" >&2 || return 1
  fi
  "$repo/scripts/fetch-crds" >/dev/null || return 1
}

# checkov in its own venv (it pins packages that would downgrade ours).
ensure_checkov() {
  "$repo/scripts/checkov-venv" >/dev/null
}
