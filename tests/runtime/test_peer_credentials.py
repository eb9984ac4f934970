"""What credentials reach a peer (runtime/forward/peers.py): the peer's own `apiKey`, as a Bearer token
and as x-api-key, as llama-swap's peer router sends it (internal/router/peer.go); and never the
key a client gave this proxy, which is a credential for this box, not for another one or a
hosted service."""

from __future__ import annotations

from pathlib import Path

from .harness import serving
from .test_peers import answer, near_site, peer_fake


async def test_a_peers_api_key_is_sent_as_bearer_and_as_x_api_key(tmp_path: Path) -> None:
    async with peer_fake(tmp_path, "qwen") as (fake, url):
        near = near_site(tmp_path, url, ["qwen"], apiKey="sk-peer")
        async with serving(near.write()) as proxy:
            await answer(await proxy.chat("box2/qwen", headers={"x-api-key": "sk-client"}))
    seen = fake.events("request")[-1]["headers"]
    assert seen["authorization"] == "Bearer sk-peer"
    assert seen["x-api-key"] == "sk-peer"


async def test_with_api_keys_set_the_clients_own_key_never_reaches_a_peer(tmp_path: Path) -> None:
    async with peer_fake(tmp_path, "qwen") as (fake, url):
        near = near_site(tmp_path, url, ["qwen"])  # a peer without a key of its own
        near.top["apiKeys"] = ["sk-client"]
        async with serving(near.write()) as proxy:
            for header in ({"Authorization": "Bearer sk-client"}, {"x-api-key": "sk-client"}):
                await answer(await proxy.chat("box2/qwen", headers=header))
                seen = fake.events("request")[-1]["headers"]
                assert "authorization" not in seen and "x-api-key" not in seen, seen
