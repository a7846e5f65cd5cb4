"""The registry of dataset sources: every file with its canonical URL, checksum and size where
published, licence, and a human-readable note for assets that need a form or YouTube.

What each file is, its splits and how it is parsed: ``docs/data.md``.
A file's URL can be redirected two ways, so an institution can point everything at its own copy:
- a base-URL override per source (``--base-url vqa=https://mirror.example/vqa``): the file's name is
  appended to the override;
- one global mirror (``--mirror https://... | file:///...``): files are looked up as
  ``<mirror>/<source>/<file name>`` (the layout ``vlpet synth`` writes and the loopback tests serve).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

FileKind = Literal["annotations", "images", "videos", "features", "vocabulary", "subtitles"]

_COCO = "http://images.cocodataset.org"
_VQA = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
_LXMERT_RAW = "https://raw.githubusercontent.com/airsplay/lxmert/master/data"
_LXMERT = "https://nlp.cs.unc.edu/data/lxmert_data"
_GQA = "https://downloads.cs.stanford.edu/nlp/data/gqa"
_NLVR = "https://raw.githubusercontent.com/lil-lab/nlvr/master/nlvr2"
_VALUE = "https://datarelease.blob.core.windows.net/value-leaderboard"
_TVQA = "https://nlp.cs.unc.edu/data/jielei/tvqa/files"
_TVC = "https://raw.githubusercontent.com/jayleicn/TVCaption/master/data"
_TVR = "https://raw.githubusercontent.com/jayleicn/TVRetrieval/master/data"
_YC2 = "http://youcook2.eecs.umich.edu/static/YouCookII"


class SourceFile(BaseModel):
    """One downloadable file. ``name`` is the file name on disk and in a mirror."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    url: str
    kind: FileKind
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    unpack: bool = False  # an archive to unpack safely next to it (pipelines.archive)
    optional: bool = False  # not needed by the paper's runs (test-server splits, shortcuts)
    note: str = ""


