"""The Containerfile says what halogen.image says: no build needed, so these run everywhere."""

import re
from pathlib import Path

import pytest

from halogen import image

from .containerfile import Instruction, labels, last, parse

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(REPO / "Containerfile")


def test_the_image_starts_halogen_serve_with_the_deployments_command(
    instructions: list[Instruction],
) -> None:
    entrypoint = last(instructions, "ENTRYPOINT").exec_form()
    cmd = last(instructions, "CMD").exec_form()
    assert entrypoint == list(image.ENTRYPOINT)
    assert cmd == image.serve_args()
    assert entrypoint + cmd == [
        "halogen",
        "serve",
        "--config",
        image.CONFIG_PATH,
        "--listen",
        f"0.0.0.0:{image.PORT}",
    ]


def test_the_image_exposes_the_port_halogen_listens_on(instructions: list[Instruction]) -> None:
    assert [i.args for i in instructions if i.keyword == "EXPOSE"] == [str(image.PORT)]


def test_the_healthcheck_asks_halogen_for_health_with_the_venvs_python(
    instructions: list[Instruction],
) -> None:
    command = last(instructions, "HEALTHCHECK").exec_form()
    assert command[0] == f"{image.VENV}/bin/python3"
    assert f"'http://127.0.0.1:{image.PORT}/health'" in command[-1]


def test_halogen_is_installed_in_the_venv_that_leads_the_path(
    instructions: list[Instruction],
) -> None:
    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert f"python3 -m venv --without-pip {image.VENV};" in run
    assert f"{image.VENV}/bin/python " in run
    assert '"halogen-llamaswap[runtime]"' in run
    assert "--no-index" in run, "the image must install from the wheelhouse alone"
    env = last(instructions, "ENV").args
    assert re.search(rf"\bPATH={re.escape(image.VENV)}/bin:\$PATH\b", env)


def test_the_image_runs_as_the_numeric_non_root_user(instructions: list[Instruction]) -> None:
    assert last(instructions, "USER").args == f"{image.USER_ID}:{image.USER_ID}"
    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert f"halogen:x:{image.USER_ID}:{image.USER_ID}:" in run


def test_the_default_base_is_a_pinned_kyuz0_toolbox(instructions: list[Instruction]) -> None:
    base = next(i for i in instructions if i.keyword == "ARG" and i.args.startswith("BASE="))
    reference = base.args.removeprefix("BASE=")
    repository, _, tag = reference.partition(":")
    assert repository == "docker.io/kyuz0/amd-strix-halo-toolboxes"
    # Either an immutable <backend>_<timestamp> tag or a digest; never a moving channel alone.
    assert re.fullmatch(r"[a-z0-9.\-]+_\d{8}T\d{6}(@sha256:[0-9a-f]{64})?", tag) or re.fullmatch(
        r"[a-z0-9.\-]+@sha256:[0-9a-f]{64}", tag
    ), reference
    assert last(instructions, "FROM").args == "${BASE}"


def test_the_labels_carry_source_version_and_revision_from_build_args(
    instructions: list[Instruction],
) -> None:
    found = labels(instructions)
    assert found["org.opencontainers.image.source"] == "${SOURCE}"
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert found["org.opencontainers.image.revision"] == "${REVISION}"


def test_rpc_server_is_the_bases_own_linked_where_the_rpc_deployment_runs_it(
    instructions: list[Instruction],
) -> None:
    from halogen.compiler.render import nodes

    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    # The rpc-server Deployment's command names the image's path.
    assert nodes.RPC_SERVER == image.RPC_SERVER
    # Where kyuz0's toolboxes install it: cmake --install puts the ggml-rpc-server target
    # (tools/rpc/CMakeLists.txt) in the prefix's bin, /usr/local (ROCm) or /usr (Vulkan).
    candidates = re.search(r"for found in ([^;]+); do", run)
    assert candidates is not None, run
    assert candidates[1].split() == [
        "/usr/local/bin/ggml-rpc-server",
        "/usr/bin/ggml-rpc-server",
        "/usr/bin/rpc-server",
    ]
    assert f'ln -s "$found" {image.RPC_SERVER};' in run
    # A base without one is refused, not shipped without it.
    assert re.search(rf"if \[ ! -x {re.escape(image.RPC_SERVER)} \]; then echo [^;]*>&2; exit 1; fi", run)
