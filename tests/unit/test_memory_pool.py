"""Arrow's allocator in a K2 process: jemalloc, which gives freed memory back (k2/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import k2, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def backend(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_k2_processes_allocate_arrow_buffers_with_jemalloc_unless_told_otherwise() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert backend(env) == "jemalloc"
    assert backend(env | {"ARROW_DEFAULT_MEMORY_POOL": "system"}) == "system"  # the operator's