class ManualAsset(BaseModel):
    """Media that cannot be fetched automatically: what it is, how to request it, where to put it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    kind: FileKind
    how_to_get: str
    put_under: str  # relative to the dataset's raw directory
    pattern: str  # the file names expected there (glob)


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    title: str
    homepage: str
    licence: str
    files: tuple[SourceFile, ...]
    manual: tuple[ManualAsset, ...] = ()
    needs: tuple[str, ...] = ()  # other sources whose media this one uses (e.g. VQA -> COCO images)


SOURCES: dict[str, Source] = {
    "coco": Source(
        name="coco", title="COCO 2014 images and Karpathy captions", homepage="https://cocodataset.org",
        licence="annotations CC BY 4.0; images under their Flickr terms",
        files=(
            SourceFile(name="train2014.zip", url=f"{_COCO}/zips/train2014.zip", kind="images", unpack=True,
                       md5="0da8c0bd3d6becc4dcb32757491aca88", note="~13 GB, 82,783 images"),
            SourceFile(name="val2014.zip", url=f"{_COCO}/zips/val2014.zip", kind="images", unpack=True,
                       md5="a3d79f5ed8d289b7a7554ce06a5782b3", note="~6.2 GB, 40,504 images"),
            SourceFile(name="test2015.zip", url=f"{_COCO}/zips/test2015.zip", kind="images", unpack=True,
                       optional=True, note="~12 GB; only for VQA test-server submissions"),
            SourceFile(name="annotations_trainval2014.zip", kind="annotations", unpack=True,
                       url=f"{_COCO}/annotations/annotations_trainval2014.zip", md5="0a379cfc70b0e71301e0f377548639bd"),
            SourceFile(name="caption_datasets.zip",
                       url="http://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                       kind="annotations", unpack=True, note="Karpathy splits (dataset_coco.json); no checksum"),
        ),
    ),
    "vqa": Source(
        name="vqa", title="VQA v2 (official questions/annotations, LXMERT/VL-T5 vocabularies)",
        homepage="https://visualqa.org", licence="annotations CC BY 4.0; images: COCO", needs=("coco",),
        files=(
            SourceFile(name="v2_Questions_Train_mscoco.zip", url=f"{_VQA}/v2_Questions_Train_mscoco.zip",
                       kind="annotations", unpack=True),
            SourceFile(name="v2_Questions_Val_mscoco.zip", url=f"{_VQA}/v2_Questions_Val_mscoco.zip",
                       kind="annotations", unpack=True),
            SourceFile(name="v2_Questions_Test_mscoco.zip", url=f"{_VQA}/v2_Questions_Test_mscoco.zip",
                       kind="annotations", unpack=True, optional=True),
            SourceFile(name="v2_Annotations_Train_mscoco.zip", url=f"{_VQA}/v2_Annotations_Train_mscoco.zip",
                       kind="annotations", unpack=True),
            SourceFile(name="v2_Annotations_Val_mscoco.zip", url=f"{_VQA}/v2_Annotations_Val_mscoco.zip",
                       kind="annotations", unpack=True),
            SourceFile(name="trainval_ans2label.json", url=f"{_LXMERT_RAW}/vqa/trainval_ans2label.json",
                       kind="vocabulary", md5="d3cf7a7f49dfe3c93ff9e4f7fd1d9d75", note="3,129 answers"),
            SourceFile(name="trainval_label2ans.json", url=f"{_LXMERT_RAW}/vqa/trainval_label2ans.json",
                       kind="vocabulary", md5="1166604b5dc23aa3bcd8a1024d29146b"),
            *(SourceFile(name=f"{s}.json", url=f"{_LXMERT}/vqa/{s}.json", kind="annotations", optional=True,
                         note="LXMERT preprocessed split (not used by the multi-task runs)")
              for s in ("train", "nominival", "minival")),
        ),
    ),
    "gqa": Source(
        name="gqa", title="GQA balanced", homepage="https://cs.stanford.edu/people/dorarad/gqa",
        licence="CC BY 4.0",
        files=(
            SourceFile(name="questions1.2.zip", url=f"{_GQA}/questions1.2.zip", kind="annotations", unpack=True,
                       note="1.4 GB"),
            SourceFile(name="images.zip", url=f"{_GQA}/images.zip", kind="images", unpack=True, note="20.3 GB"),
            SourceFile(name="trainval_ans2label.json", url=f"{_LXMERT_RAW}/gqa/trainval_ans2label.json",
                       kind="vocabulary", md5="38fe12ba0c85ca9419d67b90e87a652d", note="1,842 answers"),
            SourceFile(name="trainval_label2ans.json", url=f"{_LXMERT_RAW}/gqa/trainval_label2ans.json",
                       kind="vocabulary", md5="ac67603df87fb7c22b74f144b7bd9b2c"),
            *(SourceFile(name=f"{s}.json", url=f"{_LXMERT}/gqa/{s}.json", kind="annotations", optional=True,
                         note="LXMERT preprocessed split") for s in ("train", "valid", "testdev")),
        ),
    ),
    "nlvr2": Source(
        name="nlvr2", title="NLVR2", homepage="https://lil.nlp.cornell.edu/nlvr/", licence="CC BY 4.0 (annotations)",
        files=(
            *(SourceFile(name=f"{s}.json", url=f"{_NLVR}/data/{s}.json", kind="annotations") for s in
              ("train", "dev", "test1")),
            *(SourceFile(name=f"{s}_hashes.json", url=f"{_NLVR}/util/hashes/{s}_hashes.json", kind="annotations",
                         note="average hash per image file, to check crawled images")
              for s in ("train", "dev", "test1")),
        ),
        manual=(ManualAsset(
            name="NLVR2 images", kind="images", put_under="images",
            how_to_get=("request the images through the NLVR2 Google Form (https://goo.gl/forms/yS29stWnFWzrDBFH3, "
                        "research-only terms; answer within about a week), or crawl left_url/right_url from the "
                        "annotation files and check them against the *_hashes.json files (about 5% of URLs are dead)"),
            pattern="**/*-img[01].png"),),
    ),
    "tvqa": Source(
        name="tvqa", title="TVQA", homepage="https://tvqa.cs.unc.edu", licence="CC BY-NC-SA 4.0 (annotations)",
        files=(
            SourceFile(name="tvqa_qa_release.tar.gz", url=f"{_TVQA}/tvqa_qa_release.tar.gz", kind="annotations",
                       unpack=True, note="train/val/test_public jsonl (the old tvqa.cs.unc.edu host is dead)"),
            SourceFile(name="tvqa_test_release.jsonl", url=f"{_VALUE}/tv_tasks/tvqa_test_release.jsonl",
                       kind="annotations", optional=True, note="VALUE test (server-scored)"),
            SourceFile(name="tv_subtitles.jsonl", url=f"{_TVR}/tvqa_preprocessed_subtitles.jsonl",
                       kind="subtitles"),
        ),
        manual=(ManualAsset(
            name="TVQA video frames / clips", kind="videos", put_under="videos",
            how_to_get=("request tvqa_video_frames_fps3_hq.tar.gz (43 GB) through the TVQA download form with the "
                        "signed agreement (https://tvqa.cs.unc.edu, reply within about 7 days); place one video "
                        "(or frame folder) per vid_name"),
            pattern="*.mp4"),),
    ),
    "how2qa": Source(
        name="how2qa", title="How2QA (VALUE release)", homepage="https://value-benchmark.github.io",
        licence="CC BY-NC-SA 4.0 (annotations)",
        files=(
            *(SourceFile(name=f"how2qa_{s}_release.jsonl", url=f"{_VALUE}/how2qa/how2qa_{s}_release.jsonl",
                         kind="annotations") for s in ("train", "val", "test_public")),
            SourceFile(name="how2_subtitles.jsonl", url=f"{_VALUE}/how2r/how2_subtitles.jsonl", kind="subtitles"),
            SourceFile(name="how2_vid_mapping.json", url=f"{_VALUE}/vid_mapping/how2_vid_mapping.json",
                       kind="annotations", note="numeric vid_name -> <YouTubeID>_<start>_<end>"),
        ),
        manual=(ManualAsset(
            name="How2 videos", kind="videos", put_under="videos",
            how_to_get=("download the YouTube videos named in how2_vid_mapping.json (many are no longer available) "
                        "or request them from the How2QA authors by email; cut them to the mapped clips"),
            pattern="*.mp4"),),
    ),
    "tvc": Source(
        name="tvc", title="TVC (TV show captioning)", homepage="https://tvr.cs.unc.edu/tvc.html",
        licence="CC BY-NC-SA 4.0 (annotations)", needs=("tvqa",),
        files=(
            SourceFile(name="tvc_train_release.jsonl", url=f"{_TVC}/tvc_train_release.jsonl", kind="annotations"),
            SourceFile(name="tvc_val_release.jsonl", url=f"{_TVC}/tvc_val_release.jsonl", kind="annotations"),
            SourceFile(name="tvc_test_release.jsonl", url=f"{_VALUE}/tv_tasks/tvc_test_release.jsonl",
                       kind="annotations", note="no captions (server-scored)"),
        ),
    ),
    "yc2c": Source(
        name="yc2c", title="YouCook2 captioning (VALUE YC2C)", homepage="http://youcook2.eecs.umich.edu",
        licence="CC BY-NC-SA 4.0 (annotations)",
        files=(
            *(SourceFile(name=f"yc2c_{s}_release.jsonl", url=f"{_VALUE}/yc2c/yc2c_{s}_release.jsonl",
                         kind="annotations") for s in ("train", "val", "test")),
            SourceFile(name="yc2_subtitles.jsonl", url=f"{_VALUE}/yc2r/yc2_subtitles.jsonl", kind="subtitles"),
            SourceFile(name="youcookii_annotations_trainval.tar.gz", kind="annotations", unpack=True, optional=True,
                       url=f"{_YC2}/youcookii_annotations_trainval.tar.gz", note="raw YouCook2 segments"),
        ),
        manual=(ManualAsset(
            name="YouCook2 videos", kind="videos", put_under="videos",
            how_to_get=("download the YouTube videos listed in youcookii_annotations_trainval.tar.gz "
                        "(many were removed)"),
            pattern="*.mp4"),),
    ),
    "value-features": Source(
        name="value-features", title="VALUE released clip-vit video features (optional shortcut)",
        homepage="https://value-benchmark.github.io", licence="CC BY-NC-SA 4.0",
        files=tuple(SourceFile(name=f"{d}_clip-vit.tar", url=f"{_VALUE}/vis_feat/{d}/clip-vit.tar",
                               kind="features", unpack=True, optional=True,
                               note="one <vid_name>.npz per video, features (T, 512) fp16")
                    for d in ("tv", "how2", "yc2")),
    ),
}

DATASETS: tuple[str, ...] = ("coco", "vqa", "gqa", "nlvr2", "tvqa", "how2qa", "tvc", "yc2c")


def get_source(name: str) -> Source:
    key = name.strip().lower()
    if key not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[key]


def resolve_url(source: Source, file: SourceFile, *, mirror: str | None = None,
                base_urls: dict[str, str] | None = None) -> str:
    """Where to fetch ``file``: a per-source base override wins, then the global mirror, then upstream."""
    if base_urls and source.name in base_urls:
        return f"{base_urls[source.name].rstrip('/')}/{file.name}"
    if mirror:
        return f"{mirror.rstrip('/')}/{source.name}/{file.name}"
    return file.url
