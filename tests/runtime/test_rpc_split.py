"""A model split over llama.cpp's RPC, on the real path: a three-node site whose SmolLM2 has
`split: [n-a, n-b, n-c]`, built by `halogen build`; n-b's and n-c's rpc-servers (tools/rpc,
llama.cpp) on loopback at the ports the site gives them; n-a's compiled config under
`halogen serve`, which starts llama-server with the compiled `--rpc ... --n-gpu-layers ...
--tensor-split ...`. The official `openai` client asks it.

What shows that the helpers hold part of the model: rpc-server's own log, with GGML_RPC_DEBUG
set (rpc_server::alloc_buffer in ggml/src/ggml-rpc/ggml-rpc.cpp logs each buffer a client has it
allocate: the weights, the KV cache, the compute buffer), and its resident memory growing by
that much. The main node, a CPU one, keeps the layers `--n-gpu-layers` leaves it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from .harness import free_ports, until
from .nodes_site import NodesSite, build_site, models_folder
from .processes import RpcServer, Serving, halogen_serve, listening, rpc_serving

pytestmark = [pytest.mark.real, pytest.mark.slow]

MiB = 1024 * 1024
SPLIT = ["n-a", "n-b", "n-c"]
HELPERS = SPLIT[1:]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> NodesSite:
    root = tmp_path_factory.mktemp("split")
    models = models_folder(root / "models", smollm2_gguf)
    # -lv 4: llama-server then logs each device's buffers (load_tensors in src/llama-model.cpp).
    model = {"file": smollm2_gguf.name, "contextSize": 512, "split": SPLIT, "args": ["-lv", "4"]}
    return build_site(root / "site", models, SPLIT, {"smol": model})


def serve_node(
    site: NodesSite, node: str, llama_server: Path, log: Path
) -> contextlib.AbstractContextManager[Serving]:
    """`halogen serve` on `node`'s compiled config, on the node's own port, with the models
    folder and llama-server of this machine in place of the pod's."""
    extra = ("--no-watch", "--models-dir", str(site.models_dir), "--llama-server", str(llama_server))
    return halogen_serve(site.config(node), log, *extra, port=site.nodes[node].port)


@dataclass
class Split:
    site: NodesSite
    serving: Serving
    helpers: dict[str, RpcServer]

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.serving.url}/v1", api_key="unused", timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def split(site: NodesSite, llama_server: Path, rpc_server: Path) -> Iterator[Split]:
    logs = site.root.parent
    with contextlib.ExitStack() as stack:
        helpers = {
            node: stack.enter_context(
                rpc_serving(rpc_server, logs / f"rpc-{node}.log", port=site.nodes[node].rpc_port)
            )
            for node in HELPERS
        }
        serving = stack.enter_context(serve_node(site, "n-a", llama_server, logs / "serve-n-a.log"))
        yield Split(site, serving, helpers)


def test_the_compiled_command_runs_the_model_over_both_helpers_rpc_servers(site: NodesSite) -> None:
    argv = site.argv("n-a", "smol")
    endpoints = argv[argv.index("--rpc") + 1].split(",")
    assert endpoints == [site.nodes[n].rpc_endpoint for n in HELPERS]
    # The last --n-gpu-layers wins (common/arg.cpp sets the field again): the split's, not the
    # cpu backend's 0, which would leave every layer on the main node.
    assert argv[len(argv) - argv[::-1].index("--n-gpu-layers")] != "0"
    assert len(argv[argv.index("--tensor-split") + 1].split(",")) == len(HELPERS)


