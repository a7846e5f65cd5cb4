"""Fetch one dataset into the raw store: resolve URLs, download verified, unpack safely, write a manifest.

Raw store layout (``<root>/raw/<source>/``):
- every downloaded file under its registry name;
- every archive unpacked into a sibling directory named after it without the extension
  (``train2014.zip`` → ``train2014/``), atomically and only once (``pipelines.archive``);
- ``MANIFEST.json``: per file the URL it came from, size, sha256 and which checksum vouched for it;
- manual assets (images/videos the user must supply) under the directory the registry names.

Checksums: upstream files are checked against the registry's published md5/sha256. A mirror may hold
other bytes than upstream (the synthetic mirror does), so a mirror can publish ``<mirror>/<source>/SHA256SUMS``
(``sha256  name`` lines, as ``sha256sum`` writes them); when present it is authoritative for files
fetched from that mirror, and the manifest says so (``checksum_source``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from features.media import hash_file
from pipelines.archive import safe_extract
from pipelines.download import DownloadError, DownloadItem, download, download_many
from pipelines.sources import Source, SourceFile, get_source, resolve_url
from vlpet.atomic import write_json_atomic

log = logging.getLogger(__name__)
MANIFEST = "MANIFEST.json"
CHECKSUMS = "SHA256SUMS"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar")


@dataclass
class ManualStatus:
    name: str
    how_to_get: str
    directory: str
    pattern: str
    present: int


@dataclass
class FetchReport:
    source: str
    raw_dir: str
    files: list[dict[str, object]] = field(default_factory=list)
    unpacked: list[str] = field(default_factory=list)
    manual: list[ManualStatus] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def raw_dir(root: Path, source: str) -> Path:
    return Path(root) / "raw" / source


def unpack_dir(path: Path) -> Path:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    raise ValueError(f"{path} is not an archive this project unpacks ({', '.join(ARCHIVE_SUFFIXES)})")


def parse_sha256sums(text: str, origin: str) -> dict[str, str]:
    """``sha256sum`` output (``<64 hex>  <name>``, optional ``*`` before binary names) → name → digest."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64 or any(c not in "0123456789abcdef" for c in parts[0].lower()):
            raise ValueError(f"{origin}: line {lineno} is not '<sha256>  <file name>': {line!r}")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def _mirror_checksums(source: Source, mirror: str, workdir: Path) -> dict[str, str] | None:
    url = f"{mirror.rstrip('/')}/{source.name}/{CHECKSUMS}"
    if url.startswith("file://") and not Path(url.removeprefix("file://")).is_file():
        return None
    dest = workdir / CHECKSUMS
    try:
        download(url, dest, progress=False, retries=2, backoff=0.2)
    except DownloadError as e:
        if e.status == 404:
            return None
        raise
    return parse_sha256sums(dest.read_text(), url)


def write_sha256sums(directory: Path) -> Path:
    """Publish ``SHA256SUMS`` for the files of one source directory of a mirror (e.g. synthetic data)."""
    lines = [f"{hash_file(p)}  {p.name}" for p in sorted(directory.iterdir()) if p.is_file() and p.name != CHECKSUMS]
    out = directory / CHECKSUMS
    out.write_text("\n".join(lines) + "\n")
    return out


def _files(source: Source, include_optional: bool) -> list[SourceFile]:
    return [f for f in source.files if include_optional or not f.optional]


def _same_file(src: Path, dst: Path) -> bool:
    """``dst`` already holds ``src``'s bytes: a hard link to it, or a copy with its size and mtime (copy2 keeps
    the mtime). Size alone is not enough: a regenerated image can keep its size and change its pixels."""
    if not dst.is_file():
        return False
    a, b = src.stat(), dst.stat()
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) or (a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns)


