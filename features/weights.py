"""Resolve and load open_clip weights, official ones by default, and say exactly which weights were used.

``load_clip(model_name, pretrained, weights=...)`` builds an open_clip model (``RN101``, ``ViT-B-32``,
``ViT-B-16``; any open_clip built-in name works) and returns it with a :class:`WeightsIdentity` for the
feature store's metadata.

``weights="official"`` (the default) and ``pretrained``:

1. ``None``: OpenAI's weights for the architecture (open_clip's ``openai`` tag), i.e. its Hugging Face hub
   entry (``timm/resnet101_clip.openai``, ``timm/vit_base_patch32_clip_224.openai``,
   ``timm/vit_base_patch16_clip_224.openai``; file ``open_clip_model.safetensors``), downloaded on first use
   into the standard HF cache by ``vlpet.hub`` (huggingface_hub: progress bar, ``HF_HOME``, ``HF_ENDPOINT``,
   ``HF_HUB_OFFLINE``, ``HF_TOKEN``), verified against the hub's published sha256, read from the cache
   afterwards. Not obtainable: :class:`vlpet.hub.WeightsUnavailableError`, never a fallback;
2. another open_clip pretrained tag: the same, from that tag's hub entry (or, for tags without one, open_clip's
   URL cache ``~/.cache/clip/<file>`` when the file is there and matches the checksum in its URL);
3. a local file path: ``.safetensors`` (preferred), or ``.pt``/``.pth``/``.bin`` state dicts, which are loaded
   only through open_clip's own loader with ``weights_only=True`` (this module never unpickles anything itself).
   OpenAI's original TorchScript archives (``RN101.pt``, ``ViT-B-32.pt`` from ``openaipublic``) cannot be read
   with ``weights_only=True``; they are accepted when their sha256 equals the checksum that OpenAI publishes in
   the download URL (then they are the official files) or when the caller passes ``allow_torchscript=True``, and
   are read by ``open_clip.load_openai_model`` (``torch.jit.load``: TorchScript, not arbitrary pickle).

``weights="random"``: the architecture with random weights, asked for by name (tests, benchmarks, the offline
demo), deterministic from ``seed``, with a :class:`RandomWeightsWarning`; ``WeightsIdentity.random_init`` is
True so every store and lineage record says so.

QuickGELU: OpenAI's CLIP uses QuickGELU, while open_clip's plain ``ViT-B-32`` config uses exact GELU. The
extractors pass ``quick_gelu=True`` (the OpenAI architecture, the paper's weights); for ``load_clip`` the default
``None`` means "what the tag says" for tags and False otherwise. It changes the ViT outputs (not RN101's visual
tower, which uses ReLU), so it is part of the identity.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from features.forkguard import SEED_OR_FORK
from vlpet.hub import HubFile, WeightsUnavailableError, check_weights, hub_file, sha256_of

log = logging.getLogger(__name__)

SUPPORTED_MODELS = ("RN101", "ViT-B-32", "ViT-B-16")
RANDOM_INIT = "random-init"
_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# open_clip's names for the files of an HF hub entry (constants.HF_SAFE_WEIGHTS_NAME / HF_WEIGHTS_NAME).
_HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OFFICIAL_TAG = "openai"


class RandomWeightsWarning(UserWarning):
    """Emitted whenever a CLIP model is built with random weights instead of pretrained ones."""


@dataclass(frozen=True)
class WeightsIdentity:
    """Which weights a model carries; stored in the feature store's metadata and lineage records.

    ``source`` is the resolved file path (a local file), the pretrained tag (e.g. ``"openai"``; ``file`` then says
    where it is cached) or ``"random-init"``. ``sha256`` is the weights file's digest (None for random init, where
    ``seed`` makes the weights reproducible instead). For hub weights, ``hub_repo``/``hub_file``/``hub_revision``
    name the repo, the file and the commit it was resolved to.
    """

    model_name: str
    source: str
    sha256: str | None
    random_init: bool
    open_clip_version: str
    quick_gelu: bool
    tag: str | None = None
    file: str | None = None
    seed: int | None = None
    loader: str = "open_clip.create_model"
    hub_repo: str | None = None
    hub_file: str | None = None
    hub_revision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """A compact string naming these weights (for a store's ``weights=``): the file digest, or the seed."""
        arch = f"{self.model_name}{'-quickgelu' if self.quick_gelu else ''}"
        if self.random_init:
            return f"{arch}:random-init:seed={self.seed}:open_clip={self.open_clip_version}"
        return f"{arch}:sha256:{self.sha256}"


def expected_key(model_name: str, pretrained: str | os.PathLike[str] | None, *, quick_gelu: bool,
                 seed: int = 0, weights: str = "official", cache_dir: str | os.PathLike[str] | None = None
                 ) -> str | None:
    """``WeightsIdentity.key()`` of what ``load_clip`` would load, without building the model: random init's
    seed, or the digest of the weights file (official or tagged weights are downloaded here if not cached, so a
    missing file raises :class:`WeightsUnavailableError` before a caller writes anything). None when only a
    build can tell (a TorchScript archive).

    Lets an unchanged re-run decide it has nothing to do without paying for a model build."""
    arch = f"{model_name}{'-quickgelu' if quick_gelu else ''}"
    if check_weights(weights) == "random":
        _no_pretrained_with_random(pretrained)
        return f"{arch}:random-init:seed={seed}:open_clip={open_clip_version()}"
    value = OFFICIAL_TAG if pretrained is None else os.fspath(pretrained)
    path = Path(value).expanduser()
    if path.is_file():
        return None if is_torchscript_archive(path) else f"{arch}:sha256:{file_sha256(path)}"
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(model_name, value)
    if not tag_cfg:
        return None  # load_clip says what is wrong with it
    file, _ = resolve_tag(model_name, value, cache_dir)
    return None if is_torchscript_archive(file) else f"{arch}:sha256:{file_sha256(file)}"


def _no_pretrained_with_random(pretrained: Any) -> None:
    if pretrained is not None:
        raise ValueError(f"--weights random and --pretrained {os.fspath(pretrained)} contradict each other: "
                         "random weights use no file; drop one of them")


def official_hub_file(model_name: str, tag: str = OFFICIAL_TAG) -> tuple[str, str] | None:
    """(repo id, file name) of a tag's Hugging Face hub entry, safetensors preferred; None when it has none."""
    import open_clip

    hub = (open_clip.get_pretrained_cfg(model_name, tag) or {}).get("hf_hub", "")
    if not hub:
        return None
    repo_id, filename = os.path.split(hub.rstrip("/") + ("/" if hub.endswith("/") else ""))
    return repo_id, filename or _HF_FILENAMES[0]


def resolve_tag(model_name: str, tag: str, cache_dir: str | os.PathLike[str] | None = None
                ) -> tuple[Path, HubFile | None]:
    """The local file of an open_clip pretrained ``tag`` (downloaded from its hub entry on first use, verified),
    and the hub file record; raises :class:`WeightsUnavailableError` when it cannot be had."""
    import open_clip

    fetch_name = next((n for n, m in EXTRACTOR_MODELS.items() if m == model_name), model_name) \
        if tag == OFFICIAL_TAG else f"{model_name}:{tag}"
    entry = official_hub_file(model_name, tag)
    if entry is not None:
        repo_id, filename = entry
        names = [filename]
        if filename.endswith((".bin", ".pth")):  # open_clip's safetensors alternatives first
            names.insert(0, _HF_FILENAMES[0] if filename == _HF_FILENAMES[1] else filename[:-4] + ".safetensors")
        for i, name in enumerate(names):
            got = hub_file(repo_id, name, required=i == len(names) - 1, fetch_name=fetch_name,
                           alternative="a local weights file: --pretrained FILE", cache=cache_dir)
            if got is not None:
                return Path(got.path), got
    cached = find_cached_pretrained(model_name, tag, cache_dir)
    if cached is not None:
        return cached, None
    url = (open_clip.get_pretrained_cfg(model_name, tag) or {}).get("url", "")
    raise WeightsUnavailableError(
        f"pretrained tag {tag!r} of {model_name} has no Hugging Face hub entry and its file is not cached "
        f"({cache_dir or '~/.cache/clip'}; {url or 'no URL'}): download it and pass --pretrained FILE")


# The extractors' architectures, by extractor name (the names `vlpet weights fetch` takes).
EXTRACTOR_MODELS = {"clip-rn101-grid": "RN101", "clip-vit-b32-grid": "ViT-B-32", "clip-vit-b16-grid": "ViT-B-16",
                     "clip-vit-b32-video": "ViT-B-32"}


def open_clip_version() -> str:
    """open_clip's version from package metadata (importing open_clip costs seconds: it pulls in transformers)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("open_clip_torch")
    except PackageNotFoundError:
        import open_clip

        return str(getattr(open_clip, "__version__", "unknown"))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, streamed; memoised per (path, size, mtime) within the process (``vlpet.hub``'s)."""
    return sha256_of(path)


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """True for a TorchScript zip (``torch.jit.save`` output, e.g. OpenAI's original ``RN101.pt``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _openai_sha256(model_name: str) -> str | None:
    """The sha256 OpenAI publishes in the download URL of its checkpoint for this model (None if none)."""
    import open_clip

    url = open_clip.get_pretrained_cfg(model_name, "openai").get("url", "")
    if "openaipublic" not in url:
        return None
    return url.rstrip("/").split("/")[-2]


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith(_FILE_SUFFIXES) or Path(value).exists()


def find_cached_pretrained(model_name: str, tag: str, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The local file of an open_clip pretrained ``tag`` if it is already cached; never downloads.

    Looks in the Hugging Face hub cache (``cache_dir`` or the default HF cache) for the tag's ``hf_hub`` repo, then in
    open_clip's URL cache (``cache_dir`` or ``~/.cache/clip``) for the tag's URL file, accepting the latter only when
    its sha256 matches the checksum in the URL (OpenAI and mlfoundations URLs carry one).
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        p = Path(cfg["file"])
        return p if p.is_file() else None
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub is a dependency of open_clip
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            # open_clip's convention: "org/repo/" = default file names, "org/repo/file.pt" = that file.
            repo_id, filename = os.path.split(hub)
            names = [filename] if filename else list(_HF_FILENAMES)
            if filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            for name in names:
                hit = try_to_load_from_cache(repo_id, name, cache_dir=str(cache_dir) if cache_dir else None)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    url = cfg.get("url", "")
    if url:
        base = Path(cache_dir) if cache_dir else Path("~/.cache/clip").expanduser()
        target = base / os.path.basename(url)
        if target.is_file():
            if "openaipublic" in url:
                expected = url.split("/")[-2]
            elif "mlfoundations" in url:
                expected = os.path.splitext(os.path.basename(url))[0].split("-")[-1]
            else:
                expected = ""
            if not expected or file_sha256(target).startswith(expected):
                return target
            log.warning("cached %s does not match the checksum in its URL; ignoring it", target)
    return None


# torch's default generator is process-wide: two threads building random models at once (image and video
# extraction running concurrently in one flow) would interleave their draws, and fork_rng restores its state
# on exit under the other thread's feet. One build at a time keeps every random model a function of its seed;
# the same lock keeps loader workers from forking mid-seed (features.forkguard).


def _random_model(model_name: str, quick_gelu: bool, seed: int, **kw: Any):
    import open_clip

    with SEED_OR_FORK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu, device="cpu", **kw)


def _load_file(model_name: str, path: Path, quick_gelu: bool, allow_torchscript: bool, **kw: Any):
    """Build ``model_name`` from a local weights file; returns (model, loader name)."""
    import open_clip

    if path.suffix != ".safetensors" and is_torchscript_archive(path):
        official = _openai_sha256(model_name)
        if not (allow_torchscript or (official and file_sha256(path) == official)):
            raise ValueError(
                f"{path} is a TorchScript archive and its sha256 is not OpenAI's published checksum for {model_name}; "
                "it cannot be read with weights_only=True. Convert it to .safetensors, or pass allow_torchscript=True "
                "if you trust the file (it is then read by open_clip.load_openai_model / torch.jit.load).")
        if kw:
            raise ValueError(f"options {sorted(kw)} are not supported for TorchScript checkpoints")
        with SEED_OR_FORK:  # building draws from torch's default generator: never while a loader forks
            model = open_clip.load_openai_model(str(path), precision="fp32", device="cpu")
        return model, "open_clip.load_openai_model"
    with SEED_OR_FORK:  # the model is initialised randomly before the weights are loaded (see _random_model)
        model = open_clip.create_model(model_name, pretrained=str(path), require_pretrained=True, weights_only=True,
                                       force_quick_gelu=quick_gelu, device="cpu", **kw)
    return model, "open_clip.create_model"


def load_clip(
    model_name: str,
    pretrained: str | os.PathLike[str] | None = None,
    *,
    weights: str = "official",
    quick_gelu: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    allow_torchscript: bool = False,
    device: str | torch.device = "cpu",
    **model_kwargs: Any,
) -> tuple[torch.nn.Module, WeightsIdentity]:
    """Build an open_clip model (eval mode, no grad) and its :class:`WeightsIdentity`; see the module docstring.

    Raises FileNotFoundError for a ``pretrained`` path that does not exist, ValueError for a tag open_clip does not
    know for ``model_name`` (or ``pretrained`` with ``weights="random"``), and
    :class:`vlpet.hub.WeightsUnavailableError` when official or tagged weights cannot be obtained.
    """

    version = open_clip_version()
    if check_weights(weights) == "random":
        _no_pretrained_with_random(pretrained)
        model, identity = _load_random(model_name, bool(quick_gelu), seed, version, **model_kwargs)
    else:
        value = OFFICIAL_TAG if pretrained is None else os.fspath(pretrained)
        model, identity = _load_pretrained(model_name, value, quick_gelu, cache_dir, allow_torchscript, version,
                                           **model_kwargs)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model, identity


def _load_random(model_name: str, quick_gelu: bool, seed: int, version: str,
                 **model_kwargs: Any) -> tuple[torch.nn.Module, WeightsIdentity]:
    """A random-init model, announced loudly (a warning and a log line): its features mean nothing."""
    message = (f"RANDOM WEIGHTS (--weights random): building {model_name} with random initialisation (seed "
               f"{seed}). Features from it are meaningless for training and will not match the paper's.")
    warnings.warn(message, RandomWeightsWarning, stacklevel=3)
    log.warning(message)
    model = _random_model(model_name, quick_gelu, seed, **model_kwargs)
    return model, WeightsIdentity(model_name, RANDOM_INIT, None, True, version, quick_gelu, seed=seed)


def _load_pretrained(model_name: str, value: str, quick_gelu: bool | None, cache_dir: str | os.PathLike[str] | None,
                     allow_torchscript: bool, version: str,
                     **model_kwargs: Any) -> tuple[torch.nn.Module, WeightsIdentity]:
    """A model from an open_clip pretrained tag (downloaded through the hub cache) or a local weights file."""
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(model_name, value) if not Path(value).is_file() else {}
    if tag_cfg:
        qg = bool(tag_cfg.get("quick_gelu", False)) if quick_gelu is None else quick_gelu
        file, hub = resolve_tag(model_name, value, cache_dir)
        model, loader = _load_file(model_name, file, qg, allow_torchscript=False, **model_kwargs)
        qg = qg or loader == "open_clip.load_openai_model"
        return model, WeightsIdentity(
            model_name, value, file_sha256(file), False, version, qg, tag=value, file=str(file), loader=loader,
            hub_repo=hub.repo_id if hub else None, hub_file=hub.filename if hub else None,
            hub_revision=hub.revision if hub else None)
    if not _looks_like_path(value):
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f"{value!r} is neither a file nor a pretrained tag of {model_name} (known tags: {known})")
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (or is not a file)")
    model, loader = _load_file(model_name, path, bool(quick_gelu), allow_torchscript, **model_kwargs)
    qg = bool(quick_gelu) or loader == "open_clip.load_openai_model"
    resolved = str(path.resolve())
    return model, WeightsIdentity(model_name, resolved, file_sha256(path), False, version, qg, file=resolved,
                                  loader=loader)
