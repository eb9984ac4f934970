"""The command line: thin wrappers over plain functions in halogen.commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from halogen import __version__
from halogen.image import MODELS_DIR
from halogen.runtime.serve.listen import (  # standard library only
    DEFAULT_LIMITS,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY,
    Limits,
)

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="How to print diagnostics: for people, for programs, or as GitHub Actions annotations.",
)
SRC = click.option(
    "--src",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The site: the folder with halogen.yaml and models.d/ [default: found upward from PATHS or the current folder].",
)
PATHS = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
STAGED = click.option(
    "--staged",
    is_flag=True,
    help="For pre-commit, which passes no deleted file: also the sites of files this commit "
    "deletes; with no PATHS and no such file, check nothing.",
)


class _Boundary(click.Group):
    """The last line of defence: a bug prints one line and exit 3, not a traceback
    (HALOGEN_DEBUG=1 shows it). Bad input never gets here: it is reported as diagnostics."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("HALOGEN_DEBUG"):
                raise
            click.echo(
                f"halogen: internal error: {type(exc).__name__}: {exc} (please report it; HALOGEN_DEBUG=1 shows where)",
                err=True,
            )
            sys.exit(3)


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halogen")
def main() -> None:
    """Compile models.d/ and halogen.yaml into a Flux-ready llama-swap deployment in out/,
    and serve it: a lean proxy with llama-swap's semantics and the OpenAI and Ollama APIs.

    Exit codes: 0 ok, 1 invalid input or stale out/, 2 usage error, 3 internal error.
    """


@main.command()
@PATHS
@SRC
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write [default: <src>/out].",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 with a diff when out/ differs from what build would write.",
)
@FORMAT
@STAGED
def build(
    paths: tuple[Path, ...], src: Path | None, out: Path | None, check: bool, fmt: str, staged: bool
) -> None:
    """Validate the site that PATHS belong to (default: found from the current folder) and write
    its out/: config.yaml, its ConfigMap, the Deployment, the Service and kustomization.yaml.
    out/ is replaced whole, or left as it was."""
    from halogen.commands import build as command

    if paths and src is not None:
        raise click.UsageError("give PATHS or --src, not both")
    sys.exit(command.run(list(paths), src, out, check=check, fmt=fmt, staged=staged))  # type: ignore[arg-type]


@main.command()
@PATHS
@SRC
@FORMAT
@STAGED
def validate(paths: tuple[Path, ...], src: Path | None, fmt: str, staged: bool) -> None:
    """Check the site that PATHS belong to (default: found from the current folder) without
    writing. Fast enough for a pre-commit hook; every rule of build but the manifest checks."""
    from halogen.commands import validate as command

    if paths and src is not None:
        raise click.UsageError("give PATHS or --src, not both")
    sys.exit(command.run(list(paths), fmt=fmt, src=src, staged=staged))  # type: ignore[arg-type]


@main.command()
@PATHS
@SRC
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A table for people, or one JSON document (sizes in bytes) for programs.",
)
def fit(paths: tuple[Path, ...], src: Path | None, fmt: str) -> None:
    """Show how the models of the site PATHS belong to (default: found from the current folder)
    fit the memory budget: each model's estimate (weights, KV cache at its context, buffers),
    the sets that may run together, and the pairs that never do, with what they would need.
    From halogen.lock: a model not in it is unknown. `halogen build` prints the same table on a terminal."""
    from halogen.commands import fit as command

    if paths and src is not None:
        raise click.UsageError("give PATHS or --src, not both")
    sys.exit(command.run(list(paths), src, fmt=fmt))  # type: ignore[arg-type]


@main.command()
@SRC
@click.option("--check", is_flag=True, help="Exit 1 when schemas/ differs from what would be written.")
def schema(src: Path | None, check: bool) -> None:
    """(Re)write the site's schemas/: JSON Schemas for halogen.yaml and for model files, for
    editors (the YAML files carry a `yaml-language-server: $schema=` line)."""
    from halogen.commands import schema as command

    sys.exit(command.run(src, check=check))


@main.command()
@PATHS
@SRC
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the model files are [default: deployment.models.hostPath, as on the node].",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the files and halogen.lock disagree.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 and write nothing when a model's file is missing [default: lock the files there, "
    "record the missing ones, exit 0].",
)
@click.option(
    "--remote",
    is_flag=True,
    help="Lock the models with a source from the Hugging Face Hub, downloading no weights: each "
    "file's sha256 from the Hub, the facts from its header read by range (a few MB). Honours "
    "HF_TOKEN and HF_ENDPOINT. Needs halogen-llamaswap[lock,pull].",
)
@FORMAT
def lock(
    paths: tuple[Path, ...],
    src: Path | None,
    models_dir: Path | None,
    check: bool,
    strict: bool,
    remote: bool,
    fmt: str,
) -> None:
    """Hash every GGUF file the models of the site PATHS belong to (default: found from the
    current folder) load, and read its header into halogen.lock (size, sha256, architecture,
    parameters, quantization, context, shapes), to commit with the site: the compiler and CI know
    the models from it. Files not there are recorded as missing (exit 0; --strict: exit 1).
    --remote reads them from the Hub instead. Needs the `gguf` package (halogen-llamaswap[lock])."""
    from halogen.commands import lock as command

    if paths and src is not None:
        raise click.UsageError("give PATHS or --src, not both")
    sys.exit(
        command.run(list(paths), src, models_dir, check=check, strict=strict, remote=remote, fmt=fmt)  # type: ignore[arg-type]
    )


