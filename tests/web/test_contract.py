"""The OpenAPI document is a contract a generated client can trust: Schemathesis (property-based
requests from /openapi.json, every check: no 5xx, no undocumented status code, content type
or header, invalid data refused, Allow on 405...) against a real server, bounded to a few
examples per operation so it fits the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.web.server import LiveServer

EXAMPLES_PER_OPERATION = 6
RUN_DEADLINE_SECONDS = 600


def test_schemathesis_finds_nothing_against_the_openapi_document(
    server: LiveServer, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            # Left out: "every schema-valid request is accepted". An image URL the schema
            # allows may name no server: 422, the client's data, not a broken contract.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "22",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-database",
            "none",
            "--no-color",
            "--request-timeout",
            "60",
        ],
        cwd=tmp_path,  # its report folder, if any, stays out of the checkout
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_SECONDS,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
