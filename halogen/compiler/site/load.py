"""Read `halogen.yaml` and `models.d/` into one in-memory `Site`, collecting every problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from halogen import yamlio
from halogen.compiler.site.inputs import MODEL_ID, ModelFile, SiteFile
from halogen.compiler.site.lock import LOCK_FILE, Lock, read_lock
from halogen.diagnostics import Diagnostic, Invalid, errors
from halogen.typed import parse

SITE_FILE = "halogen.yaml"
MODELS_DIR = "models.d"
MAX_MODELS = 5000


@dataclass(frozen=True)
class Model:
    id: str
    spec: ModelFile
    doc: yamlio.Document


@dataclass
class Site:
    spec: SiteFile
    doc: yamlio.Document
    models: dict[str, Model] = field(default_factory=dict)
    lock: Lock = field(default_factory=Lock)  # halogen.lock: what the model files are
    # With several nodes, one node's view of the site (halogen.compiler.cluster): the fraction of
    # each split model that this node's llama-server holds, by model id.
    shares: dict[str, float] = field(default_factory=dict)


def _read(path: Path, label: str, found: list[Diagnostic]) -> yamlio.Document | None:
    try:
        return yamlio.read(path, label)
    except Invalid as exc:
        found.extend(exc.diagnostics)
        return None


def model_paths(root: Path, found: list[Diagnostic]) -> list[Path]:
    """Model files in a stable order; symlinks that leave models.d/ are refused."""
    folder = root / MODELS_DIR
    if not folder.is_dir():
        found.append(
            Diagnostic(
                MODELS_DIR, 0, 0, "", "folder not found", f"create {MODELS_DIR}/ with one YAML file per model"
            )
        )
        return []
    real_folder = folder.resolve()
    paths = []
    for path in sorted(folder.iterdir()):
        label = f"{MODELS_DIR}/{path.name}"
        if path.name.startswith("."):
            continue
        if path.suffix not in (".yaml", ".yml"):
            if path.is_file():
                found.append(
                    Diagnostic(
                        label,
                        0,
                        0,
                        "",
                        "not a .yaml file",
                        "model files end in .yaml; move other files out of models.d/",
                        "warning",
                    )
                )
            continue
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError) as exc:  # a link to nothing, or a loop
                reason = exc.strerror if isinstance(exc, OSError) else "it loops"
                found.append(
                    Diagnostic(
                        label,
                        0,
                        0,
                        "",
                        f"symlink cannot be followed: {reason}",
                        "copy the file into models.d/ instead",
                    )
                )
                continue
            if real_folder not in target.parents:
                found.append(
                    Diagnostic(
                        label,
                        0,
                        0,
                        "",
                        "symlink points outside models.d/",
                        "copy the file into models.d/ instead",
                    )
                )
                continue
        if not path.is_file():
            found.append(Diagnostic(label, 0, 0, "", "not a regular file"))
            continue
        paths.append(path)
    if not paths and not any(d.file.startswith(MODELS_DIR) for d in errors(found)):
        found.append(Diagnostic(MODELS_DIR, 0, 0, "", "no model files", "add one <model-id>.yaml per model"))
    if len(paths) > MAX_MODELS:
        found.append(
            Diagnostic(MODELS_DIR, 0, 0, "", f"{len(paths)} model files, over the limit of {MAX_MODELS}")
        )
        return []
    return paths


def load(root: Path) -> tuple[Site | None, list[Diagnostic]]:
    """Parse and type-check every file; cross-file rules run later, in `checks`."""
    found: list[Diagnostic] = []
    site_doc = _read(root / SITE_FILE, SITE_FILE, found)
    site_spec = None
    if site_doc is not None and site_doc.data is None:
        found.append(
            Diagnostic(SITE_FILE, 1, 1, "", "file is empty", "describe the deployment and its backends")
        )
    elif site_doc is not None:
        site_spec, problems = parse(SiteFile, site_doc)
        found += problems
    models: dict[str, Model] = {}
    files: dict[str, str] = {}  # model id -> the file that holds it
    for path in model_paths(root, found):
        label = f"{MODELS_DIR}/{path.name}"
        model_id = path.name.rsplit(".", 1)[0]
        if model_id in files:  # x.yaml and x.yml
            found.append(
                Diagnostic(
                    label,
                    0,
                    0,
                    "",
                    f"model id {model_id!r} is already defined by {files[model_id]}",
                    "keep one file per model",
                )
            )
            continue
        files[model_id] = label
        if not MODEL_ID.match(model_id):
            found.append(
                Diagnostic(
                    label,
                    0,
                    0,
                    "",
                    f"model id {model_id!r} (the file name) is not valid",
                    "name the file with letters, digits, '.', '_' or '-', starting with a letter or digit",
                )
            )
            continue
        doc = _read(path, label, found)
        if doc is None:
            continue
        if doc.data is None and any(line.strip() for line in doc.lines):
            # A model commented out, as `halogen init` writes its example: no model, said so.
            found.append(
                Diagnostic(
                    label,
                    1,
                    1,
                    "",
                    "only comments: no model is served from this file",
                    "uncomment the model to serve it, or delete the file",
                    "warning",
                )
            )
            continue
        if doc.data is None:
            found.append(
                Diagnostic(label, 1, 1, "", "file is empty", "describe the model, at least its `file`")
            )
            continue
        spec, problems = parse(ModelFile, doc)
        found += problems
        if spec is not None:
            models[model_id] = Model(model_id, spec, doc)
    lock = Lock()
    try:
        lock = read_lock(root / LOCK_FILE)
    except Invalid as exc:
        found.extend(exc.diagnostics)
    if site_spec is None or site_doc is None:
        return None, found
    return Site(site_spec, site_doc, models, lock), found