@main.command()
@click.argument("folder", metavar="[DIR]", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(folder: Path) -> None:
    """Start a site in DIR (default: the current folder): halogen.yaml with one CPU backend,
    models.d/ with an example model commented out, and docs/flux/ to apply out/ with Flux; at the
    top of the git repository, a .pre-commit-config.yaml with halogen's hooks and a GitHub
    Actions workflow. The site builds as it stands. Writes nothing when a file is in the way."""
    from halogen.commands import init as command

    sys.exit(command.run(folder))


@main.command()
@click.argument("model", metavar="ORG/REPO/FILE.gguf")
@SRC
@click.option("--id", "new_id", default=None, help="The model id [default: from the file name, lower case].")
@click.option(
    "--revision",
    default="main",
    show_default=True,
    help="The branch, tag or commit to read; the model file pins the commit it names now.",
)
@click.option(
    "--context-size",
    type=click.IntRange(min=1),
    default=None,
    help="contextSize [default: the trained context, at most 32768].",
)
@click.option("--backend", default=None, help="The backend to run it with [default: the site's only one].")
def add(
    model: str,
    src: Path | None,
    new_id: str | None,
    revision: str,
    context_size: int | None,
    backend: str | None,
) -> None:
    """Write models.d/<id>.yaml for a GGUF on the Hugging Face Hub, from what the Hub says of it:
    file, source pinned to a commit, contextSize within the trained context; and its sha256 and
    header facts into halogen.lock. Reads the header by range: no weights are downloaded. Never
    overwrites a model file. Honours HF_TOKEN and HF_ENDPOINT. Needs halogen-llamaswap[lock,pull]."""
    from halogen.commands import add as command

    sys.exit(
        command.run(
            model, src, new_id=new_id, revision=revision, context=context_size, fmt="text", backend=backend
        )
    )


@main.command()
@SRC
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A sources document (what `halogen build` puts in the pull Job's ConfigMap) instead of the site.",
)
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the models go [default: deployment.models.hostPath; with --sources, the image's models mount].",
)
@click.option("--dry-run", is_flag=True, help="Fetch nothing; say what would be fetched and how much.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.argument("models", nargs=-1)
@FORMAT
def pull(
    src: Path | None,
    sources_file: Path | None,
    models_dir: Path | None,
    dry_run: bool,
    progress: bool,
    models: tuple[str, ...],
    fmt: str,
) -> None:
    """Download the GGUF files of MODELS (default: every model with a source) from the
    Hugging Face Hub into the models folder, resuming partial downloads, verifying each sha256
    (halogen.lock's, or the Hub's on a first pull, then recorded in halogen.lock) before the
    file takes its name. Honours HF_TOKEN and HF_ENDPOINT. Needs halogen-llamaswap[pull]."""
    from halogen.commands import pull as command

    sys.exit(
        command.run(
            src,
            sources_file,
            models_dir,
            models,
            dry_run=dry_run,
            progress=progress,
            fmt=fmt,  # type: ignore[arg-type]
        )
    )


@main.command(name="import")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."), metavar="[DIR]"
)
@click.option(
    "--manifests",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    default=None,
    help="The folder of the Kubernetes manifests it ran from: the Deployment's name, namespace, port, "
    "resources and model hostPath, the Service's type and address.",
)
@FORMAT
def import_(config: Path, directory: Path, manifests: Path | None, fmt: str) -> None:
    """Write a site into DIR (default: the current folder) from a llama-swap CONFIG:
    halogen.yaml, one models.d/ file per model and import-report.md, which says what was fixed,
    changed, kept raw or left out, and how each model compares with before. Never overwrites a
    site. Literal API keys are reported, never written."""
    from halogen.commands import importing as command

    sys.exit(command.run(config, directory, manifests, fmt=fmt))  # type: ignore[arg-type]


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A llama-swap config.yaml [default: out/config.yaml, here or in the site found upward from here].",
)
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    help="HOST:PORT to bind; the image passes 0.0.0.0:8080.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=DEFAULT_MAX_BODY,
    show_default=True,
    help="Largest request body accepted; larger ones get 413.",
)
@click.option(
    "--watch/--no-watch",
    default=True,
    show_default=True,
    help="Reload the config when the file changes (a ConfigMap mounted as a folder is updated in place), keeping models whose command did not change.",
)
@click.option(
    "--drain",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="On SIGTERM, SIGINT or SIGHUP, stop taking requests and give those in flight this many seconds to finish before the models stop (a second signal cuts it short). The Deployment sets it from its grace period.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LIMITS.header_timeout,
    show_default=True,
    help="Seconds a client gets to send a request's header, from connecting or from the request's first byte; then the connection is closed.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LIMITS.idle_timeout,
    show_default=True,
    help="Seconds a kept-alive connection may wait for its next request.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LIMITS.body_timeout,
    show_default=True,
    help="Seconds a client gets to send a request's whole body; then 408.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMITS.max_connections,
    show_default=True,
    help="Open client connections at most; more get 503 and are closed.",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    envvar="HALOGEN_ALLOW_ORIGINS",
    metavar="ORIGIN",
    help="A web origin (http://chat.lan:3000, or * for any) whose pages may call the API from a browser; repeat for more. Requests from other sites' pages are refused (403), curl and API clients are unaffected. Also HALOGEN_ALLOW_ORIGINS (space-separated).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    envvar="HALOGEN_ALLOW_HOSTS",
    metavar="NAME",
    help="A host name (chat.lan; .lan for every name under it; * for any) this server answers to, besides localhost, the name it listens on and, on 0.0.0.0, the machine's name; addresses are always answered. A request whose Host names another is refused (403), so a page on another site cannot reach it by pointing its own name here (DNS rebinding). Repeat for more. Also HALOGEN_ALLOW_HOSTS (space-separated).",
)
@click.option(
    "--models-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help=f"Serve a site's out/config.yaml away from its node: model files named under the pod's models mount ({MODELS_DIR}/...) are read from this folder instead. The file is left as built.",
)
@click.option(
    "--llama-server",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Run this llama-server binary wherever the config names one (the image's path, e.g. /usr/local/bin/llama-server).",
)
def serve(
    config_path: Path | None,
    listen: str,
    max_body_bytes: int,
    watch: bool,
    drain: float,
    header_timeout: float,
    idle_timeout: float,
    body_timeout: float,
    max_connections: int,
    allow_origins: tuple[str, ...],
    allow_hosts: tuple[str, ...],
    models_dir: Path | None,
    llama_server: Path | None,
) -> None:
    """Run the proxy: start, stop and swap llama-server processes on demand, with the
    OpenAI and Ollama APIs on one port, and a web UI at /ui/. Stops every child on SIGTERM, SIGINT or SIGHUP; on Linux the children die with it even when it is killed."""
    from halogen.commands import serve as command

    limits = Limits(header_timeout, idle_timeout, body_timeout, max_connections)
    sys.exit(
        command.run(
            config_path,
            listen,
            max_body=max_body_bytes,
            watch=watch,
            drain=drain,
            limits=limits,
            allow_origins=allow_origins,
            allow_hosts=allow_hosts,
            models_dir=models_dir.resolve() if models_dir else None,
            llama_server=llama_server.resolve() if llama_server else None,
        )
    )


@main.command()
@click.argument("url")
@click.argument("models", metavar="[MODEL]...", nargs=-1)
@click.option(
    "--api-key",
    metavar="KEY",
    envvar="HALOGEN_API_KEY",
    show_envvar=True,
    default=None,
    help="Sent as `Authorization: Bearer`; never printed.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "junit"]),
    default="table",
    show_default=True,
    help="A table for people, one JSON document, or JUnit XML (a testcase per model per check) for CI.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report to this file instead of stdout.",
)
@click.option(
    "--config-version",
    metavar="SHA256",
    default=None,
    help="First wait until the server reports this config version (the sha256 of its config.yaml, "
    "in the Halogen-Config-Version header or /api/version's configVersion); exit 1 if it does not within --wait.",
)
@click.option(
    "--wait",
    metavar="SECONDS",
    type=click.FloatRange(min=0),
    default=300,
    show_default=True,
    help="Seconds to wait for --config-version.",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    default=300,
    show_default=True,
    help="Seconds each request may take, a model's load included; a check that times out fails "
    "and the model's later checks are skipped.",
)
@click.option(
    "--concurrency",
    metavar="N",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Models tested at once (one at a time keeps models from swapping back and forth).",
)
def smoke(
    url: str,
    models: tuple[str, ...],
    api_key: str | None,
    fmt: str,
    output: Path | None,
    config_version: str | None,
    wait: float,
    timeout: float,
    concurrency: int,
) -> None:
    """Check a deployed endpoint: use each model, time its load and its speed.

    Tests the endpoint at URL (e.g. http://127.0.0.1:8080): every model GET /v1/models lists
    (selectors, profile pins and peers' models aside), or the MODELs named, one at a time.
    A chat model is asked to chat through the OpenAI API (/v1/chat/completions) and the Ollama
    API (/api/chat), streamed and not; an embedding model (Ollama capabilities `embedding`
    without `completion`, from /api/show) for /v1/embeddings; a reranker (/v1/models'
    `capabilities.reranker`) for /v1/rerank. For each model: its load time (until /running lists
    it ready), time to first token and prompt and generation tokens per second (llama-server's
    timings of the streamed chat). Exit codes: 0 every check passed, 1 a check failed or the
    endpoint could not be reached, 2 usage error."""
    from halogen.commands import smoke as command

    sys.exit(
        command.run(
            url,
            models,
            api_key=api_key,
            fmt=fmt,  # type: ignore[arg-type]
            output=output,
            config_version=config_version,
            wait=wait,
            timeout=timeout,
            concurrency=concurrency,
        )
    )
