"""console.appkeys: the console's typed keys hold what they say, while it serves."""

from __future__ import annotations

import jinja2

from authproxy.config.console import ConsoleConfig
from authproxy.console.appkeys import CONSOLE_CONFIG_KEY, SESSIONS_KEY, TEMPLATES_KEY
from authproxy.console.session import MemorySessionStore
from tests.support.admin import Stack


async def test_the_console_app_holds_its_config_store_and_templates(
    console_stack: Stack,
) -> None:
    """The sub-application under /admin/ui/ carries the three keys."""
    console = next(
        r._app
        for r in console_stack.admin.app.router.resources()
        if r.canonical == "/admin/ui"
    )
    assert isinstance(console[CONSOLE_CONFIG_KEY], ConsoleConfig)
    assert isinstance(console[SESSIONS_KEY], MemorySessionStore)
    assert isinstance(console[TEMPLATES_KEY], jinja2.Environment)
    assert console[TEMPLATES_KEY].autoescape is True
