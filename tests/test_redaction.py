"""Secrets never reach a log line, in any form a URL or a traceback carries them."""

from __future__ import annotations

import logging

import pytest

from lookalike.logs import redact_secret_in_logs

SECRET = "987654:SECRET-token_value"


def test_token_is_redacted_in_messages_args_urls_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact_secret_in_logs(SECRET)
    log = logging.getLogger("tests.redaction")
    with caplog.at_level(logging.INFO, logger="tests.redaction"):
        log.info("plain %s", SECRET)
        log.info("GET http://host/file/bot987654%3ASECRET-token_value/photos/1.jpg")
        try:
            raise RuntimeError(f"failed calling https://api.telegram.org/bot{SECRET}/getMe")
        except RuntimeError:
            log.exception("boom")
    text = "\n".join(caplog.handler.format(record) for record in caplog.records)
    assert "SECRET-token_value" not in text
    assert text.count("[REDACTED]") >= 3
    assert "RuntimeError" in text  # the traceback itself is kept


def test_short_values_are_not_treated_as_secrets(caplog: pytest.LogCaptureFixture) -> None:
    redact_secret_in_logs("a")
    with caplog.at_level(logging.INFO, logger="tests.redaction"):
        logging.getLogger("tests.redaction").info("a cat")
    assert caplog.records[-1].getMessage() == "a cat"
