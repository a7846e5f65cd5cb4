"""``generate``: write every synthetic source under one directory, in the mirror layout.

The layout is ``<out>/<source>/<upstream file name>`` (plus the media folders ``nlvr2/images/``,
``tvqa/videos/``, ``how2qa/videos/``, ``yc2c/videos/`` where upstream hands media out by form or
YouTube), which is what ``pipelines.sources.resolve_url`` expects from a mirror, so the downloader can
be pointed at a loopback server over this directory. ``manifest.json`` lists every file with size and
SHA-256 and the counts per source and split; ``scenes.json`` is the ground truth (what was drawn):
``coco`` / ``nlvr2``: image id -> scene (shapes with kind, colour, slot, centre, radius); ``gqa``:
``images`` and ``questions``; ``vqa``: question id -> family and true answer; ``tvqa`` / ``how2qa`` /
``yc2c``: vid_name -> clip (fps, frames, each shape's direction and start/end centre) and split;
``tvqa_answers`` / ``how2qa_answers``: qid -> answer index (also for the unlabelled test files).
Same seed and scale -> byte-identical files; nothing reads the clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pipelines.synth import coco, gqa, how2qa, nlvr2, tv, vqa, yc2c
from pipelines.synth.config import get_scale
from pipelines.synth.manifest import MANIFEST_NAME, Report, SynthManifest
from pipelines.synth.writers import OutputTree

GROUND_TRUTH = "scenes.json"
SOURCES: tuple[str, ...] = ("coco", "vqa", "gqa", "nlvr2", "tvqa", "tvc", "how2qa", "yc2c")


def _remove_previous(out: Path) -> None:
    """Delete the files a previous ``generate`` listed in ``out/manifest.json`` (and folders left empty).

    Only files named by a synth manifest are touched, never whole folders, so pointing ``--out`` at a
    directory that also holds real data cannot delete it; a re-run with another seed or scale then leaves
    no stale files behind (e.g. videos whose names depend on the seed).
    """
    path = out / MANIFEST_NAME
    if not path.is_file():
        return
    try:
        previous = SynthManifest.load(path)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        return  # not ours: leave everything alone
    folders = set()
    for entry in previous.files:
        target = out / entry.path
        if target.is_file():
            target.unlink()
        folders.update(target.parents)
    path.unlink()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder != out and out in folder.parents and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def generate(out_dir: Path, scale: Literal["tiny", "demo"] = "tiny", seed: int = 0) -> SynthManifest:
    """Write all sources under ``out_dir`` and return (and save) the manifest.

    Files of an earlier synth run in the same directory are removed first (see ``_remove_previous``).
    """
    cfg = get_scale(scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)
    tree = OutputTree(out)
    truth: dict = {"scale": cfg.name, "seed": seed}
    reports: dict[str, Report] = {}

    images = coco.make_images(cfg, seed)
    reports["coco"] = coco.write(tree, images, seed, truth)
    reports["vqa"] = vqa.write(tree, images, cfg.vqa_questions_per_image, seed, truth)
    reports["gqa"] = gqa.write(tree, cfg, seed, truth)
    reports["nlvr2"] = nlvr2.write(tree, cfg, seed, truth)
    reports.update(tv.write(tree, cfg, seed, truth))
    reports["how2qa"] = how2qa.write(tree, cfg, seed, truth)
    reports["yc2c"] = yc2c.write(tree, cfg, seed, truth)

    tree.write_json(GROUND_TRUTH, truth, "ground_truth", indent=None)
    manifest = SynthManifest(scale=cfg.name, seed=seed, files=list(tree.entries.values()),
                             counts={s: reports[s][0] for s in SOURCES},
                             extras={s: reports[s][1] for s in SOURCES if reports[s][1]},
                             ground_truth=GROUND_TRUTH)
    manifest.save(out)
    return manifest
