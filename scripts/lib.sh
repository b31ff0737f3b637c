# Shared set-up for scripts/local-up, scripts/envs and scripts/test, and the Go builds of the install-* scripts:
# sourced, not run. Sourcing it only defines functions (and $repo and $go_cache); nothing is set up until one is
# called.
# Everything a fresh machine needs is installed here, idempotently and quickly when already done.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Arguments before set-up: a wrapper of a Python command checks them with that command's own argparse parser
# first, so that --help and a mistake cost nothing. $1 is "module:function" returning the parser, importable from
# the repository or scripts/ with the standard library alone (the venv may not be made yet); the rest are the
# arguments. On -h/--help it prints the wrapper's header comment, then the command's help, and exits 0; on a
# mistake it exits 2 with argparse's message (what is allowed); it returns when they are good.
check_args() {
  local parser=$1 arg
  shift
  for arg; do
    case $arg in
      --) break ;;
      -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; echo; break ;;
    esac
  done
  PYTHONPATH="$repo:$repo/scripts${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -c '
import importlib, sys
module, function = sys.argv[1].split(":")
getattr(importlib.import_module(module), function)().parse_args(sys.argv[2:])' "$parser" "$@" || exit
  for arg; do
    case $arg in
      --) break ;;
      -h|--help) exit 0 ;;  # argparse has printed the help
    esac
  done
}

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

# The CRD schemas the rendered CloudNativePG objects are checked against
# (tests/components/database/test_crd_schemas.py). Fetched here so that a download problem is reported once, up
# front; the tests then skip with the same reason.
ensure_crds() {
  "$repo/scripts/fetch-crds" >/dev/null || echo "==> the CRD schema tests will be skipped (see above)" >&2
}

# actionlint for the workflow-template tests, compiled once from its Go module (toolchain/actionlint) into the
# cache and reused; exported as ACTIONLINT for tests/tools/test_ci_templates.py.
ensure_actionlint() {
  local bin
  bin=$("$repo/scripts/install-actionlint" | tail -n 1) || return 1
  export ACTIONLINT=$bin
}

# statsd_exporter for the real-Airflow metrics test, compiled once from its Go module (toolchain/statsd_exporter)
# into the cache and reused; exported as STATSD_EXPORTER for tests/airflow/test_metrics.py.
ensure_statsd_exporter() {
  local bin
  bin=$("$repo/scripts/install-statsd-exporter" | tail -n 1) || return 1
  export STATSD_EXPORTER=$bin
}

# promtool checks and unit-tests the alert rules (tests/components/metrics/test_alert_rules.py): Debian's
# `prometheus` package.
ensure_promtool() {
  command -v promtool >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing promtool (Debian package prometheus)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "==> no promtool and no root to install it (Debian package prometheus): the alert rule tests will fail" >&2
  fi
}

