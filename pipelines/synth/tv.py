"""TV-show clips for TVQA and TVC, with TVQA/TVC annotations and TV subtitles.

Layout: ``tvqa/tvqa_qa_release.tar.gz`` (``tvqa_qa_release/tvqa_{train,val,test_public}.jsonl``; the
VALUE script strips that top folder), ``tvqa/tvqa_test_release.jsonl`` (VALUE: test-public plus
test-challenge, no labels), ``tvqa/tv_subtitles.jsonl`` and the clips ``tvqa/videos/<vid_name>.mp4``
(the stand-in for the frames that TVQA gives out by form); ``tvc/tvc_{train,val,test}_release.jsonl``
about the same clips (2 captions per train moment, 4 per val moment, none for test).
vid_names follow upstream: ``<show>_sXXeYY_segNN_clip_NN``, with no show prefix for The Big Bang Theory.
Edge cases on purpose: the first train clip is a single frame, the first val clip lasts 1.2 s (< 1.6 s,
where the HERO extractor switches its sampling rate).
"""

from __future__ import annotations

import random

from pipelines.synth import video_text as vt
from pipelines.synth.config import ScaleConfig
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream
from pipelines.synth.video import Clip, random_clip, write_mp4
from pipelines.synth.writers import OutputTree, jsonl_bytes

TVQA, TVC = "tvqa", "tvc"
FPS = 10
SHOW_PREFIX = {"The Big Bang Theory": "", "Castle": "castle_", "Friends": "friends_", "Grey's Anatomy": "grey_",
               "House M.D.": "house_", "How I Met You Mother": "met_"}


def _vid_names(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(out) < n:
        show = rng.choice(list(SHOW_PREFIX))
        name = (f"{SHOW_PREFIX[show]}s{rng.randint(1, 10):02d}e{rng.randint(1, 24):02d}"
                f"_seg{rng.randint(1, 2):02d}_clip_{rng.randint(0, 25):02d}")
        if name not in seen:
            seen.add(name)
            out.append((name, show))
    return out


SPLITS = ("train", "val", "test")
Videos = dict[str, list[tuple[str, str, Clip]]]


def _write_videos(tree: OutputTree, cfg: ScaleConfig, rng: random.Random) -> Videos:
    """The TVQA clips of every split (the first train clip has one frame, the first val clip 12: edge cases)."""
    w, h = cfg.video_size
    names = _vid_names(rng, sum(cfg.tv_videos[s] for s in SPLITS))
    videos: Videos = {}
    i = 0
    for split in SPLITS:
        videos[split] = []
        for j in range(cfg.tv_videos[split]):
            if split == "train" and j == 0:
                n_frames = 1
            elif split == "val" and j == 0:
                n_frames = 12
            else:
                n_frames = round(rng.uniform(*cfg.video_seconds) * FPS)
            name, show = names[i]
            i += 1
            clip = random_clip(rng, w, h, FPS, n_frames)
            write_mp4(tree.path(f"{TVQA}/videos/{name}.mp4"), clip)
            tree.record(f"{TVQA}/videos/{name}.mp4", TVQA)
            videos[split].append((name, show, clip))
    return videos


def _write_tvqa(tree: OutputTree, cfg: ScaleConfig, rng: random.Random, videos: Videos,
                truth: dict) -> Report:
    """TVQA questions (test split into public / challenge halves) and the subtitles of every clip."""
    n_public = (cfg.tv_videos["test"] + 1) // 2
    qa: dict[str, list[dict]] = {"train": [], "val": [], "test_public": [], "test_challenge": []}
    qid = 0
    for split in SPLITS:
        for j, (name, show, clip) in enumerate(videos[split]):
            key = split if split != "test" else ("test_public" if j < n_public else "test_challenge")
            for item in vt.questions(clip, rng, cfg.tvqa_questions_per_video, n_choices=5):
                s, e = vt.window(clip.duration, rng)
                rec = {"qid": qid, "q": item.question, **{f"a{k}": c for k, c in enumerate(item.choices)}}
                if split != "test":
                    rec["answer_idx"] = item.answer_idx
                rec.update({"ts": f"{vt.fmt_time(s)}-{vt.fmt_time(e)}", "vid_name": name, "show_name": show})
                qa[key].append(rec)
                truth.setdefault("tvqa_answers", {})[str(qid)] = item.answer_idx
                qid += 1
    tree.write_targz(f"{TVQA}/tvqa_qa_release.tar.gz",
                     [(f"tvqa_qa_release/tvqa_{k}.jsonl", jsonl_bytes(qa[k])) for k in ("train", "val", "test_public")],
                     TVQA)
    tree.write_jsonl(f"{TVQA}/tvqa_test_release.jsonl", qa["test_public"] + qa["test_challenge"], TVQA)
    subs = []
    for split in SPLITS:
        for name, show, clip in videos[split]:
            subs.append({"vid_name": name, "sub": vt.subtitles(clip.duration, rng, vt.TV_LINES,
                                                               vt.TV_CHARACTERS[show])})
    tree.write_jsonl(f"{TVQA}/tv_subtitles.jsonl", subs, TVQA)
    tvqa_counts = {
        "train": {"records": len(qa["train"]), "videos": len(videos["train"])},
        "val": {"records": len(qa["val"]), "videos": len(videos["val"])},
        "test_public": {"records": len(qa["test_public"]), "videos": n_public},
        "test_challenge": {"records": len(qa["test_challenge"]), "videos": len(videos["test"]) - n_public},
    }
    tvqa_extras = {"test_release_records": len(qa["test_public"]) + len(qa["test_challenge"]),
                   "subtitles": len(subs)}

    return tvqa_counts, tvqa_extras


def _write_tvc(tree: OutputTree, cfg: ScaleConfig, rng: random.Random, videos: Videos) -> dict[str, dict[str, int]]:
    """TVC moments with their descriptions (none on test), one JSON-lines file per split."""
    n_descs = {"train": 2, "val": 4, "test": 0}
    clip_id, desc_id = 0, 0
    tvc_counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        records = []
        for name, _show, clip in videos[split]:
            for _ in range(cfg.tvc_moments_per_video):
                s, e = vt.window(clip.duration, rng)
                rec = {"vid_name": name, "duration": round(clip.duration, 2), "ts": [s, e], "clip_id": clip_id}
                clip_id += 1
                if n_descs[split]:
                    descs = []
                    for k in range(n_descs[split]):
                        descs.append({"desc": vt.description(clip, rng), "type": rng.choice(("v", "v", "vt")),
                                      "from_retrieval": k == 0, "desc_id": desc_id})
                        desc_id += 1
                    rec["descs"] = descs
                records.append(rec)
        tree.write_jsonl(f"{TVC}/tvc_{split}_release.jsonl", records, TVC)
        tvc_counts[split] = {"records": len(records), "descs": sum(len(r.get("descs", [])) for r in records)}
    return tvc_counts


def write(tree: OutputTree, cfg: ScaleConfig, seed: int, truth: dict) -> dict[str, Report]:
    """Write TVQA and TVC; returns ``{"tvqa": (counts, extras), "tvc": (counts, extras)}``."""
    rng = stream(seed, "tv")
    videos = _write_videos(tree, cfg, rng)
    tvqa_counts, tvqa_extras = _write_tvqa(tree, cfg, rng, videos, truth)
    tvc_counts = _write_tvc(tree, cfg, rng, videos)
    truth[TVQA] = {name: {**clip.to_dict(), "split": split, "show_name": show}
                   for split in SPLITS for name, show, clip in videos[split]}
    return {TVQA: (tvqa_counts, tvqa_extras), TVC: (tvc_counts, {})}
