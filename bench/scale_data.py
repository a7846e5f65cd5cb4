"""Upstream-format annotation files at a chosen fraction of the real dataset sizes, without any media.

``bench/scale.py`` measures the data stages at 1 %, 10 % and 100 % of the real row counts; the synth
generator (``pipelines.synth``) draws every image and video, which is right for the demo and far too slow
at full size. This writes only what ``vlpet prepare`` parses, in the raw-store layout it reads
(``<root>/raw/<source>/<upstream file name>``, already unpacked), with the upstream field sets, so the
parsers do the same work per record as on the real files. Texts are short template strings; ids follow
the upstream conventions (``COCO_train2014_<12 digits>``, VG numbers / ``n<digits>``, NLVR2
``split-set-pair-sentence``, TV ``<show>_sXXeYY_segNN_clip_NN``). The media ids every dataset references
are listed in ``<root>/media_ids/{images,videos}.txt`` so the benchmark can build feature stores over them.

Every JSON document is written record by record (the generator's memory stays flat at any size). Same
fraction and seed -> the same files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

# The real sizes (docs/data.md); every count below is scaled by the fraction and rounded, at least 1.
REAL = {
    "coco_train2014_images": 82_783, "coco_restval_images": 30_504, "coco_val_images": 5_000,
    "coco_test_images": 5_000,
    "vqa_train2014_questions": 443_757, "vqa_val2014_questions": 214_354,
    "gqa_train_questions": 943_000, "gqa_train_images": 72_140, "gqa_val_questions": 132_062,
    "gqa_val_images": 10_234, "gqa_testdev_questions": 12_578, "gqa_testdev_images": 398,
    "nlvr2_train": 86_373, "nlvr2_dev": 6_982, "nlvr2_test1": 6_967,
    "tv_clips": 21_793, "tvqa_train": 122_039, "tvqa_val": 15_253, "tvqa_test_public": 7_623,
    "tvc_train_release": 86_603, "tvc_val_release": 10_895, "tvc_test_release": 15_253,
    "how2_clips": 9_035, "how2qa_train_release": 34_187, "how2qa_val_release": 3_115,
    "how2qa_test_public_release": 3_095,
    "yc2c_train_release": 10_337, "yc2c_val_release": 3_492, "yc2c_test_release": 1_604,
}
MARKER = "GENERATED.json"
WORDS = ("red", "blue", "small", "large", "man", "woman", "dog", "cat", "table", "street", "car", "tree",
         "holding", "sitting", "next", "to", "the", "a", "on", "in", "with", "near", "white", "black", "two")
ANSWERS = ("yes", "no", "2", "1", "3", "white", "red", "blue", "black", "dog", "cat", "tennis", "frisbee",
           "left", "right", "wood", "metal", "table", "man", "woman", "kitchen", "none", "4", "green")
VQA_VOCAB_SIZE = 3_129
SHOWS = {"The Big Bang Theory": "", "Castle": "castle_", "Friends": "friends_", "Grey's Anatomy": "grey_",
         "House M.D.": "house_", "How I Met You Mother": "met_"}


def scaled(name: str, fraction: float) -> int:
    return max(1, round(REAL[name] * fraction))


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


class _JsonList:
    """Writes ``[r0, r1, ...]`` (or ``{"k": r, ...}``) one element at a time, as ``json.dump`` would."""

    def __init__(self, handle: IO[str], keyed: bool = False) -> None:
        self.handle, self.keyed, self.first = handle, keyed, True

    def add(self, value: Any, key: str | None = None) -> None:
        self.handle.write("" if self.first else ", ")
        self.first = False
        if self.keyed:
            self.handle.write(json.dumps(key) + ": ")
        self.handle.write(json.dumps(value))


@contextmanager
def _document(path: Path, head: str, tail: str, keyed: bool = False) -> Iterator[_JsonList]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(head)
        yield _JsonList(handle, keyed)
        handle.write(tail)


def _jsonl(path: Path, records: Iterator[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
            n += 1
    return n


def _spread(total: int, bins: int) -> Iterator[tuple[int, int]]:
    """(bin, count) with ``total`` items spread as evenly as possible over ``bins``."""
    base, extra = divmod(total, bins)
    for b in range(bins):
        yield b, base + (b < extra)


# ------------------------------------------------------------------------------------------ image datasets


def _coco_and_vqa(raw: Path, fraction: float, rng: random.Random, images: IO[str]) -> dict[str, int]:
    n_train = scaled("coco_train2014_images", fraction)
    val_parts = [("restval", scaled("coco_restval_images", fraction)), ("val", scaled("coco_val_images", fraction)),
                 ("test", scaled("coco_test_images", fraction))]
    coco: list[tuple[str, int, str]] = [("train2014", 100_000 + i, "train") for i in range(n_train)]
    i = 0
    for split, n in val_parts:
        coco += [("val2014", 700_000 + i + k, split) for k in range(n)]
        i += n
    sentid = 0
    with _document(raw / "coco" / "dataset_coco.json", '{"images": [', '], "dataset": "coco"}') as out:
        for imgid, (subset, cocoid, split) in enumerate(coco):
            filename = f"COCO_{subset}_{cocoid:012d}.jpg"
            images.write(filename[:-4] + "\n")
            sentences = []
            for _ in range(5):
                raw_text = _sentence(rng, 9) + "."
                sentences.append({"tokens": raw_text[:-1].split(), "raw": raw_text, "imgid": imgid, "sentid": sentid})
                sentid += 1
            out.add({"filepath": subset, "sentids": [s["sentid"] for s in sentences], "filename": filename,
                     "imgid": imgid, "split": split, "sentences": sentences, "cocoid": cocoid})
    counts = {"coco_images": len(coco), "coco_captions": sentid}
    vocab = list(ANSWERS) + [f"answer {k}" for k in range(VQA_VOCAB_SIZE - 1 - len(ANSWERS))]
    (raw / "vqa").mkdir(parents=True, exist_ok=True)
    (raw / "vqa" / "trainval_ans2label.json").write_text(json.dumps({a: k for k, a in enumerate(["", *vocab])}))
    for subset in ("train2014", "val2014"):
        imgs = [c for c in coco if c[0] == subset]
        n_q = scaled(f"vqa_{subset}_questions", fraction)
        head = (f'{{"info": {{"description": "scale benchmark"}}, "task_type": "Open-Ended", "data_type": "mscoco", '
                f'"license": {{}}, "data_subtype": "{subset}", "questions": [')
        ann_head = f'{{"info": {{}}, "license": {{}}, "data_subtype": "{subset}", "annotations": ['
        with _document(raw / "vqa" / f"v2_OpenEnded_mscoco_{subset}_questions.json", head, "]}") as qs, \
                _document(raw / "vqa" / f"v2_mscoco_{subset}_annotations.json", ann_head,
                          '], "data_type": "mscoco"}') as anns:
            for b, count in _spread(n_q, len(imgs)):
                image_id = imgs[b][1]
                for k in range(count):
                    qid = image_id * 1000 + k
                    qs.add({"image_id": image_id, "question": _sentence(rng, 7) + "?", "question_id": qid})
                    picks = rng.choices(ANSWERS[:6], k=2) + rng.choices(vocab, k=1)
                    answers = [{"answer": rng.choice(picks), "answer_confidence": "yes", "answer_id": j + 1}
                               for j in range(10)]
                    anns.add({"question_type": "what is", "multiple_choice_answer": answers[0]["answer"],
                              "answers": answers, "image_id": image_id, "answer_type": "other", "question_id": qid})
        counts[f"vqa_{subset}"] = n_q
    return counts


def _gqa_record(rng: random.Random, image_id: str, qid: str) -> dict[str, Any]:
    obj = str(rng.randrange(100_000, 4_000_000))
    ops = [{"operation": "select", "dependencies": [], "argument": f"shape ({obj})"},
           {"operation": "query", "dependencies": [0], "argument": "color"}]
    answer = rng.choice(ANSWERS)
    return {"semantic": ops, "entailed": [], "equivalent": [qid], "question": _sentence(rng, 8) + "?",
            "imageId": image_id, "isBalanced": True, "groups": {"global": None, "local": "10q-shape_color"},
            "answer": answer, "semanticStr": f"select: shape ({obj})->query: color [0]",
            "annotations": {"answer": {"0": obj}, "question": {"3": obj}, "fullAnswer": {"1": obj}},
            "types": {"detailed": "objColor", "semantic": "attr", "structural": "query"},
            "fullAnswer": f"The shape is {answer}."}


def _gqa(raw: Path, fraction: float, rng: random.Random, images: IO[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    qid = 0
    for split, stem, start in (("train", "train", 1), ("val", "val", 2_000_000), ("testdev", "testdev", 0)):
        n_img = scaled(f"gqa_{split}_images", fraction)
        ids = [f"n{100_000 + k}" if split == "testdev" else str(start + k) for k in range(n_img)]
        images.write("".join(f"{i}\n" for i in ids))
        with _document(raw / "gqa" / f"{stem}_balanced_questions.json", "{", "}", keyed=True) as out:
            for b, count in _spread(scaled(f"gqa_{split}_questions", fraction), n_img):
                for _ in range(count):
                    key = f"{qid:08d}"
                    out.add(_gqa_record(rng, ids[b], key), key)
                    qid += 1
        counts[f"gqa_{split}"] = scaled(f"gqa_{split}_questions", fraction)
    return counts


def _nlvr2(raw: Path, fraction: float, rng: random.Random, images: IO[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for split in ("train", "dev", "test1"):
        n = scaled(f"nlvr2_{split}", fraction)

        def records(split: str = split, n: int = n) -> Iterator[dict[str, Any]]:
            for i in range(n):
                set_id, pair, sent = i // 8, (i // 2) % 4, i % 2
                stem = f"{split}-{set_id}-{pair}"
                if sent == 0:
                    images.write(f"{stem}-img0\n{stem}-img1\n")
                rec = {"validation": {"1": "True"}, "sentence": _sentence(rng, 12) + ".",
                       "left_url": f"https://example.invalid/{stem}-img0.png", "writer": str(rng.randrange(170)),
                       "label": rng.choice(("True", "False")),
                       "right_url": f"https://example.invalid/{stem}-img1.png", "synset": "dog",
                       "query": "dogs 1", "identifier": f"{stem}-{sent}"}
                if split == "train":
                    rec["directory"] = set_id % 100
                else:
                    rec["extra_validations"] = {"2": "True", "3": "True"}
                yield rec

        counts[f"nlvr2_{split}"] = _jsonl(raw / "nlvr2" / f"{split}.json", records())
    return counts


# ------------------------------------------------------------------------------------------ video datasets


def _subtitles(rng: random.Random, lines: int) -> list[dict[str, Any]]:
    return [{"text": f" Speaker : {_sentence(rng, 8)}", "start": round(2.0 * k, 3), "end": round(2.0 * k + 1.5, 3)}
            for k in range(lines)]


def _tv_names(n: int) -> list[tuple[str, str]]:
    shows = list(SHOWS)
    out = []
    for k in range(n):
        show = shows[k % len(shows)]
        out.append((f"{SHOWS[show]}s{k // 5000 + 1:02d}e{k // 100 % 50 + 1:02d}_seg{k // 50 % 2 + 1:02d}"
                    f"_clip_{k % 50:02d}", show))
    return out


def _choices(rng: random.Random, n: int) -> dict[str, str]:
    return {f"a{k}": _sentence(rng, 6) + "." for k in range(n)}


def _video(raw: Path, fraction: float, rng: random.Random, videos: IO[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    tv = _tv_names(scaled("tv_clips", fraction))
    videos.write("".join(f"{name}\n" for name, _ in tv))
    counts["tv_subtitles"] = _jsonl(raw / "tvqa" / "tv_subtitles.jsonl",
                                    ({"vid_name": name, "sub": _subtitles(rng, 30)} for name, _ in tv))
    qid = 0
    for split in ("train", "val", "test_public"):
        def qa(split: str = split) -> Iterator[dict[str, Any]]:
            nonlocal qid
            for b, count in _spread(scaled(f"tvqa_{split}", fraction), len(tv)):
                for _ in range(count):
                    rec = {"qid": qid, "q": _sentence(rng, 8) + "?", **_choices(rng, 5)}
                    if split != "test_public":
                        rec["answer_idx"] = rng.randrange(5)
                    rec.update({"ts": "20.16-25.12", "vid_name": tv[b][0], "show_name": tv[b][1]})
                    qid += 1
                    yield rec

        counts[f"tvqa_{split}"] = _jsonl(raw / "tvqa" / f"tvqa_{split}.jsonl", qa())
    clip_id = desc_id = 0
    for split, n_descs in (("train_release", 2), ("val_release", 4), ("test_release", 0)):
        def tvc(split: str = split, n_descs: int = n_descs) -> Iterator[dict[str, Any]]:
            nonlocal clip_id, desc_id
            for b, count in _spread(scaled(f"tvc_{split}", fraction), len(tv)):
                for _ in range(count):
                    rec: dict[str, Any] = {"vid_name": tv[b][0], "duration": 90.0, "ts": [35.73, 40.9],
                                           "clip_id": clip_id}
                    clip_id += 1
                    if n_descs:
                        rec["descs"] = [{"desc": _sentence(rng, 10), "type": "v", "from_retrieval": False,
                                         "desc_id": desc_id + k} for k in range(n_descs)]
                        desc_id += n_descs
                    yield rec

        counts[f"tvc_{split}"] = _jsonl(raw / "tvc" / f"tvc_{split}.jsonl", tvc())
    how2 = [str(20_000 + k) for k in range(scaled("how2_clips", fraction))]
    videos.write("".join(f"yt{name}_0_60\n" for name in how2))
    (raw / "how2qa").mkdir(parents=True, exist_ok=True)
    (raw / "how2qa" / "how2_vid_mapping.json").write_text(json.dumps({name: f"yt{name}_0_60" for name in how2}))
    counts["how2_subtitles"] = _jsonl(raw / "how2qa" / "how2_subtitles.jsonl",
                                      ({"vid_name": name, "sub": _subtitles(rng, 20)} for name in how2))
    for split in ("train_release", "val_release", "test_public_release"):
        def h2(split: str = split) -> Iterator[dict[str, Any]]:
            nonlocal qid
            for b, count in _spread(scaled(f"how2qa_{split}", fraction), len(how2)):
                for _ in range(count):
                    rec = {"vid_name": how2[b], "ts": "36.58-58.52", "qid": qid, "q": _sentence(rng, 8) + "?",
                           **_choices(rng, 4), "answer_idx": rng.randrange(4)}
                    qid += 1
                    yield rec

        counts[f"how2qa_{split}"] = _jsonl(raw / "how2qa" / f"how2qa_{split}.jsonl", h2())
    yc2: list[str] = []
    for split in ("train_release", "val_release", "test_release"):
        n = scaled(f"yc2c_{split}", fraction)
        names = [f"yc{split[:2]}{k:07d}_{k % 10}" for k in range(n)]
        yc2 += names

        def yc(split: str = split, names: list[str] = names) -> Iterator[dict[str, Any]]:
            nonlocal clip_id, desc_id
            for name in names:
                rec: dict[str, Any] = {"vid_name": name, "clip_id": clip_id, "duration": 7}
                clip_id += 1
                if split != "test_release":
                    rec["descs"] = [{"desc": _sentence(rng, 6), "desc_id": desc_id}]
                    desc_id += 1
                yield rec

        counts[f"yc2c_{split}"] = _jsonl(raw / "yc2c" / f"yc2c_{split}.jsonl", yc())
    videos.write("".join(f"{name}\n" for name in yc2))
    counts["yc2_subtitles"] = _jsonl(raw / "yc2c" / "yc2_subtitles.jsonl",
                                     ({"vid_name": name, "sub": _subtitles(rng, 4)} for name in yc2))
    return counts


def generate(root: Path, fraction: float, seed: int = 0) -> dict[str, Any]:
    """Write every dataset's annotation files under ``root`` (reused when already there for this fraction)."""
    root = Path(root)
    marker = root / MARKER
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("fraction") == fraction and done.get("seed") == seed:
            return done
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    raw = root / "raw"
    media = root / "media_ids"
    media.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    with (media / "images.txt").open("w") as images:
        counts.update(_coco_and_vqa(raw, fraction, rng, images))
        counts.update(_gqa(raw, fraction, rng, images))
        counts.update(_nlvr2(raw, fraction, rng, images))
    with (media / "videos.txt").open("w") as videos:
        counts.update(_video(raw, fraction, rng, videos))
    done = {"fraction": fraction, "seed": seed, "counts": counts,
            "json_bytes": sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())}
    marker.write_text(json.dumps(done, indent=2))
    return done
