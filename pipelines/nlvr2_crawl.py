"""NLVR2 images by URL crawl, checked against the published average hashes (the automatable route).

The images are not redistributable; the NLVR2 repository ships ``left_url``/``right_url`` per example and
``util/hashes/<split>_hashes.json`` (image file name → 64-bit average hash). Upstream's crawler uses a
2 s timeout and keeps an image only when its hash matches; about 5% of URLs are dead. We do the same
with the verified downloader (``.part`` + atomic rename), in parallel, and report every failure: dead
URL, not an image, or hash mismatch (the file is then removed, never kept unverified). Images land in
``<root>/raw/nlvr2/images/<split>/<split>-<set>-<pair>-img<0|1>.png``, where ``prepare`` looks for them.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from pipelines.download import DownloadError, download
from pipelines.fetch import raw_dir
from pipelines.prepare import find_file
from pipelines.synth.ahash import average_hash, hamming
from pipelines.tables import parse_nlvr2


@dataclass
class CrawlReport:
    split: str
    wanted: int = 0
    present: int = 0  # already there and verified
    fetched: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # file name -> reason

    @property
    def coverage(self) -> float:
        return (self.present + self.fetched) / self.wanted if self.wanted else 1.0


def _verify(path: Path, expected: str | None, max_distance: int) -> str | None:
    """None when the image decodes and its average hash is within ``max_distance`` bits, else a reason."""
    try:
        with Image.open(path) as im:
            got = average_hash(im)
    except (UnidentifiedImageError, OSError) as e:
        return f"not a readable image ({e})"
    if expected is None:
        return "no published hash for this file"
    if hamming(got, expected) > max_distance:
        return f"average hash {got} != published {expected}"
    return None


def crawl_nlvr2_images(root: Path, split: str, *, concurrency: int = 8, timeout: float = 2.0, retries: int = 1,
                       max_distance: int = 0) -> CrawlReport:
    """Fetch the images of one split (``train``, ``dev``, ``test1``) that are not already there."""
    raw = raw_dir(root, "nlvr2")
    table, _ = parse_nlvr2(find_file(raw, f"{split}.json", "nlvr2"), split=split)
    hashes = json.loads(find_file(raw, f"{split}_hashes.json", "nlvr2").read_text())
    out = raw / "images" / split
    out.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, str] = {}
    for img0, img1, left, right in zip(table.column("img0").to_pylist(), table.column("img1").to_pylist(),
                                       table.column("left_url").to_pylist(), table.column("right_url").to_pylist(),
                                       strict=True):
        for image_id, url in ((img0, left), (img1, right)):
            if url:
                jobs.setdefault(f"{image_id}.png", url)
    report = CrawlReport(split=split, wanted=len(jobs))

    def one(name: str, url: str, client: httpx.Client) -> tuple[str, str | None, bool]:
        dest = out / name
        if dest.is_file() and _verify(dest, hashes.get(name), max_distance) is None:
            return name, None, False
        try:
            download(url, dest, client=client, timeout=timeout, retries=retries, backoff=0.2, progress=False)
        except DownloadError as e:
            return name, f"download failed: {e}", True
        problem = _verify(dest, hashes.get(name), max_distance)
        if problem:
            dest.unlink(missing_ok=True)
        return name, problem, True

    with httpx.Client(follow_redirects=True, timeout=timeout) as client, ThreadPoolExecutor(concurrency) as pool:
        for name, problem, fetched in pool.map(lambda kv: one(kv[0], kv[1], client), sorted(jobs.items())):
            if problem:
                report.failed[name] = problem
            elif fetched:
                report.fetched += 1
            else:
                report.present += 1
    return report
