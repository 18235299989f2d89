"""Regenerate the Python code for proto/ (messages, gRPC stubs and .pyi stubs).

Run from the project root:  python tools/genproto.py
With --check, generate into a temporary folder and exit 1 if the committed
code differs (tests/unit/test_generated_code.py runs that).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = Path("controlplane/api/pb")


def generate(out_root: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over proto/; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PACKAGE_DIR).glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    out_dir = out_root / PACKAGE_DIR
    # protoc writes a gRPC module for every file; keep only those that define a service.
    for grpc_module in out_dir.glob("*_pb2_grpc.py"):
        if "Stub" not in grpc_module.read_text():
            grpc_module.unlink()
            grpc_module.with_suffix(".pyi").unlink(missing_ok=True)
    (out_dir / "__init__.py").write_text('"""Generated from proto/ by tools/genproto.py. Do not edit."""\n')
    return sorted(out_dir.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        target = ROOT / PACKAGE_DIR
        if opts.check:
            stale = [
                f.name
                for f in files
                if not (target / f.name).exists() or not filecmp.cmp(f, target / f.name, shallow=False)
            ]
            extra = sorted({p.name for p in target.glob("*_pb2*")} - {f.name for f in files})
            if stale or extra:
                print(f"generated code is out of date: {stale + extra}; run: python tools/genproto.py")
                return 1
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*_pb2*"):
            old.unlink()
        for f in files:
            shutil.copyfile(f, target / f.name)
    print(f"generated {len(files)} files in {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
