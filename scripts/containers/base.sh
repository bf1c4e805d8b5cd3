# shellcheck shell=bash
# The base image for scripts/container-test.sh: Debian bookworm with Debian's Python 3.11,
# bootstrapped from the Debian archive this machine's apt already uses (no registry), and
# made to behave like python:*-slim where the Dockerfile relies on it. Sourced, not run.
#
# Cached twice, keyed by archive, suite and package list: as a tarball under CACHE_DIR
# and as the imported image (kept after a run). A warm run finds the image; a run after
# `podman system prune` re-imports the tarball; only a cold run bootstraps (about a minute).

BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
BASE_RECIPE=1 # bump when prepare_rootfs changes, so that caches are rebuilt

# The archive apt takes the suite's main component from, e.g. http://deb.debian.org/debian
debian_mirror() {
    apt-cache policy | awk -v want="$BASE_SUITE/main" '$3 == want { print $2; exit }'
}

# python:*-slim lets pip install into the system Python (the Dockerfile's build stages do);
# Debian marks its Python externally managed (PEP 668). Without the marker Debian's pip
# installs to /usr/local, as on the official images. Package lists and caches go.
prepare_rootfs() {
    local rootfs=$1
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
}

bootstrap_base() {
    local tarball=$1 mirror=$2 rootfs="$WORK/rootfs"
    say "bootstrapping Debian $BASE_SUITE from $mirror (cold cache)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" "$mirror" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; return 1; }
    prepare_rootfs "$rootfs"
    mkdir -p "$(dirname "$tarball")"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
}

# Sets BASE_IMAGE to a local image name, creating what the caches lack.
ensure_base() {
    local mirror key tarball
    mirror=$(debian_mirror)
    [[ -n $mirror ]] || fail "apt has no source for $BASE_SUITE/main (apt-cache policy)"
    key=$(printf '%s\n' "$BASE_SUITE" "$mirror" "$BASE_PACKAGES" "$BASE_RECIPE" |
        sha256sum | cut -c1-12)
    BASE_IMAGE="localhost/densenet-serve-ci-base:$BASE_SUITE-$key"
    tarball="$CACHE_DIR/debian-$BASE_SUITE-python-$key.tar"
    if podman image exists "$BASE_IMAGE"; then
        say "base image $BASE_IMAGE (cached)"
        return
    fi
    [[ -f $tarball ]] || bootstrap_base "$tarball" "$mirror"
    say "importing $tarball as $BASE_IMAGE"
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        "$tarball" "$BASE_IMAGE" >/dev/null
}
