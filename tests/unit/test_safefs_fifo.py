"""A workload can put a FIFO where the agent expects one of its volume files: checking that file's content
must not block the agent (an O_RDONLY open of a FIFO waits for a writer that never comes; the volume refresh
thread would hang for good)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from nodeagent import safefs


def test_a_fifo_in_place_of_a_volume_file_does_not_block_the_check(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "key")
    answer: list[bool] = []
    with safefs.opened_dir(str(tmp_path)) as dir_fd:
        check = threading.Thread(
            target=lambda: answer.append(safefs.same_content(dir_fd, "key", b"v", 0o644, (0, 0))), daemon=True
        )
        check.start()
        check.join(timeout=5)
        if check.is_alive():  # unblock the thread before failing
            os.close(os.open(tmp_path / "key", os.O_WRONLY | os.O_NONBLOCK))
        assert answer == [False], "the check blocked on the FIFO"
        safefs.replace_file(dir_fd, "key", b"v", 0o644, (os.geteuid(), os.getegid()))
    assert (tmp_path / "key").read_bytes() == b"v"