# The Kerberos tests start a real MIT KDC on loopback (testbed/kdc.py) and run kinit/klist/kvno and curl's
# SPNEGO against it; libkrb5-dev and gcc build pykerberos, which the api-server's SPNEGO middleware uses, into
# an overlay of the Airflow venv. Without root or apt the tests are skipped with this reason.
ensure_kdc() {
  local missing=() pkg
  for pkg in krb5kdc:krb5-kdc kadmin.local:krb5-admin-server kinit:krb5-user krb5-config:libkrb5-dev gcc:gcc curl:curl; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "${pkg%%:*}" >/dev/null || missing+=("${pkg#*:}")
  done
  [ ${#missing[@]} = 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing the Kerberos test tools (Debian packages ${missing[*]})" >&2
    apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "==> no ${missing[*]} and no root to install them: the KDC tests will be skipped" >&2
  fi
}

# The API server fixture's binaries (built from Go modules once, about 8 minutes cold) and the operator CRDs it
# serves. Returns non-zero, after the script has said why, when they cannot be had.
ensure_kube_apiserver() {
  if ! "$repo/scripts/install-kube-apiserver" --print-bin >/dev/null 2>&1; then
    "$repo/scripts/install-kube-apiserver" >&2 || return 1
  fi
  "$repo/scripts/fetch-crds" >/dev/null || return 1
}

# The test node (tests/node/): containerd, runc, the CNI plugins, iptables, ipset (kube-router's NetworkPolicy
# sets) and conntrack from Debian, debootstrap for the images' root filesystems and git for the DAG repository; the
# Kubernetes binaries come with ensure_kube_apiserver. Then CoreDNS, the CloudNativePG operator and kube-router
# (scripts/install-node-tools) and the images (scripts/build-node-images; gcc compiles their pause), each built
# once into the cache. Returns non-zero after saying why.
ensure_node() {
  local missing=() pkg
  for pkg in containerd:containerd runc:runc ctr:containerd iptables:iptables ipset:ipset conntrack:conntrack \
             debootstrap:debootstrap gcc:gcc git:git /usr/lib/cni/bridge:containernetworking-plugins; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "${pkg%%:*}" >/dev/null || [ -x "${pkg%%:*}" ] || missing+=("${pkg#*:}")
  done
  if [ ${#missing[@]} != 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing the test node's Debian packages (${missing[*]})" >&2
      apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
    else
      echo "==> no ${missing[*]} and no root to install them: the node tests cannot run" >&2
      return 1
    fi
  fi
  "$repo/scripts/install-node-tools" >/dev/null || return 1
  "$repo/scripts/build-node-images" >/dev/null || return 1
}

# checkov in its own venv (it pins packages that would downgrade ours).
ensure_checkov() {
  "$repo/scripts/checkov-venv" >/dev/null
}

# ---------------------------------------------------------------------------------------------------------------
# Go builds. The install-* scripts compile tools from wrapper modules (toolchain/, toolchain-fixtures/), whose
# committed go.sum pins every module compiled, into $go_cache (outside the repository), each into a directory
# named by the tool's version and a hash of its wrapper: a warm run only looks for that directory. What differs
# per tool (the key, the packages, -X flags, checks of the result) stays in its script; how Go is run is here.

go_cache=${AIRFLOW_PLATFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-platform}

say() { echo "$@" >&2; }
die() { echo "${0##*/}: error: $*" >&2; exit 1; }

# The version a wrapper's go.mod ($1) requires of module $2, read from the text so that a warm run needs no Go.
go_mod_requires() {
  sed -n -E "s#^(require )?[[:space:]]*$2 (v[^ ]+)( // indirect)?\$#\2#p" "$1" | head -n 1
}

# The sha256sum lines of every file of the wrappers $2... (folders of $1), in a fixed order: piped into
# sha256sum, the hash the scripts' keys and stamps are made of.
go_wrapper_sums() {
  local dir=$1
  shift
  (cd "$dir" && find "$@" -type f | LC_ALL=C sort | xargs sha256sum)
}

# Sets GO to the go command (GO, else go on PATH, else /usr/local/go/bin/go), or stops with $1 added when there
# is none, and exports the settings every go command of ours runs with:
#   GOTOOLCHAIN=local  a go.mod asking for a newer Go fails loudly instead of downloading a toolchain
#   GOWORK=off         a go.work above the build directory does not leak in
#   CGO_ENABLED=0      static binaries, like the released ones (some run in scratch images)
# GOPROXY, GOMODCACHE, GOCACHE, GONOSUMDB and GOFLAGS pass through.
go_setup() {
  GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  [ -x "$GO" ] || command -v "$GO" >/dev/null || die "no Go toolchain found (set GO=/path/to/go); Go >= 1.26 is needed.${1:+ $1}"
  export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
}

# Holds the lock file $1 until the script ends; when another build holds it, says so and waits for it (scripts/test
# and a pytest fixture may both ask on a cold cache: one builds, the other waits and then finds it built).
go_lock() {
  mkdir -p "${1%/*}"
  exec 9>"$1"
  flock -n 9 || { say "==> another build ($1) is running; waiting for it"; flock 9; }
}

# Copies wrapper $1 into the empty build directory $2 (the module is built there, never in the repository).
go_wrapper_copy() {
  rm -rf "$2"; mkdir -p "$2"
  cp -r "$1/." "$2/"
}

# go_build DIR OUTPUT [-tags TAGS] [-ldflags FLAGS] PACKAGE...: `go build` in the module DIR (after go_setup),
# its log in DIR/build.log, shown when it fails. Besides go_setup's settings, every tool is built with
#   -mod=readonly      a go.sum that does not cover the build is an error, never silently rewritten
#   -trimpath -buildvcs=false -ldflags "-s -w"   no paths of this machine, no VCS stamp, no symbol tables
# A module the proxy refuses is named, with what to do: $go_relock, how the script rewrites a go.sum (default:
# go mod tidy in the wrapper).
go_build() {
  local dir=$1 out=$2 tags="" ldflags="-s -w"
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      -tags) tags=$2; shift 2 ;;
      -ldflags) ldflags="-s -w $2"; shift 2 ;;
      *) break ;;
    esac
  done
  if ! (cd "$dir" && "$GO" build -mod=readonly -trimpath -buildvcs=false ${tags:+-tags "$tags"} -ldflags "$ldflags" \
          -o "$out" "$@") >"$dir/build.log" 2>&1; then
    sed 's/^/    /' "$dir/build.log" >&2
    grep -q "403\|not available\|missing go.sum entry\|verifying" "$dir/build.log" &&
      die "a Go module needed by $* could not be had (above). If the proxy refuses a version, that refusal is final for it: pick another version in the wrapper's go.mod and ${go_relock:-run go mod tidy in it}."
    die "compiling $* failed (above)"
  fi
}

# `go mod tidy` of the build copy $1 of wrapper $2 (after its go.mod was edited), whose go.mod and go.sum are then
# written back to the wrapper.
go_relock_wrapper() {
  (cd "$1" && "$GO" mod tidy) >"$1/tidy.log" 2>&1 ||
    { sed 's/^/    /' "$1/tidy.log" >&2; die "resolving ${2#$repo/} failed (above: what could not be had)"; }
  cp "$1/go.mod" "$1/go.sum" "$2/"
  say "    wrote ${2#$repo/}/go.mod and go.sum"
}

# timed LABEL COLD-TIME COMMAND...: runs the build COMMAND, saying what it builds, how long it takes cold, and
# how long it took.
timed() {
  local label=$1 start=$SECONDS
  shift
  say "==> building $label (cold: $1) ..."
  shift
  "$@"
  say "    $label built in $((SECONDS - start))s"
}

# Replaces the directory $2 by the staged $1 in one step, with stamp $3 (what it was built from) when given.
go_publish() {
  [ -z "${3:-}" ] || echo "$3" >"$1/.stamp"
  rm -rf "$2"
  mv "$1" "$2"
}
