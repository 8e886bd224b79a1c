"""The reliability tests drive the same end-to-end bot harness as tests/bot."""

from tests.bot.conftest import bot, bot_settings  # noqa: F401 - pytest fixtures
