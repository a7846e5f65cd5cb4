"""COCO 2014 images, official caption annotations and the Karpathy split file.

Layout (as served by cocodataset.org and Karpathy's page): ``coco/train2014.zip`` and
``coco/val2014.zip`` hold ``<split>/COCO_<split>_<12-digit id>.jpg``; ``annotations_trainval2014.zip``
holds ``annotations/captions_{train,val}2014.json``; ``caption_datasets.zip`` holds ``dataset_coco.json``.
As upstream, Karpathy "train" is all of train2014 and restval/val/test are carved out of val2014.
The same ``CocoImage`` list feeds the VQA generator, whose questions are about these images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipelines.synth import language
from pipelines.synth.config import ScaleConfig
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream, unique_ints
from pipelines.synth.scenes import Scene, jpeg_bytes, random_scene, render_scene
from pipelines.synth.writers import OutputTree, json_bytes

SOURCE = "coco"
INFO = {"description": "COCO 2014 Dataset (vlpet synthetic)", "url": "http://cocodataset.org", "version": "1.0",
        "year": 2014, "contributor": "COCO Consortium", "date_created": "2017/09/01"}
LICENSES = [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"}]


@dataclass(frozen=True)
class CocoImage:
    image_id: int
    subset: str  # train2014 | val2014
    karpathy: str  # train | restval | val | test
    scene: Scene
    captions: tuple[str, ...]
    caption_ids: tuple[int, ...]

    @property
    def img_id(self) -> str:
        """The id used by VL-T5 loaders and feature files: the file name without extension."""
        return f"COCO_{self.subset}_{self.image_id:012d}"

    @property
    def file_name(self) -> str:
        return self.img_id + ".jpg"


def make_images(cfg: ScaleConfig, seed: int) -> list[CocoImage]:
    """The scenes, ids and captions (no I/O), shared by the COCO and VQA writers."""
    rng = stream(seed, SOURCE)
    w, h = cfg.image_size
    n_train, n_per = cfg.coco_train2014_images, cfg.coco_val2014_images_per_split
    ids = unique_ints(rng, n_train + 3 * n_per, 1, 581_930)
    cap_ids = unique_ints(rng, 5 * len(ids), 1, 830_000)
    out = []
    for i, image_id in enumerate(ids):
        if i < n_train:
            subset, karpathy = "train2014", "train"
        else:
            subset, karpathy = "val2014", ("restval", "val", "test")[(i - n_train) // n_per]
        scene = random_scene(rng, w, h)
        caps = tuple(language.captions(scene, rng))
        out.append(CocoImage(image_id, subset, karpathy, scene, caps, tuple(cap_ids[5 * i: 5 * i + 5])))
    return out


def _caption_file(images: list[CocoImage], subset: str, rng: random.Random) -> dict:
    imgs = sorted((im for im in images if im.subset == subset), key=lambda im: im.image_id)
    return {
        "info": INFO,
        "images": [{"license": 4, "file_name": im.file_name,
                    "coco_url": f"http://images.cocodataset.org/{subset}/{im.file_name}",
                    "height": im.scene.height, "width": im.scene.width,
                    "date_captured": f"2013-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                                     f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                    "flickr_url": f"http://farm{rng.randint(1, 9)}.staticflickr.com/synthetic/{im.image_id}.jpg",
                    "id": im.image_id} for im in imgs],
        "licenses": LICENSES,
        "annotations": [{"image_id": im.image_id, "id": cid, "caption": cap}
                        for im in imgs for cap, cid in zip(im.captions, im.caption_ids, strict=True)],
    }


def _karpathy(images: list[CocoImage], rng: random.Random) -> dict:
    order = list(images)
    rng.shuffle(order)
    out, sentid = [], 0
    for imgid, im in enumerate(order):
        sentences, sentids = [], []
        for cap in im.captions:
            sentences.append({"tokens": language.tokenize(cap), "raw": cap, "imgid": imgid, "sentid": sentid})
            sentids.append(sentid)
            sentid += 1
        out.append({"filepath": im.subset, "sentids": sentids, "filename": im.file_name, "imgid": imgid,
                    "split": im.karpathy, "sentences": sentences, "cocoid": im.image_id})
    return {"images": out, "dataset": "coco"}


def write(tree: OutputTree, images: list[CocoImage], seed: int, truth: dict) -> Report:
    """Write the four COCO files; counts are per Karpathy split (train = train2014, the rest = val2014)."""
    rng = stream(seed, SOURCE + "/files")
    counts: dict[str, dict[str, int]] = {}
    extras: dict[str, int] = {}
    for subset in ("train2014", "val2014"):
        members = sorted((f"{subset}/{im.file_name}", jpeg_bytes(render_scene(im.scene)))
                          for im in images if im.subset == subset)
        tree.write_zip(f"{SOURCE}/{subset}.zip", members, SOURCE, compress=False)
        n = sum(1 for im in images if im.subset == subset)
        extras[f"{subset}_images"] = n
    tree.write_zip(f"{SOURCE}/annotations_trainval2014.zip",
                   [(f"annotations/captions_{s}.json", json_bytes(_caption_file(images, s, rng)))
                    for s in ("train2014", "val2014")], SOURCE)
    tree.write_zip(f"{SOURCE}/caption_datasets.zip", [("dataset_coco.json", json_bytes(_karpathy(images, rng)))],
                   SOURCE, dir_entries=False)
    for split in ("train", "restval", "val", "test"):
        n = sum(1 for im in images if im.karpathy == split)
        counts[split] = {"images": n, "records": 5 * n}
    truth[SOURCE] = {im.img_id: {**im.scene.to_dict(), "captions": list(im.captions)} for im in images}
    return counts, extras
