"""The image, built for real from the Containerfile with scripts/build-image and buildah, on a
small Debian base standing in for the toolbox, runs `halogen serve` against a real llama-server.

buildah is the engine here because it needs no daemon: `--isolation chroot` with vfs storage,
in a storage root of this test's own that is deleted afterwards. Chroot isolation shares the
host's network and PID namespace (not its mount namespace), so the server binds 127.0.0.1 on a
free port and the test can see, by their mount namespace, every process the container starts.
"""

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import halogen
from halogen import image
from tests.runtime.harness import free_port_run

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
MODEL_ID = "smollm2"
BASE_RPC_SERVER = "/usr/local/bin/ggml-rpc-server"


class Buildah:
    """buildah with a private vfs storage root: nothing it makes outlives the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        conf = root / "storage.conf"
        conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/storage"\nrunroot = "{root}/run"\n')
        self.env = {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(conf),
            "STORAGE_DRIVER": "vfs",
            "BUILDAH_ISOLATION": "chroot",
        }

    def __call__(self, *args: str, timeout: float = 600) -> str:
        return run(["buildah", *args], env=self.env, timeout=timeout)

    def run_in(self, container: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["buildah", "run", container, "--", *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result.stdout


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def buildah(figures: list[str]) -> Iterator[Buildah]:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(
            f"the image test needs root and {', '.join(missing) or 'buildah, debootstrap'}: "
            "run scripts/setup-system (or deselect with -m 'not image')"
        )
    root = Path(tempfile.mkdtemp(prefix="halogen-image-test."))
    tool = Buildah(root)
    yield tool
    subprocess.run(["buildah", "rm", "--all"], env=tool.env, capture_output=True, check=False)
    subprocess.run(["buildah", "rmi", "--all", "--force"], env=tool.env, capture_output=True, check=False)
    mounted = [line for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]
    assert not mounted, f"still mounted under the test's storage, not deleting it: {mounted}"
    storage = root / "storage"
    used = sum(f.stat().st_size for f in storage.rglob("*") if f.is_file() and not f.is_symlink())
    shutil.rmtree(root)
    figures.append(f"vfs storage after removing every container and image: {mib(used)}, deleted")


@dataclass(frozen=True)
class Base:
    name: str
    python: str


@pytest.fixture(scope="module")
def base(buildah: Buildah, rpc_server: Path, figures: list[str]) -> Base:
    tarball = Path(run([str(SCRIPTS / "debian-base"), "--print-name"]).strip())
    cached = tarball.is_file()
    started = time.monotonic()
    assert Path(run([str(SCRIPTS / "debian-base")]).strip()) == tarball
    figures.append(
        f"debian base tarball: {mib(tarball.stat().st_size)}, "
        f"{'cached' if cached else f'made in {time.monotonic() - started:.0f} s'}"
    )

    started = time.monotonic()
    name = f"localhost/halogen-test-base:{tarball.stem.removeprefix('debian-base-')}"
    container = buildah("from", "scratch").strip()
    buildah("add", "--quiet", container, str(tarball), "/")
    # Where the ROCm toolboxes' `cmake --install` puts llama.cpp's rpc-server (its target's name).
    buildah("copy", "--quiet", "--chown", "0:0", container, str(rpc_server), BASE_RPC_SERVER)
    buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", container)
    buildah("commit", "--quiet", "--rm", container, name)
    probe = buildah("from", name).strip()
    python = buildah.run_in(probe, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    buildah("rm", probe)
    assert python.returncode == 0, python.stderr
    figures.append(
        f"base imported into buildah in {time.monotonic() - started:.0f} s (python {python.stdout.strip()})"
    )
    return Base(name, python.stdout.strip())


@pytest.fixture(scope="module")
def built(buildah: Buildah, base: Base, figures: list[str]) -> str:
    started = time.monotonic()
    tag = (
        run(
            [
                str(SCRIPTS / "build-image"),
                "--engine",
                "buildah",
                "--base",
                base.name,
                "--tag",
                f"localhost/halogen-test:{halogen.__version__}",
                "--python",
                base.python,
            ],
            env=buildah.env,
            timeout=900,
        )
        .strip()
        .splitlines()[-1]
    )
    figures.append(f"scripts/build-image (wheelhouse + buildah build): {time.monotonic() - started:.0f} s")
    return tag


@pytest.fixture(scope="module")
def config(buildah: Buildah, built: str) -> dict[str, Any]:
    inspected: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", built))
    return inspected


def test_the_image_starts_halogen_serve_with_the_deployments_command(config: dict[str, Any]) -> None:
    docker = config["Docker"]["config"]
    assert docker["Entrypoint"] + docker["Cmd"] == image.serve_command()
    assert any(v.startswith(f"PATH={image.VENV}/bin:") for v in docker["Env"])


def test_the_image_exposes_the_http_port(config: dict[str, Any]) -> None:
    assert config["Docker"]["config"]["ExposedPorts"] == {f"{image.PORT}/tcp": {}}


def test_the_image_says_which_halogen_and_base_it_holds(config: dict[str, Any], base: Base) -> None:
    found = config["Docker"]["config"]["Labels"]
    assert found["org.opencontainers.image.version"] == halogen.__version__
    # The commit the image was built from: HEAD then, so HEAD or an ancestor now (others may
    # commit while the test runs), "-dirty" when the work tree had changes.
    revision = found["org.opencontainers.image.revision"].removesuffix("-dirty")
    assert len(revision) == 40, revision
    run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", revision, "HEAD"])
    assert found["org.opencontainers.image.base.name"] == base.name


def test_the_venv_holds_halogen_and_its_runtime_dependencies_only(
    buildah: Buildah, built: str, figures: list[str]
) -> None:
    container = buildah("from", built).strip()
    listing = buildah.run_in(
        container,
        f"{image.VENV}/bin/python",
        "-c",
        (
            "import importlib.metadata as m, json, sys; print(json.dumps({"
            "'python': '%d.%d' % sys.version_info[:2], 'prefix': sys.prefix, 'dists': ["
            "{'name': d.metadata['Name'], 'version': d.version, 'requires': d.requires or []}"
            " for d in m.distributions()]}))"
        ),
    )
    buildah("rm", container)
    assert listing.returncode == 0, listing.stderr
    found = json.loads(listing.stdout)
    assert found["prefix"] == image.VENV
    dists = {canonicalize_name(d["name"]): d for d in found["dists"]}

    # What halogen-llamaswap[runtime] pulls in, by the installed packages' own metadata.
    def closure(name: str, extras: frozenset[str]) -> set[str]:
        key = canonicalize_name(name)
        assert key in dists, f"{name} is required but not installed"
        needed: set[str] = {key}
        for text in dists[key]["requires"]:
            requirement = Requirement(text)
            marker = requirement.marker or Marker("python_version >= '0'")
            if any(marker.evaluate({"extra": e, "python_version": found["python"]}) for e in extras | {""}):
                needed |= closure(requirement.name, frozenset(requirement.extras))
        return needed

    expected = closure("halogen-llamaswap", frozenset({"runtime"}))
    listed = sorted(f"{d['name']} {d['version']}" for d in dists.values())
    figures.append(f"venv ({image.VENV}, python {found['python']}): {len(listed)} packages")
    figures.extend(f"  {line}" for line in listed)
    assert set(dists) == expected
    assert {"aiohttp", "click", "pydantic", "ruamel-yaml", "prometheus-client"} <= set(dists)
    for absent in ("jinja2", "kubernetes-validate", "pip", "setuptools"):
        assert absent not in dists


def test_halogen_adds_one_layer_over_the_base(
    buildah: Buildah, base: Base, built: str, figures: list[str]
) -> None:
    def layers(reference: str) -> list[dict[str, Any]]:
        destination = buildah.root / f"push-{reference.rsplit(':', 1)[-1]}"
        buildah("push", "--quiet", "--disable-compression", reference, f"dir:{destination}")
        manifest = json.loads((destination / "manifest.json").read_text())
        for layer in manifest["layers"]:
            layer["path"] = destination / layer["digest"].split(":", 1)[1]
        return list(manifest["layers"])

    below, above = layers(base.name), layers(built)
    assert [la["digest"] for la in above[:-1]] == [la["digest"] for la in below]
    ours = above[-1]
    compressed = len(gzip.compress(ours["path"].read_bytes(), compresslevel=6))
    figures.append(
        f"layer halogen adds over the base: {mib(ours['size'])} uncompressed, {mib(compressed)} gzipped"
    )
    assert ours["size"] < 80 * 2**20, "the halogen layer grew past 80 MiB: something extra got in"


def test_the_bases_rpc_server_runs_as_the_images_rpc_server(buildah: Buildah, built: str) -> None:
    container = buildah("from", built).strip()
    try:
        linked = buildah.run_in(container, "readlink", image.RPC_SERVER)
        usage = buildah.run_in(container, image.RPC_SERVER, "--help")
    finally:
        buildah("rm", container)
    assert linked.stdout.strip() == BASE_RPC_SERVER, linked.stderr
    # tools/rpc/rpc-server.cpp's usage, on stderr; -H and -p are what the Deployment passes.
    assert usage.returncode == 0, usage.stderr
    assert "-H, --host HOST" in usage.stderr and "-p, --port PORT" in usage.stderr


def test_a_base_without_rpc_server_is_refused_by_the_build(buildah: Buildah, base: Base) -> None:
    container = buildah("from", base.name).strip()
    removed = buildah.run_in(container, "rm", BASE_RPC_SERVER)
    assert removed.returncode == 0, removed.stderr
    bare = f"{base.name}-no-rpc"
    buildah("commit", "--quiet", "--rm", container, bare)
    argv = [str(SCRIPTS / "build-image"), "--engine", "buildah", "--base", bare, "--python", base.python]
    argv += ["--tag", f"localhost/halogen-test-no-rpc:{halogen.__version__}"]
    result = subprocess.run(argv, env=buildah.env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode != 0, result.stdout
    assert "the base has no rpc-server (llama.cpp built with -DGGML_RPC=ON)" in result.stderr, result.stderr[
        -3000:
    ]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    entrypoint: int
    mount_namespace: str
    log: Path

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def processes(self) -> dict[int, str]:
        """Every process in this container's mount namespace, by pid, with its command line.
        (Not by root directory: once `buildah run` exits, an orphan's root reads as "/".)"""
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "mnt") == self.mount_namespace:
                        found[int(entry.name)] = (
                            (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                        )
                except OSError:
                    continue
        return found

    def stop(self) -> tuple[bool, dict[int, str]]:
        """SIGTERM to the entrypoint, as the kubelet sends it. Returns whether it exited within
        30 s, and the container's processes left after that (killed, but reported)."""
        exited = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.entrypoint, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                exited = False
        leftovers = self.processes()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        return exited, leftovers


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def container_entrypoint(run_pid: int) -> int | None:
    """The process `buildah run` started: the child of its chroot helper."""
    for pid in descendants(run_pid):
        try:
            helper = Path(f"/proc/{ppid(pid)}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if helper.endswith(b"buildah-chroot-exec"):
            return pid
    return None


@pytest.fixture(scope="module")
def server(
    buildah: Buildah,
    built: str,
    config: dict[str, Any],
    llama_server: Path,
    smollm2_gguf: Path,
    tmp_path_factory: pytest.TempPathFactory,
    figures: list[str],
) -> Iterator[Server]:
    """The image's entrypoint in a working container, with the Deployment's mounts: the config
    directory at /etc/halogen and the models read-only at /models. llama-server goes where the
    ROCm toolboxes keep it."""
    work = tmp_path_factory.mktemp("serve")
    config_dir = work / "config"
    config_dir.mkdir()
    server_bin = image.LLAMA_SERVER["rocm"]
    (config_dir / "config.yaml").write_text(
        f"healthCheckTimeout: 120\n"
        f"startPort: {free_port_run()}\n"
        f"models:\n"
        f"  {MODEL_ID}:\n"
        f"    cmd: |\n"
        f"      {server_bin}\n"
        f"      --host 127.0.0.1\n"
        f"      --port ${{PORT}}\n"
        f"      -m {image.MODELS_DIR}/{smollm2_gguf.name}\n"
        f"      --ctx-size 1024\n"
        f"      --threads 2\n"
        f"    name: SmolLM2 135M Instruct\n"
    )
    container = buildah("from", "--name", "halogen-test-serve", built).strip()
    buildah("copy", "--quiet", "--chown", "0:0", container, str(llama_server), server_bin)

    port = free_port_run()
    docker = config["Docker"]["config"]
    argv = [*docker["Entrypoint"], "--config", image.CONFIG_PATH, "--listen", f"127.0.0.1:{port}"]
    log = work / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                "buildah",
                "run",
                "--volume",
                f"{config_dir}:{image.CONFIG_DIR}:ro",
                "--volume",
                f"{smollm2_gguf.parent}:{image.MODELS_DIR}:ro",
                container,
                "--",
                *argv,
            ],
            env=buildah.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    ready = False
    while time.monotonic() - started < 60 and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                ready = response.status == 200
        except OSError:
            pass
        if ready:
            break
        time.sleep(0.1)
    entrypoint = container_entrypoint(process.pid) if ready else None
    if entrypoint is None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        buildah("rm", container)
        pytest.fail(f"halogen serve did not become healthy in the container:\n{log.read_text()[-4000:]}")
    figures.append(f"halogen serve answered /health {time.monotonic() - started:.1f} s after buildah run")
    namespace = os.readlink(f"/proc/{entrypoint}/ns/mnt")
    assert namespace != os.readlink("/proc/self/ns/mnt"), "chroot isolation gave no mount namespace"
    srv = Server(url, process, entrypoint, namespace, log)
    yield srv
    _, leftovers = srv.stop()
    buildah("rm", container)
    assert not leftovers, f"processes outlived the container: {leftovers}"


def test_the_image_serves_a_real_model_through_its_entrypoint(server: Server, figures: list[str]) -> None:
    status, body = server.get("/health")
    assert status == 200, body

    status, body = server.get("/v1/models")
    assert status == 200, body
    assert [m["id"] for m in json.loads(body)["data"]] == [MODEL_ID]

    started = time.monotonic()
    answer = server.post(
        "/v1/chat/completions",
        {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "Say hello in three words."}],
            "max_tokens": 16,
            "temperature": 0,
        },
    )
    figures.append(
        f"first chat completion (llama-server cold start included): {time.monotonic() - started:.1f} s"
    )
    (choice,) = answer["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")


