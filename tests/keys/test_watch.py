"""keys.watch: hot reload of the store while the server runs; the last good one."""

from __future__ import annotations

import json
import os
import time
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.web.appkeys import VERIFIER_KEY, WATCHER_KEY
from tests.support.cli import run_cli
from tests.support.fake_ollama.server import FakeOllama
from tests.support.polling import poll_until


async def wait_for_status(proxy, headers, status: int, limit: float) -> float:
    """Poll until a request gets ``status``; return the seconds it took."""
    start = time.monotonic()

    async def answered() -> bool:
        resp = await proxy.get("/api/tags", headers=headers)
        await resp.read()
        return bool(resp.status == status)

    # Slow enough to stay under the brute-force threshold (20 per minute).
    if not await poll_until(answered, within=limit, interval=0.15):
        pytest.fail(f"no {status} within {limit} s")
    return time.monotonic() - start


async def test_key_created_by_cli_works_within_2s(
    proxy, config_file: Path, capsys, secrets_seen
) -> None:
    """`authproxy keys create` against a running server: the token works within 2 s."""
    code, out = await run_cli(
        capsys, "keys", "create", "bob", "--json", "--config", str(config_file)
    )
    assert code == 0
    created = json.loads(out)
    secrets_seen.add(created["token"])
    headers = {"Authorization": f"Bearer {created['token']}"}
    elapsed = await wait_for_status(proxy, headers, HTTPStatus.OK, 2.0)
    assert elapsed < 2.0


async def test_revoked_key_stops_within_2s_even_when_cached(
    proxy, bearer, config_file: Path, capsys
) -> None:
    """`authproxy keys revoke` cuts off a key with a warm cache entry within 2 s."""
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    assert proxy.app[VERIFIER_KEY].stats.cache_hits == 1
    code, out = await run_cli(
        capsys, "keys", "revoke", "alice", "--config", str(config_file)
    )
    assert code == 0
    assert "Revoked key 'alice'" in out
    elapsed = await wait_for_status(proxy, bearer, HTTPStatus.UNAUTHORIZED, 2.0)
    assert elapsed < 2.0


async def test_broken_file_keeps_last_good_store(
    proxy, bearer, keys_path: Path, log_capture
) -> None:
    """A half-written store is refused with an error log; the old keys keep working."""
    good = keys_path.read_text()
    keys_path.write_text(good[: len(good) // 2] + "\n  - {broken: [")
    watcher = proxy.app[WATCHER_KEY]
    await poll_until(lambda: watcher.failures, within=3.0)
    assert watcher.failures == 1
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
    failure = log_capture.events("keystore_reload_failed")[0]
    assert failure["level"] == "error"
    assert "not valid YAML" in failure["error"]
    assert "argon2" not in json.dumps(failure)
    keys_path.write_text(good)
    await poll_until(lambda: watcher.reloads, within=3.0)
    assert watcher.reloads == 1


async def test_deleted_file_keeps_last_good_store(
    proxy, bearer, keys_path: Path
) -> None:
    """A store that vanishes (a bad deploy) does not lock everyone out."""
    keys_path.unlink()
    watcher = proxy.app[WATCHER_KEY]
    await poll_until(lambda: watcher.failures, within=3.0)
    assert watcher.failures == 1
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK


async def test_kubernetes_secret_symlink_swap(
    start_proxy, tmp_path: Path, keys_path: Path, make_key, fake: FakeOllama
) -> None:
    """A Secret volume swaps its ..data symlink atomically; the new store is used."""
    secret_dir = tmp_path / "secret"
    first = secret_dir / "..2026_11_01"
    first.mkdir(parents=True)
    (first / "keys.yaml").write_bytes(keys_path.read_bytes())
    (secret_dir / "..data").symlink_to(first.name)
    (secret_dir / "keys.yaml").symlink_to("..data/keys.yaml")
    client = await start_proxy({"keys.file": str(secret_dir / "keys.yaml")})
    carol = make_key("carol")  # written to keys_path, the "next version" of the Secret
    second = secret_dir / "..2026_11_02"
    second.mkdir()
    (second / "keys.yaml").write_bytes(keys_path.read_bytes())
    tmp_link = secret_dir / "..data_tmp"
    tmp_link.symlink_to(second.name)
    os.replace(tmp_link, secret_dir / "..data")
    headers = {"Authorization": f"Bearer {carol.token}"}
    assert await wait_for_status(client, headers, HTTPStatus.OK, 2.0) < 2.0


async def test_truncated_or_empty_store_keeps_last_good_store(
    start_proxy, make_key, keys_path: Path, log_capture, token: str
) -> None:
    """A store cut between records (valid YAML) or to 0 bytes is refused; keys work."""
    bob = make_key("bob")
    client = await start_proxy()
    watcher = client.app[WATCHER_KEY]
    headers = [{"Authorization": f"Bearer {t}"} for t in (token, bob.token)]
    good = keys_path.read_text()
    cut = good.index(f"- id: {bob.record.id}")
    for failures, (broken, reason) in enumerate(
        ((good[:cut], "incomplete"), ("", "the file is empty")), start=1
    ):
        keys_path.write_text(broken)
        await poll_until(lambda: watcher.failures >= failures, within=3.0)  # noqa: B023
        assert watcher.failures == failures
        for auth in headers:
            resp = await client.get("/api/tags", headers=auth)
            assert resp.status == HTTPStatus.OK
        failure = log_capture.events("keystore_reload_failed")[-1]
        assert (failure["level"], reason in failure["error"]) == ("error", True)
        assert "argon2" not in json.dumps(failure)
    assert watcher.reloads == 0


async def test_hand_edited_store_with_its_mark_reloads(
    proxy, bearer, keys_path: Path
) -> None:
    """A hand edit that keeps `records:` equal to the number of keys takes effect."""
    text = keys_path.read_text()
    assert text.splitlines()[-1] == "records: 1"
    keys_path.write_text(text.replace("disabled: false", "disabled: true", 1))
    watcher = proxy.app[WATCHER_KEY]
    await poll_until(lambda: watcher.reloads, within=3.0)
    assert (watcher.reloads, watcher.failures) == (1, 0)
    resp = await proxy.get("/api/tags", headers=bearer)
    assert resp.status == HTTPStatus.UNAUTHORIZED


async def test_version_1_store_loads_with_a_warning(
    proxy, bearer, keys_path: Path, log_capture
) -> None:
    """A store in the old format (no mark) still loads, warning how to upgrade."""
    text = keys_path.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("records:")]
    keys_path.write_text("\n".join(lines).replace("version: 2", "version: 1") + "\n")
    watcher = proxy.app[WATCHER_KEY]
    await poll_until(lambda: watcher.reloads, within=3.0)
    assert watcher.reloads == 1
    [warning] = log_capture.events("keystore_format_outdated")
    assert (warning["level"], warning["version"]) == ("warning", 1)
    assert "authproxy keys check --rewrite" in warning["fix"]
    assert (await proxy.get("/api/tags", headers=bearer)).status == HTTPStatus.OK
