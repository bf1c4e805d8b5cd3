#!/usr/bin/env bash
# Installs Triton's perf_analyzer into .perf-analyzer/ (ignored) for `python -m
# bench.perf_analyzer`, on this Debian 12 (glibc 2.36) where its binary cannot run as is:
#   1. the perf-analyzer wheel from PyPI, built for manylinux_2_38 (pip on glibc 2.36 will
#      not pick it, so it is downloaded for that platform and unpacked, not installed);
#   2. Debian 13's libc6, libstdc++6 and libgcc-s1 (glibc 2.41, GLIBCXX_3.4.33) downloaded
#      with apt from the trixie suite into a private apt state and unpacked into the folder,
#      touching nothing of the system's packages;
#   3. .perf-analyzer/perf_analyzer, a wrapper that starts the binary through that glibc's
#      own loader (ld-linux-x86-64.so.2 --library-path), the system's libraries (libssl,
#      libz) after it.
# Idempotent; prints the wrapper's path.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${PERF_ANALYZER_DIR:-.perf-analyzer}
VERSION=${PERF_ANALYZER_VERSION:-2.60.0}
PY=${PYTHON:-.venv/bin/python}
WRAPPER=$DIR/perf_analyzer
if [[ -x $WRAPPER ]] && "$WRAPPER" --version >/dev/null 2>&1; then
    echo "$WRAPPER"
    exit 0
fi
rm -rf "$DIR"
mkdir -p "$DIR/wheel" "$DIR/root" "$DIR/apt/lists/partial" "$DIR/apt/archives/partial"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_38_x86_64 \
    --python-version 3.12 -d "$DIR/wheel" "perf-analyzer==$VERSION" 2>/dev/null
"$PY" -m zipfile -e "$DIR"/wheel/perf_analyzer-*.whl "$DIR/wheel/unpacked"
chmod +x "$DIR/wheel/unpacked/perf_analyzer/bin/perf_analyzer"

echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$DIR/apt/sources.list"
APT=(-o "Dir::Etc::SourceList=$PWD/$DIR/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$PWD/$DIR/apt/lists" -o "Dir::Cache=$PWD/$DIR/apt"
    -o Dir::State::Status=/dev/null -o APT::Sandbox::User=root)
apt-get "${APT[@]}" update -qq
(cd "$DIR/apt" && apt-get "${APT[@]}" download -qq libc6 libstdc++6 libgcc-s1)
for deb in "$DIR"/apt/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done

LIBS=$PWD/$DIR/root/usr/lib/x86_64-linux-gnu
cat >"$WRAPPER" <<WRAP
#!/usr/bin/env bash
exec "$LIBS/ld-linux-x86-64.so.2" --library-path "$LIBS:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" \\
    "$PWD/$DIR/wheel/unpacked/perf_analyzer/bin/perf_analyzer" "\$@"
WRAP
chmod +x "$WRAPPER"
"$WRAPPER" --version >&2
echo "$WRAPPER"
