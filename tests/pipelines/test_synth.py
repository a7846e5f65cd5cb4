"""The synthetic mini-datasets: determinism, manifest, upstream formats and content that follows from the pixels.

One tiny dataset is generated per session (seed 0); a second and a third generation check determinism.
Schema checks compare against real upstream records in ``tests/fixtures/real/``.
Answers are checked against independent oracles written here from the question text and the scene
record, and colour answers also against the decoded pixels.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pipelines.synth import SOURCES, SynthManifest, average_hash, generate
from pipelines.synth.config import SCALES
from pipelines.synth.scenes import nearest_color

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"  # upstream files, see its README.md
CFG = SCALES["tiny"]
POS = {"on the left": "left", "on the right": "right", "at the top": "top", "at the bottom": "bottom",
       "in the middle": "middle"}


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> tuple[Path, SynthManifest]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, generate(out, scale="tiny", seed=0)


@pytest.fixture(scope="session")
def root(synth) -> Path:
    return synth[0]


@pytest.fixture(scope="session")
def manifest(synth) -> SynthManifest:
    return synth[1]


@pytest.fixture(scope="session")
def truth(root) -> dict:
    return json.loads((root / "scenes.json").read_text())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def zip_json(path: Path, member: str):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(member))


def real(name: str) -> Path:
    path = REAL / name
    assert path.is_file(), f"real fixture {path} missing (tracked in the repository)"
    return path


def real_first(name: str) -> dict:
    return json.loads(real(name).read_text().splitlines()[0])


def sample(img: Image.Image, x: float, y: float) -> str:
    return nearest_color(img.convert("RGB").getpixel((round(x), round(y))))


# ---------------------------------------------------------------------------------------------- manifest
def test_manifest_lists_every_file_with_its_checksum(root, manifest):
    assert manifest.verify(root) == []
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(manifest.paths())
    assert SynthManifest.load(root).to_dict() == manifest.to_dict()
    assert set(manifest.counts) == set(SOURCES)
    assert manifest.counts["coco"]["train"]["images"] == CFG.coco_train2014_images
    assert manifest.counts["gqa"]["testdev"] == {"records": 48, "images": 12}


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path, root, manifest):
    again = generate(tmp_path / "again", scale="tiny", seed=0)
    assert {e.path: e.sha256 for e in again.files} == {e.path: e.sha256 for e in manifest.files}
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (root / "manifest.json").read_bytes()
    other = {e.path: e.sha256 for e in generate(tmp_path / "other", scale="tiny", seed=1).files}
    same = {e.path: e.sha256 for e in manifest.files}
    for path in ("coco/train2014.zip", "vqa/v2_Annotations_Train_mscoco.zip", "nlvr2/dev.json",
                 "tvqa/tvqa_qa_release.tar.gz", "yc2c/yc2c_train_release.jsonl"):
        assert other[path] != same[path], path


def test_rerun_in_the_same_directory_leaves_no_stale_files_and_keeps_foreign_ones(tmp_path):
    out = tmp_path / "re"
    generate(out, scale="tiny", seed=0)
    (out / "coco" / "mine.txt").write_text("not synthetic")
    second = generate(out, scale="tiny", seed=1)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(second.paths()) | {"manifest.json", "coco/mine.txt"}
    assert second.verify(out) == []


def test_layout_is_the_mirror_layout_of_the_source_registry(root):
    sources = pytest.importorskip("pipelines.sources")
    for name in SOURCES:
        for f in sources.SOURCES[name].files:
            if not f.optional:
                assert (root / name / f.name).is_file(), f"{name}/{f.name}"


# ---------------------------------------------------------------------------------------------- archives
def test_archives_hold_exactly_the_upstream_member_names(root, truth):
    def names(path: Path) -> set[str]:
        with zipfile.ZipFile(path) as zf:
            return set(zf.namelist())

    coco_ids = list(truth["coco"])
    for subset in ("train2014", "val2014"):
        expected = {f"{subset}/"} | {f"{subset}/{i}.jpg" for i in coco_ids if i.startswith(f"COCO_{subset}_")}
        assert names(root / f"coco/{subset}.zip") == expected
        assert all(re.fullmatch(rf"{subset}/COCO_{subset}_\d{{12}}\.jpg", n) for n in expected - {f"{subset}/"})
    assert names(root / "coco/annotations_trainval2014.zip") == {
        "annotations/", "annotations/captions_train2014.json", "annotations/captions_val2014.json"}
    assert names(root / "coco/caption_datasets.zip") == {"dataset_coco.json"}
    for tag, subset in (("Train", "train2014"), ("Val", "val2014")):
        assert names(root / f"vqa/v2_Questions_{tag}_mscoco.zip") == {f"v2_OpenEnded_mscoco_{subset}_questions.json"}
        assert names(root / f"vqa/v2_Annotations_{tag}_mscoco.zip") == {f"v2_mscoco_{subset}_annotations.json"}
    assert names(root / "gqa/questions1.2.zip") == {f"{s}_balanced_questions.json" for s in ("train", "val", "testdev")}
    assert names(root / "gqa/images.zip") == {"images/"} | {f"images/{i}.jpg" for i in truth["gqa"]["images"]}
    with tarfile.open(root / "tvqa/tvqa_qa_release.tar.gz") as tf:
        assert set(tf.getnames()) == {"tvqa_qa_release"} | {
            f"tvqa_qa_release/tvqa_{s}.jsonl" for s in ("train", "val", "test_public")}
        assert {m.mtime for m in tf.getmembers()} == {1420070400}
    with tarfile.open(root / "yc2c/youcookii_annotations_trainval.tar.gz") as tf:
        assert tf.getnames() == ["youcookii_annotations_trainval.json"]


def test_images_decode_with_the_recorded_size(root, truth):
    w, h = CFG.image_size
    for archive in ("coco/train2014.zip", "coco/val2014.zip", "gqa/images.zip"):
        with zipfile.ZipFile(root / archive) as zf:
            for name in zf.namelist():
                if name.endswith("/"):
                    continue
                img = Image.open(io.BytesIO(zf.read(name)))
                img.load()
                assert (img.format, img.size, img.mode) == ("JPEG", (w, h), "RGB"), name
    pngs = sorted((root / "nlvr2/images").rglob("*.png"))
    assert len(pngs) == sum(n["images"] for n in SynthManifest.load(root).counts["nlvr2"].values())
    for path in pngs:
        img = Image.open(path)
        img.load()
        assert (img.format, img.size) == ("PNG", (w, h)), path
        assert path.stem in truth["nlvr2"]


# ---------------------------------------------------------------------------------------------- COCO
def test_coco_captions_and_karpathy_split(root, truth):
    karpathy = zip_json(root / "coco/caption_datasets.zip", "dataset_coco.json")
    assert karpathy["dataset"] == "coco"
    images = karpathy["images"]
    assert Counter(im["split"] for im in images) == {"train": 24, "restval": 8, "val": 8, "test": 8}
    sentids = [s["sentid"] for im in images for s in im["sentences"]]
    assert sentids == list(range(len(sentids)))
    for imgid, im in enumerate(images):
        assert set(im) == {"filepath", "sentids", "filename", "imgid", "split", "sentences", "cocoid"}
        assert im["imgid"] == imgid and im["filename"] == f"COCO_{im['filepath']}_{im['cocoid']:012d}.jpg"
        assert (im["filepath"] == "train2014") == (im["split"] == "train")
        assert len(im["sentences"]) == 5 and im["sentids"] == [s["sentid"] for s in im["sentences"]]
        for s in im["sentences"]:
            assert set(s) == {"tokens", "raw", "imgid", "sentid"} and s["imgid"] == imgid
            assert s["tokens"] and all(t == t.lower() for t in s["tokens"])
        scene = truth["coco"][im["filename"][:-4]]
        for s in im["sentences"]:  # every caption names a colour and a shape that were drawn
            assert any(f"{sh['color']} {sh['kind']}" in s["raw"].lower() for sh in scene["shapes"]), s["raw"]
    for subset in ("train2014", "val2014"):
        doc = zip_json(root / "coco/annotations_trainval2014.zip", f"annotations/captions_{subset}.json")
        assert set(doc) == {"info", "images", "licenses", "annotations"}
        ids = {im["id"] for im in doc["images"]}
        assert all(set(im) >= {"id", "file_name", "width", "height"} for im in doc["images"])
        assert all(set(a) == {"image_id", "id", "caption"} and a["image_id"] in ids for a in doc["annotations"])
        by_image = Counter(a["image_id"] for a in doc["annotations"])
        assert set(by_image.values()) == {5}
        raws = {s["raw"] for im in images if im["filepath"] == subset for s in im["sentences"]}
        assert {a["caption"] for a in doc["annotations"]} == raws


# ---------------------------------------------------------------------------------------------- VQA
def vqa_oracle(question: str, scene: dict) -> str:
    """The answer to a VQA question, computed independently from the scene record."""
    shapes = scene["shapes"]

    def only(kind: str) -> dict:
        found = [s for s in shapes if s["kind"] == kind]
        assert len(found) == 1, (question, shapes)
        return found[0]

    if m := re.fullmatch(r"What color is the (\w+)\?", question):
        return only(m[1])["color"]
    if m := re.fullmatch(r"Is the (\w+) (\w+)\?", question):
        return "yes" if only(m[1])["color"] == m[2] else "no"
    if question == "How many shapes are there?":
        return str(len(shapes))
    if m := re.fullmatch(r"How many (\w+)s are there\?", question):
        return str(sum(s["kind"] == m[1] for s in shapes))
    if m := re.fullmatch(r"Is there an? (\w+) (\w+)\?", question):
        return "yes" if any((s["color"], s["kind"]) == (m[1], m[2]) for s in shapes) else "no"
    if m := re.fullmatch(r"What shape is (.+)\?", question):
        return next(s["kind"] for s in shapes if s["position"] == POS[m[1]])
    if m := re.fullmatch(r"Where is the (\w+) (\w+)\?", question):
        return next(s["position"] for s in shapes if (s["color"], s["kind"]) == (m[1], m[2]))
    raise AssertionError(f"no oracle for {question!r}")


def test_vqa_schema_ids_and_answers_follow_the_images(root, truth):
    label2ans = json.loads((root / "vqa/trainval_label2ans.json").read_text())
    ans2label = json.loads((root / "vqa/trainval_ans2label.json").read_text())
    assert label2ans[0] == "" and ans2label == {a: i for i, a in enumerate(label2ans)}
    n_color, agreement = 0, Counter()
    for tag, subset in (("Train", "train2014"), ("Val", "val2014")):
        qdoc = zip_json(root / f"vqa/v2_Questions_{tag}_mscoco.zip", f"v2_OpenEnded_mscoco_{subset}_questions.json")
        adoc = zip_json(root / f"vqa/v2_Annotations_{tag}_mscoco.zip", f"v2_mscoco_{subset}_annotations.json")
        assert set(qdoc) == {"info", "task_type", "data_type", "data_subtype", "license", "questions"}
        assert set(adoc) == {"info", "license", "data_subtype", "annotations", "data_type"}
        assert qdoc["data_subtype"] == adoc["data_subtype"] == subset
        anns = {a["question_id"]: a for a in adoc["annotations"]}
        assert len(anns) == len(qdoc["questions"]) == CFG.vqa_questions_per_image * 24
        with zipfile.ZipFile(root / f"coco/{subset}.zip") as zf:
            for q in qdoc["questions"]:
                assert set(q) == {"image_id", "question", "question_id"}
                assert q["question_id"] // 1000 == q["image_id"] and q["question_id"] % 1000 < 3
                a = anns[q["question_id"]]
                assert set(a) == {"question_type", "multiple_choice_answer", "answers", "image_id", "answer_type",
                                  "question_id"}
                assert a["answer_type"] in ("yes/no", "number", "other")
                assert q["question"].lower().startswith(a["question_type"])
                assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
                assert all(x["answer_confidence"] in ("yes", "maybe", "no") for x in a["answers"])
                tally = Counter(x["answer"] for x in a["answers"])
                top, votes = tally.most_common(1)[0]
                agreement[votes] += 1
                img_id = f"COCO_{subset}_{q['image_id']:012d}"
                scene = truth["coco"][img_id]
                expected = vqa_oracle(q["question"], scene)
                assert top == a["multiple_choice_answer"] == expected, (q, tally)
                assert expected in ans2label
                if m := re.fullmatch(r"What color is the (\w+)\?", q["question"]):
                    n_color += 1
                    shape = next(s for s in scene["shapes"] if s["kind"] == m[1])
                    img = Image.open(io.BytesIO(zf.read(f"{subset}/{img_id}.jpg")))
                    assert sample(img, shape["cx"], shape["cy"]) == expected
    assert n_color > 5
    assert min(agreement) >= 7 and len(agreement) >= 3, agreement  # noisy annotators, soft scores vary


# ---------------------------------------------------------------------------------------------- GQA
GQA_KEYS = {"semantic", "entailed", "equivalent", "question", "imageId", "isBalanced", "groups", "answer",
            "semanticStr", "annotations", "types", "fullAnswer"}


def test_gqa_schema_and_answers(root, truth):
    vocab = json.loads((root / "gqa/trainval_label2ans.json").read_text())
    assert json.loads((root / "gqa/trainval_ans2label.json").read_text()) == {a: i for i, a in enumerate(vocab)}
    with zipfile.ZipFile(root / "gqa/images.zip") as zf:
        for split in ("train", "val", "testdev"):
            doc = zip_json(root / "gqa/questions1.2.zip", f"{split}_balanced_questions.json")
            assert len(doc) == CFG.gqa_images[split] * CFG.gqa_questions_per_image
            for qid, rec in doc.items():
                assert re.fullmatch(r"\d{8}", qid) and set(rec) == GQA_KEYS
                assert set(rec["types"]) == {"structural", "semantic", "detailed"}
                assert set(rec["groups"]) == {"global", "local"}
                assert set(rec["annotations"]) == {"question", "answer", "fullAnswer"}
                assert all(set(op) == {"operation", "dependencies", "argument"} for op in rec["semantic"])
                assert rec["equivalent"] == [qid] and rec["isBalanced"] is True
                pattern = r"n\d{6}" if split == "testdev" else r"[1-9]\d*"
                assert re.fullmatch(pattern, rec["imageId"])
                if split != "testdev":
                    assert rec["answer"] in vocab
                shapes = truth["gqa"]["images"][rec["imageId"]]["shapes"]
                if m := re.fullmatch(r"What color is the (\w+)\?", rec["question"]):
                    (shape,) = [s for s in shapes if s["kind"] == m[1]]
                    assert rec["answer"] == shape["color"]
                    img = Image.open(io.BytesIO(zf.read(f"images/{rec['imageId']}.jpg")))
                    assert sample(img, shape["cx"], shape["cy"]) == rec["answer"]
                elif m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", rec["question"]):
                    present = any((s["color"], s["kind"]) == (m[1], m[2]) for s in shapes)
                    assert rec["answer"] == ("yes" if present else "no")
                elif m := re.fullmatch(r"Is the (\w+) (\w+) to the left or to the right of the (\w+) (\w+)\?",
                                       rec["question"]):
                    x = next(s for s in shapes if (s["color"], s["kind"]) == (m[1], m[2]))
                    y = next(s for s in shapes if (s["color"], s["kind"]) == (m[3], m[4]))
                    assert rec["answer"] == ("left" if x["cx"] < y["cx"] else "right")


# ---------------------------------------------------------------------------------------------- NLVR2
def nlvr2_oracle(sentence: str, left: dict, right: dict) -> bool:
    L, R = left["shapes"], right["shapes"]

    def has(shapes, color):
        return any(s["color"] == color for s in shapes)

    if m := re.fullmatch(r"At least one image contains an? (\w+) shape\.", sentence):
        return has(L, color=m[1]) or has(R, color=m[1])
    if m := re.fullmatch(r"Exactly one image contains an? (\w+) shape\.", sentence):
        return has(L, color=m[1]) != has(R, color=m[1])
    if m := re.fullmatch(r"The (left|right) image contains an? (\w+) shape\.", sentence):
        return has(L if m[1] == "left" else R, color=m[2])
    raise AssertionError(f"no oracle for {sentence!r}")


def test_nlvr2_records_have_the_real_schema_and_true_labels(root, truth):
    real_keys = set(real_first("nlvr2_dev.json"))
    labels = []
    for split in ("train", "dev", "test1"):
        records = jsonl(root / f"nlvr2/{split}.json")
        assert len(records) == 8 * CFG.nlvr2_sets[split]
        for r in records:
            expected = real_keys - {"extra_validations"} | {"directory"} if split == "train" else real_keys
            assert set(r) == expected, split
            split_, set_id, pair, sent = r["identifier"].split("-")
            assert split_ == split and pair in "0123" and sent in "01" and set_id.isdigit()
            assert r["label"] in ("True", "False") and isinstance(r["writer"], str)
            assert all(v in ("True", "False") for v in r["validation"].values())
            stem = f"{split}-{set_id}-{pair}"
            folder = root / "nlvr2/images" / split / (str(r["directory"]) if split == "train" else "")
            assert (folder / f"{stem}-img0.png").is_file() and (folder / f"{stem}-img1.png").is_file()
            left, right = truth["nlvr2"][f"{stem}-img0"], truth["nlvr2"][f"{stem}-img1"]
            assert (r["label"] == "True") == nlvr2_oracle(r["sentence"], left, right), r
            # statements name only the three colours a tiny model can learn to look up (pipelines.synth.language)
            named = {w for w in re.findall(r"\w+", r["sentence"]) if w in ("red", "green", "blue", "yellow",
                                                                            "purple", "orange")}
            assert len(named) == 1 and named <= {"red", "blue", "yellow"}, r["sentence"]
            labels.append(r["label"] == "True")
        per_sentence = Counter(r["identifier"].rsplit("-", 2)[0] + r["identifier"][-2:] for r in records)
        assert set(per_sentence.values()) == {4}  # every sentence is labelled on the set's 4 pairs
    assert 0.35 <= sum(labels) / len(labels) <= 0.65


def test_nlvr2_hash_files_match_recomputed_average_hashes(root):
    for split in ("train", "dev", "test1"):
        hashes = json.loads((root / f"nlvr2/{split}_hashes.json").read_text())
        files = {p.name: p for p in (root / "nlvr2/images" / split).rglob("*.png")}
        assert set(hashes) == set(files)
        for name, value in hashes.items():
            assert re.fullmatch(r"[0-9a-f]{16}", value)
            assert average_hash(Image.open(files[name])) == value
    real_hashes = json.loads(real("nlvr2_dev_hashes.json").read_text())
    assert all(re.fullmatch(r"[0-9a-f]{16}", v) for v in list(real_hashes.values())[:100])  # same format


def test_average_hash_matches_the_imagehash_definition():
    img = Image.new("L", (16, 16), 0)
    img.paste(255, (8, 0, 16, 16))  # right half bright: each row of the 8x8 grid is 00001111
    assert average_hash(img) == "0f0f0f0f0f0f0f0f"
    img = Image.new("L", (8, 8), 10)
    img.paste(200, (0, 0, 8, 1))  # only the first row is above the mean
    assert average_hash(img) == "ff00000000000000"


def test_average_hash_agrees_with_imagehash_when_installed():
    imagehash = pytest.importorskip("imagehash")
    import random

    from pipelines.synth.scenes import random_scene, render_scene

    rng = random.Random(0)
    for _ in range(20):
        img = render_scene(random_scene(rng, *CFG.image_size))
        assert average_hash(img) == str(imagehash.average_hash(img))


# ---------------------------------------------------------------------------------------------- videos
def test_videos_decode_with_the_frames_and_fps_written(root, truth):
    decord = pytest.importorskip("decord")
    clips = {**{f"tvqa/videos/{k}.mp4": v for k, v in truth["tvqa"].items()},
             **{f"how2qa/videos/{v['raw_name']}.mp4": v for v in truth["how2qa"].values()},
             **{f"yc2c/videos/{k}.mp4": v for k, v in truth["yc2c"].items()}}
    assert set(clips) == {p for p in SynthManifest.load(root).paths() if p.endswith(".mp4")}
    assert len(clips) == 10 + 8 + 8
    assert any(c["n_frames"] == 1 for c in clips.values())
    assert any(1 < c["n_frames"] and c["duration"] < 1.6 for c in clips.values())
    for rel, clip in clips.items():
        vr = decord.VideoReader(str(root / rel))
        assert len(vr) == clip["n_frames"], rel
        assert vr.get_avg_fps() == pytest.approx(clip["fps"]), rel
        first, last = vr[0].asnumpy(), vr[len(vr) - 1].asnumpy()
        assert first.shape == (clip["height"], clip["width"], 3)
        for s in clip["shapes"]:  # the shape is where the record says, at the start and at the end
            assert sample(Image.fromarray(first), s["x0"], s["y0"]) == s["color"], (rel, s)
            assert sample(Image.fromarray(last), s["x1"], s["y1"]) == s["color"], (rel, s)


PLACE = {"left": "On the left side.", "right": "On the right side.", "up": "At the top.", "down": "At the bottom."}
DIRECTION = {"To the right.": "right", "To the left.": "left", "Upward.": "up", "Downward.": "down",
             "It does not move.": "none"}


def check_choice(rec: dict, clip: dict, n_choices: int) -> None:
    choices = [rec[f"a{k}"] for k in range(n_choices)]
    assert len(set(choices)) == n_choices and f"a{n_choices}" not in rec
    answer = choices[rec["answer_idx"]]
    shapes = clip["shapes"]
    if m := re.fullmatch(r"Which direction does the (\w+) (\w+) move\?", rec["q"]):
        s = next(s for s in shapes if (s["color"], s["kind"]) == (m[1], m[2]))
        assert DIRECTION[answer] == s["direction"]
    elif rec["q"] == "How many shapes are in the video?":
        assert answer == ["None.", "One.", "Two.", "Three."][len(shapes)]
    elif m := re.fullmatch(r"What color is the shape that moves (.+)\?", rec["q"]):
        (s,) = [s for s in shapes if s["direction"] == DIRECTION[m[1][0].upper() + m[1][1:] + "."]]
        assert answer == s["color"].capitalize() + "."
    elif m := re.fullmatch(r"Which shape moves (.+)\?", rec["q"]):
        (s,) = [s for s in shapes if s["direction"] == DIRECTION[m[1][0].upper() + m[1][1:] + "."]]
        assert answer == f"The {s['kind']}."
    elif m := re.fullmatch(r"Where is the (\w+) (\w+) at the end of the video\?", rec["q"]):
        s = next(s for s in shapes if (s["color"], s["kind"]) == (m[1], m[2]))
        assert answer == PLACE[s["direction"]]
    elif m := re.fullmatch(r"Where does the (\w+) (\w+) start\?", rec["q"]):
        s = next(s for s in shapes if (s["color"], s["kind"]) == (m[1], m[2]))
        assert answer == PLACE[{"left": "right", "right": "left", "up": "down", "down": "up"}[s["direction"]]]
    elif m := re.fullmatch(r"What color is the (\w+)\?", rec["q"]):
        (s,) = [s for s in shapes if s["kind"] == m[1]]
        assert answer == s["color"].capitalize() + "."
    else:
        raise AssertionError(rec["q"])


def ts_ok(ts: str, duration: float) -> bool:
    s, e = (float(x) for x in ts.split("-"))
    return 0 <= s <= e <= duration + 1e-6


def test_tvqa_records(root, truth):
    with tarfile.open(root / "tvqa/tvqa_qa_release.tar.gz") as tf:
        files = {s: [json.loads(x) for x in tf.extractfile(f"tvqa_qa_release/tvqa_{s}.jsonl").read().splitlines()]
                 for s in ("train", "val", "test_public")}
    shows = set(json.loads(real("tvqa_val_solution.json").read_text())["solution"])
    base = {"qid", "q", "a0", "a1", "a2", "a3", "a4", "ts", "vid_name", "show_name"}
    for split, records in files.items():
        assert records
        for r in records:
            assert set(r) == (base if split == "test_public" else base | {"answer_idx"})
            assert isinstance(r["qid"], int) and isinstance(r["ts"], str) and r["show_name"] in shows
            assert re.fullmatch(r"((castle|friends|grey|house|met)_)?s\d\de\d\d_seg0[12]_clip_\d\d", r["vid_name"])
            assert r["vid_name"].startswith("s") == (r["show_name"] == "The Big Bang Theory")
            clip = truth["tvqa"][r["vid_name"]]
            assert ts_ok(r["ts"], clip["duration"])
            check_choice({**r, "answer_idx": truth["tvqa_answers"][str(r["qid"])]}, clip, 5)
            if "answer_idx" in r:
                assert r["answer_idx"] == truth["tvqa_answers"][str(r["qid"])]
    release = jsonl(root / "tvqa/tvqa_test_release.jsonl")
    assert release[: len(files["test_public"])] == files["test_public"] and len(release) > len(files["test_public"])
    qids = [r["qid"] for rs in files.values() for r in rs] + [r["qid"] for r in release]
    assert len(set(qids)) == len(qids) - len(files["test_public"])


def test_how2qa_records_match_the_real_schema(root, truth):
    real_keys = set(real_first("how2qa_val_release.jsonl"))
    mapping = json.loads((root / "how2qa/how2_vid_mapping.json").read_text())
    for split in ("train", "val", "test_public"):
        records = jsonl(root / f"how2qa/how2qa_{split}_release.jsonl")
        assert records
        for r in records:
            assert set(r) == (real_keys - {"answer_idx"} if split == "test_public" else real_keys)
            assert isinstance(r["vid_name"], str) and r["vid_name"].isdigit() and isinstance(r["qid"], int)
            assert (root / "how2qa/videos" / f"{mapping[r['vid_name']]}.mp4").is_file()
            assert re.fullmatch(r"[\w-]{11}_\d+_\d+", mapping[r["vid_name"]])
            clip = truth["how2qa"][r["vid_name"]]
            assert ts_ok(r["ts"], clip["duration"])
            check_choice({**r, "answer_idx": truth["how2qa_answers"][str(r["qid"])]}, clip, 4)


def test_tvc_records_match_the_real_schema(root, truth):
    real_keys = set(real_first("tvc_test_public_release.jsonl"))
    for split, n_descs in (("train", 2), ("val", 4), ("test", 0)):
        records = jsonl(root / f"tvc/tvc_{split}_release.jsonl")
        assert len(records) == CFG.tv_videos[split] * CFG.tvc_moments_per_video
        for r in records:
            assert set(r) == (real_keys | {"descs"} if n_descs else real_keys)
            assert isinstance(r["duration"], float) and isinstance(r["clip_id"], int)
            assert isinstance(r["ts"], list) and len(r["ts"]) == 2 and 0 <= r["ts"][0] <= r["ts"][1] <= r["duration"]
            clip = truth["tvqa"][r["vid_name"]]
            assert clip["split"] == split and r["duration"] == round(clip["duration"], 2)
            if n_descs:
                assert len(r["descs"]) == n_descs
                for d in r["descs"]:
                    assert set(d) == {"desc", "desc_id", "type", "from_retrieval"} and isinstance(d["desc_id"], int)
                    assert all(s["color"] in d["desc"].lower() and s["kind"] in d["desc"] for s in clip["shapes"])


def test_yc2c_records_and_youcook2_annotations(root, truth):
    real_rec = real_first("yc2c_val_release.jsonl")
    with tarfile.open(root / "yc2c/youcookii_annotations_trainval.tar.gz") as tf:
        database = json.loads(tf.extractfile("youcookii_annotations_trainval.json").read())["database"]
    for split in ("train", "val", "test"):
        records = jsonl(root / f"yc2c/yc2c_{split}_release.jsonl")
        assert len(records) == CFG.yc2_segments[split]
        for r in records:
            assert set(r) == (set(real_rec) if split != "test" else set(real_rec) - {"descs"})
            assert isinstance(r["duration"], int) and isinstance(r["clip_id"], int)
            ytid, seg = r["vid_name"].rsplit("_", 1)
            clip = truth["yc2c"][r["vid_name"]]
            assert clip["duration"] == r["duration"]
            if split == "test":
                assert ytid not in database
                continue
            (desc,) = r["descs"]
            assert set(desc) == set(real_rec["descs"][0]) and isinstance(desc["desc_id"], int)
            entry = database[ytid]
            assert set(entry) == {"duration", "subset", "recipe_type", "video_url", "annotations"}
            assert entry["subset"] == {"train": "training", "val": "validation"}[split]
            ann = entry["annotations"][int(seg)]
            assert ann["id"] == int(seg) and ann["sentence"] == desc["desc"]
            assert ann["segment"][1] - ann["segment"][0] == r["duration"]


def test_subtitles_cover_every_video(root, truth):
    for path, key in (("tvqa/tv_subtitles.jsonl", "tvqa"), ("how2qa/how2_subtitles.jsonl", "how2qa"),
                      ("yc2c/yc2_subtitles.jsonl", "yc2c")):
        subs = {r["vid_name"]: r["sub"] for r in jsonl(root / path)}
        assert set(subs) == set(truth[key])
        for vid, lines in subs.items():
            assert lines
            for line in lines:
                assert set(line) == {"text", "start", "end"} and isinstance(line["text"], str)
                assert 0 <= line["start"] <= line["end"] <= truth[key][vid]["duration"] + 1e-6
    tv = jsonl(root / "tvqa/tv_subtitles.jsonl")[0]["sub"][0]["text"]
    assert re.fullmatch(r" \w+ : .+", tv)  # " Chase : That's all this is?"


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_synth_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from pipelines.cli import register

    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command, so typer keeps "synth" as a subcommand
        pass

    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "s"), "--scale", "tiny", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "nlvr2" in result.output and str(tmp_path / "s") in result.output
    assert SynthManifest.load(tmp_path / "s").seed == 2
    bad = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "t"), "--scale", "huge"])
    assert bad.exit_code != 0