def test_a_split_model_answers_the_openai_client_with_its_layers_on_both_rpc_servers(split: Split) -> None:
    before = {node: helper.rss() for node, helper in split.helpers.items()}
    assert all(not helper.allocations() for helper in split.helpers.values())

    answer = split.openai().chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens > 0

    for node, helper in split.helpers.items():
        sizes = helper.allocations()
        # Weights, KV cache and compute buffer: three buffers, the weights' the first.
        assert len(sizes) >= 3, f"{node}'s rpc-server allocated {sizes}:\n{helper.output()[-3000:]}"
        weights = sizes[0]
        assert weights > 10 * MiB, f"{node} holds {weights / MiB:.1f} MiB of weights"
        grown = helper.rss() - before[node]
        assert grown > weights, (
            f"{node}'s rpc-server grew {grown / MiB:.1f} MiB for {weights / MiB:.1f} MiB of weights"
        )
    # llama-server's own account, in the proxy's log history: the layers it offloaded, and a
    # model buffer on each rpc-server (named RPC<device>[endpoint], ggml-rpc.cpp).
    logs = httpx.get(f"{split.serving.url}/logs", headers={"Host": "127.0.0.1"}, timeout=30).text
    argv = split.site.argv("n-a", "smol")
    offloaded = argv[len(argv) - argv[::-1].index("--n-gpu-layers")]
    assert f"load_tensors: offloaded {offloaded}/31 layers to GPU" in logs, logs[-3000:]
    for helper in split.helpers.values():
        assert f"RPC0[{helper.endpoint}] model buffer size" in logs
    # Together less than the whole file: the main node kept its own layers and the embeddings.
    held = sum(helper.allocations()[0] for helper in split.helpers.values())
    assert held < split.site.models_dir.joinpath("SmolLM2-135M-Instruct.Q4_1.gguf").stat().st_size


def test_unloading_the_split_model_closes_its_connections_to_the_rpc_servers(split: Split) -> None:
    split.openai().chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    response = httpx.post(f"{split.serving.url}/unload", headers={"Host": "127.0.0.1"}, timeout=60)
    assert response.status_code == 200 and response.json()["unloaded"] == ["smol"]
    # rpc-server serves one client at a time and frees its buffers when it leaves
    # (ggml_backend_rpc_start_server and ~rpc_server in ggml-rpc.cpp).
    for helper in split.helpers.values():

        def closed(helper: RpcServer = helper) -> bool:
            out = helper.output()
            return out.count("Accepted client connection") == out.count("Client connection closed") > 0

        until(closed, lambda helper=helper: f"llama-server kept its connection:\n{helper.output()[-2000:]}")


def test_an_rpc_server_held_by_one_llama_server_keeps_a_second_waiting_until_it_leaves(
    split: Split, llama_server: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    # ggml_backend_rpc_start_server (ggml-rpc.cpp) accepts a client and serves it to the end
    # before it accepts the next: one rpc-server holds one split model's share at a time.
    split.openai().chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    helper = split.helpers["n-b"]
    (port,) = free_ports(1)
    argv = [str(llama_server), "-m", str(smollm2_gguf), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["-c", "256", "-t", "1", "--rpc", helper.endpoint, "--n-gpu-layers", "99"]
    with (tmp_path / "second.log").open("wb") as out:
        second = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert not listening(port), "a second llama-server started while the first held the rpc-server"
            time.sleep(0.1)
        httpx.post(f"{split.serving.url}/unload", headers={"Host": "127.0.0.1"}, timeout=60)
        until(lambda: listening(port), lambda: (tmp_path / "second.log").read_text(errors="replace")[-2000:])
    finally:
        second.terminate()
        second.wait(timeout=30)


def test_a_helper_whose_rpc_server_is_down_is_a_502_naming_its_endpoint(split: Split) -> None:
    # Last in the module: it stops n-c's rpc-server. llama-server connects to each --rpc server
    # while it reads its arguments and aborts when one does not answer (GGML_ABORT "Failed to
    # connect to ..." in ggml-rpc.cpp); the model's start fails, named by that line.
    httpx.post(f"{split.serving.url}/unload", headers={"Host": "127.0.0.1"}, timeout=60)
    down = split.helpers["n-c"]
    down.process.terminate()
    down.process.wait(timeout=30)
    with pytest.raises(openai.APIStatusError) as failure:
        split.openai().chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert failure.value.status_code == 502
    message = failure.value.response.json()["error"]["message"]
    assert f"Failed to connect to {down.endpoint}" in message.splitlines()[0], message