def import_manual_assets(source: Source, media_from: Path, out: Path) -> tuple[int, int]:
    """Make the raw store's copy of user-supplied media (laid out as the registry says, e.g. ``videos/*.mp4``)
    equal to ``media_from``; returns (files copied, stale files removed).

    New or changed files are copied (os.link when possible); files matching the asset's pattern that are no
    longer in ``media_from`` are removed from the raw store, since a stale copy would stay in the media index
    (a renamed NLVR2 image would then exist twice, in two ``directory`` folders). Nothing outside the asset's
    folder and pattern is touched, and an asset whose source folder is missing is left as it is."""
    copied = removed = 0
    for asset in source.manual:
        src_dir, dst_dir = Path(media_from) / asset.put_under, out / asset.put_under
        if not src_dir.is_dir():
            continue
        wanted: set[Path] = set()
        for src in sorted(p for p in src_dir.glob(asset.pattern) if p.is_file()):
            dst = dst_dir / src.relative_to(src_dir)
            wanted.add(dst)
            if _same_file(src, dst):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            copied += 1
        if dst_dir.is_dir():
            for stale in sorted(p for p in dst_dir.glob(asset.pattern) if p.is_file() and p not in wanted):
                stale.unlink()
                removed += 1
    return copied, removed


def fetch_dataset(name: str, root: Path, *, mirror: str | None = None, base_urls: dict[str, str] | None = None,
                  include_optional: bool = False, max_concurrency: int = 4, progress: bool = True,
                  client: httpx.Client | None = None, media_from: Path | None = None) -> FetchReport:
    """Download, verify and unpack every file of dataset ``name``; report the manual assets' status.

    ``media_from``: a folder holding the media that cannot be downloaded, laid out as the registry's
    manual assets say (``images/…``, ``videos/…``); they are copied into the raw store.
    Idempotent: verified files are skipped without a request, complete unpacks are not redone.
    """
    source = get_source(name)
    out = raw_dir(root, source.name)
    out.mkdir(parents=True, exist_ok=True)
    files = _files(source, include_optional)
    sums: dict[str, str] | None = None
    if mirror and not (base_urls and source.name in base_urls):
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            sums = _mirror_checksums(source, mirror, Path(tmp))
    items, provenance = [], []
    for f in files:
        url = resolve_url(source, f, mirror=mirror, base_urls=base_urls)
        if sums is not None:
            if f.name not in sums:
                raise DownloadError(f"mirror {mirror} publishes {CHECKSUMS} for {source.name} but it has no entry "
                                    f"for {f.name}; add it or remove the file from the mirror", url=url)
            checks = {"sha256": sums[f.name]}
            authority = f"mirror {CHECKSUMS}"
        else:
            checks = {k: v for k, v in (("sha256", f.sha256), ("md5", f.md5), ("size", f.size)) if v}
            authority = "registry (upstream published)" if checks else "none published"
        items.append(DownloadItem(url=url, dest=out / f.name, **checks))
        provenance.append(authority)
    results = download_many(items, max_concurrency=max_concurrency, progress=progress, client=client)
    report = FetchReport(source=source.name, raw_dir=str(out))
    for f, res, authority in zip(files, results, provenance, strict=True):
        report.files.append({"name": f.name, "url": res.url, "size": res.size, "sha256": res.sha256,
                             "kind": f.kind, "checksum_source": authority, "skipped": res.skipped})
        if f.unpack:
            target = unpack_dir(res.path)
            safe_extract(res.path, target, sha256=res.sha256)
            report.unpacked.append(str(target))
    if media_from is not None:
        import_manual_assets(source, media_from, out)
    for asset in source.manual:
        directory = out / asset.put_under
        present = sum(1 for p in directory.glob(asset.pattern) if p.is_file()) if directory.is_dir() else 0
        report.manual.append(ManualStatus(asset.name, asset.how_to_get, str(directory), asset.pattern, present))
    write_json_atomic(out / MANIFEST, {"source": source.name, "licence": source.licence, "files": report.files,
                                        "unpacked": [Path(u).name for u in report.unpacked]})
    return report
