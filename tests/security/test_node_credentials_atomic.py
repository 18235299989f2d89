"""A renewed node certificate and its key replace the old pair as one: whenever the agent's files are read —
while renewals run, or after the agent was killed in the middle of one — the key matches the certificate.
(Before, key and certificate were two renames apart: a crash between them left a new key beside the old
certificate, and the agent could not start.)"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from controlplane import pki
from nodeagent.certificates import NodeCredentials, NodeTLSConfig

NODE = "n1"

# The child renews as fast as it can, with a fresh key each time, until it is killed.
RENEWER = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    from controlplane import pki
    from nodeagent.certificates import NodeCredentials, NodeTLSConfig
    ca = pki.CertificateAuthority.create("test-ca")
    creds = NodeCredentials(NodeTLSConfig(cert_dir=Path(sys.argv[1])), "{NODE}", "")
    ident = pki.Identity(pki.NODE_USER_PREFIX + "{NODE}", (pki.NODES_GROUP,))
    print("ready", flush=True)
    while True:
        key = pki.new_key()
        cert = ca.issue(key.public_key(), ident)
        creds._store(pki.key_pem(key), pki.cert_pem(cert), pki.cert_pem(ca.cert))
    """
)


def _pair_matches(stored: tuple[bytes, bytes, bytes]) -> bool:
    cert_pem, key_pem, _ = stored
    cert_key = pki.load_cert(cert_pem).public_key().public_numbers()  # type: ignore[union-attr]
    return bool(cert_key == pki.load_key(key_pem).public_key().public_numbers())


def _credentials(directory: Path) -> NodeCredentials:
    return NodeCredentials(NodeTLSConfig(cert_dir=directory), NODE, "")


def test_a_reader_never_sees_a_key_from_another_renewal(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority.create("test-ca")
    ident = pki.Identity(pki.NODE_USER_PREFIX + NODE, (pki.NODES_GROUP,))
    writer, reader = _credentials(tmp_path), _credentials(tmp_path)
    pairs = []
    for _ in range(20):
        key = pki.new_key()
        pairs.append((pki.key_pem(key), pki.cert_pem(ca.issue(key.public_key(), ident))))
    stop = threading.Event()
    mismatches: list[int] = []
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            found = reader.read_stored()
            if found is not None:
                reads[0] += 1
                if not _pair_matches(found):
                    mismatches.append(reads[0])

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(300):
            key_pem, cert_pem = pairs[i % len(pairs)]
            writer._store(key_pem, cert_pem, pki.cert_pem(ca.cert))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert reads[0] > 50
    assert not mismatches, f"{len(mismatches)} of {reads[0]} reads found a key that is not the certificate's"
    # Operators find the files where the docs say, and only the newest two sets are kept.
    assert (tmp_path / "node.pem").read_bytes() == pairs[299 % len(pairs)][1]
    assert len(list(tmp_path.glob("credentials-*"))) <= 2


def test_killed_in_the_middle_of_renewals_the_stored_pair_still_matches(tmp_path: Path) -> None:
    rng = random.Random(7)
    for attempt in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", RENEWER, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready", child.stderr.read() if child.stderr else b""
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        stored = _credentials(tmp_path).read_stored()
        if stored is None and attempt == 0:
            continue  # killed before its first renewal finished (a heavily loaded machine)
        assert stored is not None
        assert _pair_matches(stored)
