"""Typed application and request keys of the console sub-application."""

from __future__ import annotations

from typing import Final

import jinja2
from aiohttp import web

from authproxy.config.console import ConsoleConfig
from authproxy.console.session import Session, SessionStore

CONSOLE_CONFIG_KEY: Final = web.AppKey("console_config", ConsoleConfig)
SESSIONS_KEY: Final = web.AppKey[SessionStore]("console_sessions")
TEMPLATES_KEY: Final = web.AppKey("console_templates", jinja2.Environment)

# The signed-in session of this request, and its id (to save it again).
SESSION_KEY: Final = web.RequestKey("console_session", Session)
SESSION_ID_KEY: Final = web.RequestKey("console_session_id", str)
# The login form's pre-session CSRF value (double-submit cookie).
LOGIN_CSRF_KEY: Final = web.RequestKey("console_login_csrf", str)
