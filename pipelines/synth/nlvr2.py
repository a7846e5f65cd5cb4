"""NLVR2 annotations (JSON lines), image pairs and average-hash files.

Layout (lil-lab/nlvr + the image release): ``nlvr2/{train,dev,test1}.json`` (one JSON object per line,
raw schema), ``nlvr2/{train,dev,test1}_hashes.json`` (image file name -> average hash),
``nlvr2/images/train/<directory>/train-<set>-<pair>-img{0,1}.png`` (train nested in numbered folders,
as ``directory`` in the train records says) and ``nlvr2/images/{dev,test1}/<split>-<set>-<pair>-img{0,1}.png``.
As upstream, a *set* is 4 image pairs and some sentences (upstream 2, here ``nlvr2_sentences_per_set``),
every sentence labelled on every pair (identifier ``split-set-pair-sentence``); sentences are chosen so
each one is true on about half of the pairs, which keeps labels balanced.
"""

from __future__ import annotations

import random

from pipelines.synth import language
from pipelines.synth.ahash import average_hash
from pipelines.synth.config import ScaleConfig
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream, unique_ints
from pipelines.synth.scenes import png_bytes, random_scene, render_scene
from pipelines.synth.writers import OutputTree

SOURCE = "nlvr2"
SPLITS = ("train", "dev", "test1")
SYNSET = "geometric shape"


def _workers(rng: random.Random, label: str, n: int, agree: float = 0.92) -> dict[str, str]:
    out: dict[str, str] = {}
    for worker in unique_ints(rng, n, 0, 170):
        flip = rng.random() > agree
        out[str(worker)] = ("False" if label == "True" else "True") if flip else label
    return out


def write(tree: OutputTree, cfg: ScaleConfig, seed: int, truth: dict) -> Report:
    rng = stream(seed, SOURCE)
    w, h = cfg.image_size
    counts: dict[str, dict[str, int]] = {}
    truth_imgs: dict[str, dict] = {}
    for split in SPLITS:
        records: list[dict] = []
        hashes: dict[str, str] = {}
        n_images = 0
        for set_id in unique_ints(rng, cfg.nlvr2_sets[split], 0, 12_000 if split == "train" else 1_100):
            directory = rng.randrange(100) if split == "train" else None
            folder = f"{SOURCE}/images/{split}" + (f"/{directory}" if directory is not None else "")
            pairs = [(random_scene(rng, w, h), random_scene(rng, w, h)) for _ in range(4)]
            urls = []
            for pair_id, pair in enumerate(pairs):
                names = []
                for side, scene in enumerate(pair):
                    stem = f"{split}-{set_id}-{pair_id}-img{side}"
                    img = render_scene(scene)
                    tree.write_bytes(f"{folder}/{stem}.png", png_bytes(img), SOURCE)
                    hashes[f"{stem}.png"] = average_hash(img)
                    truth_imgs[stem] = scene.to_dict()
                    names.append(f"https://nlvr2-images.synthetic.invalid/{split}/{stem}.png")
                    n_images += 1
                urls.append(names)
            query = f"colored shapes{rng.randrange(60)}"
            for sent_id, (text, labels) in enumerate(language.pick_statements(pairs, rng, cfg.nlvr2_sentences_per_set)):
                writer = str(rng.randrange(170))
                order = list(range(4))
                rng.shuffle(order)
                for pair_id in order:
                    label = "True" if labels[pair_id] else "False"
                    rec = {"validation": _workers(rng, label, 1, agree=0.97), "sentence": text,
                           "left_url": urls[pair_id][0], "writer": writer, "label": label,
                           "right_url": urls[pair_id][1], "synset": SYNSET, "query": query,
                           "identifier": f"{split}-{set_id}-{pair_id}-{sent_id}"}
                    if split == "train":
                        rec["directory"] = directory
                    else:
                        rec["extra_validations"] = _workers(rng, label, 4)
                    records.append(rec)
        tree.write_jsonl(f"{SOURCE}/{split}.json", records, SOURCE)
        tree.write_json(f"{SOURCE}/{split}_hashes.json", dict(sorted(hashes.items())), SOURCE)
        n_true = sum(r["label"] == "True" for r in records)
        counts[split] = {"records": len(records), "images": n_images, "true_labels": n_true}
    truth[SOURCE] = truth_imgs
    return counts, {}