def test_the_image_runs_halogen_and_llama_server_as_a_non_root_user(
    config: dict[str, Any], server: Server
) -> None:
    assert config["Docker"]["config"]["User"] == f"{image.USER_ID}:{image.USER_ID}"
    server.post(
        "/v1/chat/completions",
        {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
    )
    running = server.processes()
    assert any(image.LLAMA_SERVER["rocm"] in line for line in running.values()), running
    for pid in running:
        uids = next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
        ).split()[1:]
        assert set(uids) == {str(image.USER_ID)}, f"{running[pid]} runs as uid {uids}"


def test_the_healthcheck_passes_on_a_healthy_server_and_fails_without_one(
    buildah: Buildah, built: str, config: dict[str, Any], server: Server
) -> None:
    test = config["Docker"]["config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    # Same command, pointed at the test's port: 8080 on a shared host network may be anyone's.
    live_port = server.url.rsplit(":", 1)[1]
    script = test[-1]
    assert script.count(f":{image.PORT}/health") == 1
    container = buildah("from", built).strip()
    try:
        healthy = buildah.run_in(container, *test[1:-1], script.replace(f":{image.PORT}/", f":{live_port}/"))
        closed = buildah.run_in(
            container, *test[1:-1], script.replace(f":{image.PORT}/", f":{free_port_run()}/")
        )
    finally:
        buildah("rm", container)
    assert healthy.returncode == 0, healthy.stderr
    assert closed.returncode != 0


def test_stopping_the_container_stops_halogen_and_every_llama_server(server: Server) -> None:
    server.post(
        "/v1/chat/completions",
        {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
    )
    before = server.processes()
    assert any(image.LLAMA_SERVER["rocm"] in line for line in before.values()), before
    exited, leftovers = server.stop()
    assert exited, f"halogen serve did not exit within 30 s of SIGTERM:\n{server.log.read_text()[-3000:]}"
    assert not leftovers, f"still running after halogen exited: {leftovers}"
