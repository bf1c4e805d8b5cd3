#!/usr/bin/env bash
# Regenerates app/web/grpc/stubs/*_pb2*.py(i) from the .proto files beside them with the
# grpcio-tools the dev extra pins (its protobuf gencode needs protobuf >= 6.33.5 at run
# time, the floor pyproject.toml states). tests/test_grpc_stubs.py checks that the committed
# files are what this makes. Usage: scripts/generate-grpc-stubs.sh [OUTPUT_DIR]
set -euo pipefail

PYTHON=${PYTHON:-.venv/bin/python}
STUBS=app/web/grpc/stubs
OUT=${1:-$STUBS}
mkdir -p "$OUT"
"$PYTHON" -m grpc_tools.protoc -I "$STUBS" --python_out="$OUT" --pyi_out="$OUT" \
  --grpc_python_out="$OUT" grpc_service.proto model_config.proto health.proto
# protoc writes `import x_pb2` (top-level modules); inside a package they import relatively.
sed -i -E 's/^import (grpc_service_pb2|model_config_pb2|health_pb2) as/from . import \1 as/' \
  "$OUT"/*_pb2*.py
sed -i -E 's/^import (model_config_pb2) as/from . import \1 as/' "$OUT"/*_pb2.pyi
rm -f "$OUT/model_config_pb2_grpc.py"  # model_config.proto declares no service
