import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto_sources() -> None:
    result = subprocess.run(
        [sys.executable, "tools/genproto.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyi_stubs_are_generated_for_every_module() -> None:
    pb = ROOT / "controlplane" / "api" / "pb"
    for module in pb.glob("*_pb2.py"):
        assert module.with_suffix(".pyi").exists(), f"missing stub for {module.name}"
