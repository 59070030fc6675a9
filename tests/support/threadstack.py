"""The proxy, its admin listener (with the console) and the fake Ollama, in a thread.

Browser tests call WebDriver synchronously: each call blocks until the page has
loaded. The servers therefore cannot share the test's event loop; they run on a
loop of their own in a background thread, on real 127.0.0.1 sockets, with the
production runner and server settings, as ``serve`` builds them.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from aiohttp import web

from authproxy.admin.app import create_admin_app
from authproxy.config.load import load_config
from authproxy.config.model import Config
from authproxy.keys.lifecycle import CreatedKey, KeySpec, create_key
from authproxy.keys.store import make_hasher
from authproxy.server.httpserver import GuardedAppRunner, server_kwargs
from authproxy.times import utc_now
from authproxy.web.app import create_app
from tests.support.fake_ollama.server import FakeOllama, create_fake
from tests.support.harness import CHEAP_ARGON2
from tests.support.logs import Secrets

T = TypeVar("T")

# Seconds a start or stop may take before the test fails (not a speed assertion:
# only a hang is caught).
STARTUP_LIMIT = 30.0


def admin_listener_app(main_app: web.Application) -> web.Application:
    """Build what the admin listener serves: the admin API, with the console."""
    try:
        module = importlib.import_module("authproxy.console.app")
    except ModuleNotFoundError:  # before the console package exists
        return create_admin_app(main_app)
    build = cast(
        "Callable[[web.Application], web.Application]",
        module.create_admin_listener_app,
    )
    return build(main_app)


class ThreadStack:
    """A fake Ollama, the proxy and its admin listener, served from one thread.

    Args:
        root: a directory for the key store and the audit logs.
        extra: dotted config overrides on top of the defaults here.
    """

    config: Config
    proxy_url: str
    admin_url: str
    admin_token: str

    def __init__(self, root: Path, extra: dict[str, Any] | None = None) -> None:
        self.root = root
        self.extra = extra or {}
        self.fake = FakeOllama()
        self.secrets = Secrets()
        self.keys: dict[str, CreatedKey] = {}  # made by make_key, by name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="thread-stack", daemon=True
        )
        self._runners: list[web.BaseRunner] = []

    def start(self, prepare: Callable[[ThreadStack], None] | None = None) -> None:
        """Start the loop's thread, then the three servers on free ports.

        ``prepare`` runs once the config is known and before the proxy starts:
        it may make keys (``make_key``) and write audit history.
        """
        self._thread.start()
        try:
            self.call(self._start(prepare))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the servers (last started first), the loop and its thread."""
        if self._thread.is_alive():
            self.call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STARTUP_LIMIT)
        self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the servers' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(STARTUP_LIMIT)

    @property
    def audit_path(self) -> Path:
        """The proxy's audit log of requests."""
        return Path(self.config.audit.file)

    @property
    def audit_files(self) -> list[Path]:
        """The request and admin audit logs (they may not exist yet)."""
        return [self.audit_path, self.root / "audit" / "admin.jsonl"]

    def make_key(self, name: str, **kwargs: Any) -> CreatedKey:
        """Create a key in the store as the CLI does; remember its secrets."""
        created = create_key(
            Path(self.config.keys.file),
            make_hasher(self.config.keys.argon2),
            KeySpec(name=name, **kwargs),
            now=utc_now(),
        )
        self.secrets.add(created.token, created.record.hash)
        self.keys[name] = created
        return created

    async def _start(self, prepare: Callable[[ThreadStack], None] | None) -> None:
        fake = web.AppRunner(
            create_fake(self.fake),
            auto_decompress=False,
            access_log=None,
            handler_cancellation=True,
        )
        upstream = await self._serve(fake)
        self.config = load_config(
            None,
            {
                "upstream.url": upstream,
                "keys.file": str(self.root / "keys" / "keys.yaml"),
                "audit.file": str(self.root / "audit" / "usage.jsonl"),
                "audit.admin_file": str(self.root / "audit" / "admin.jsonl"),
                "admin.listen": "127.0.0.1:0",
                **CHEAP_ARGON2,
                **self.extra,
            },
        )
        # The console's sign-in key, made as the CLI makes one, before start-up.
        ops = self.make_key("ops", scopes=("admin",))
        assert ops.token is not None
        self.admin_token = ops.token
        if prepare is not None:
            prepare(self)
        app = create_app(self.config)
        self.proxy_url = await self._serve(
            self._runner(
                app,
                handler_cancellation=True,
                lean_front=self.config.server.front == "lean",
            )
        )
        self.admin_url = await self._serve(self._runner(admin_listener_app(app)))

    def _runner(self, app: web.Application, **kwargs: Any) -> GuardedAppRunner:
        return GuardedAppRunner(
            app,
            header_timeout=self.config.limits.header_timeout,
            **kwargs,
            **server_kwargs(self.config),
        )

    async def _serve(self, runner: web.BaseRunner) -> str:
        """Serve ``runner`` on a free loopback port; return its origin."""
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def _stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
