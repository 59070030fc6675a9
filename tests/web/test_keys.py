"""web.keys: the verifier and the watcher set up in the proxy application."""

from __future__ import annotations

import os

from authproxy.web.appkeys import VERIFIER_KEY


async def test_argon2_workers_default_to_the_usable_cpus(start_proxy) -> None:
    """Without keys.verify_workers, one argon2 thread per CPU this process may use."""
    client = await start_proxy({})
    assert client.app[VERIFIER_KEY].workers == len(os.sched_getaffinity(0))
    client = await start_proxy({"keys.verify_workers": 3})
    assert client.app[VERIFIER_KEY].workers == 3
