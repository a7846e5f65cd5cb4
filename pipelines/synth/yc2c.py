"""YouCook2 segment clips, the VALUE YC2C captioning release and the raw YouCook2 annotations.

Layout: ``yc2c/yc2c_{train,val,test}_release.jsonl`` (one caption per clip; test without captions,
as it is scored by the server), ``yc2c/yc2_subtitles.jsonl``, ``yc2c/youcookii_annotations_trainval.tar.gz``
(``youcookii_annotations_trainval.json``: ``{"database": {ytid: {duration, subset, recipe_type,
video_url, annotations: [{segment: [s, e], id, sentence}]}}}``, train and val videos only, as upstream)
and the segment clips ``yc2c/videos/<YouTubeID>_<segment id>.mp4`` (VALUE's vid_name convention).
Segments are whole seconds; YC2C ``duration`` is the segment length (an int, as upstream).
Edge case: the first val segment lasts 1 s.
"""

from __future__ import annotations

from pipelines.synth import video_text as vt
from pipelines.synth.config import ScaleConfig
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream, youtube_id
from pipelines.synth.video import random_clip, write_mp4
from pipelines.synth.writers import OutputTree, json_bytes

SOURCE = "yc2c"
FPS = 8
SPLITS = ("train", "val", "test")
SUBSET = {"train": "training", "val": "validation", "test": "testing"}


def write(tree: OutputTree, cfg: ScaleConfig, seed: int, truth: dict) -> Report:
    rng = stream(seed, SOURCE)
    w, h = cfg.video_size
    lo, hi = (max(2, round(x)) for x in cfg.video_seconds)
    hi = min(hi, 12)  # cooking steps are short
    database: dict[str, dict] = {}
    subs: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    truth_v: dict[str, dict] = {}
    clip_id = desc_id = 0
    for split in SPLITS:
        records = []
        remaining = cfg.yc2_segments[split]
        while remaining > 0:
            ytid = youtube_id(rng)
            n_seg = min(remaining, rng.randint(2, 4))
            remaining -= n_seg
            t = rng.randint(5, 30)
            anns = []
            for seg in range(n_seg):
                first_val = split == "val" and not records and seg == 0
                length = 1 if first_val else rng.randint(lo, hi)
                s, e = t, t + length
                t = e + rng.randint(2, 20)
                clip = random_clip(rng, w, h, FPS, length * FPS)
                name = f"{ytid}_{seg}"
                rel = f"{SOURCE}/videos/{name}.mp4"
                write_mp4(tree.path(rel), clip)
                tree.record(rel, SOURCE)
                sentence = vt.instruction(clip, rng)
                anns.append({"segment": [s, e], "id": seg, "sentence": sentence})
                rec = {"vid_name": name, "clip_id": clip_id, "duration": length}
                if split != "test":
                    rec["descs"] = [{"desc": sentence, "desc_id": desc_id}]
                    desc_id += 1
                clip_id += 1
                records.append(rec)
                subs.append({"vid_name": name, "sub": vt.subtitles(clip.duration, rng, vt.YC2_LINES)})
                truth_v[name] = {**clip.to_dict(), "split": split, "sentence": sentence}
            database[ytid] = {"duration": round(t + rng.uniform(5, 60), 2), "subset": SUBSET[split],
                              "recipe_type": str(rng.randint(101, 426)),
                              "annotations": anns, "video_url": f"https://www.youtube.com/watch?v={ytid}"}
        tree.write_jsonl(f"{SOURCE}/yc2c_{split}_release.jsonl", records, SOURCE)
        counts[split] = {"records": len(records), "videos": len(records)}
    trainval = {k: v for k, v in database.items() if v["subset"] != "testing"}
    tree.write_targz(f"{SOURCE}/youcookii_annotations_trainval.tar.gz",
                     [("youcookii_annotations_trainval.json", json_bytes({"database": trainval}))], SOURCE)
    tree.write_jsonl(f"{SOURCE}/yc2_subtitles.jsonl", subs, SOURCE)
    truth[SOURCE] = truth_v
    return counts, {"subtitles": len(subs), "youcookii_trainval_videos": len(trainval),
                    "youcookii_trainval_segments": sum(len(v["annotations"]) for v in trainval.values())}
