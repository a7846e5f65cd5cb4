"""How2 clips and the VALUE How2QA release.

Layout: ``how2qa/how2qa_{train,val,test_public}_release.jsonl`` (4 choices; test_public without
``answer_idx``, as it is scored by the server), ``how2qa/how2_subtitles.jsonl``,
``how2qa/how2_vid_mapping.json`` (VALUE's numeric vid_name -> ``<YouTubeID>_<start>_<end>``) and
the clips ``how2qa/videos/<YouTubeID>_<start>_<end>.mp4`` (named as the mapping says, which is how
raw How2 videos are found). Durations are whole seconds so the mapped names are exact. Edge case:
the second train clip lasts 1 s.
"""

from __future__ import annotations

from pipelines.synth import video_text as vt
from pipelines.synth.config import ScaleConfig
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream, unique_ints, youtube_id
from pipelines.synth.video import random_clip, write_mp4
from pipelines.synth.writers import OutputTree

SOURCE = "how2qa"
FPS = 12
SPLITS = ("train", "val", "test_public")


def write(tree: OutputTree, cfg: ScaleConfig, seed: int, truth: dict) -> Report:
    rng = stream(seed, SOURCE)
    w, h = cfg.video_size
    n_total = sum(cfg.how2_videos[s] for s in SPLITS)
    vids = [str(v) for v in unique_ints(rng, n_total, 0, 45_000)]
    qids = iter(unique_ints(rng, n_total * cfg.how2qa_questions_per_video, 0, 45_000))
    mapping: dict[str, str] = {}
    subs: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    truth_v: dict[str, dict] = {}
    i = 0
    lo, hi = (max(2, round(x)) for x in cfg.video_seconds)
    for split in SPLITS:
        records = []
        for j in range(cfg.how2_videos[split]):
            vid = vids[i]
            i += 1
            seconds = 1 if (split == "train" and j == 1) else rng.randint(lo, hi)
            start = 60 * rng.randrange(5)
            raw_name = f"{youtube_id(rng)}_{start}_{start + seconds}"
            mapping[vid] = raw_name
            clip = random_clip(rng, w, h, FPS, seconds * FPS)
            rel = f"{SOURCE}/videos/{raw_name}.mp4"
            write_mp4(tree.path(rel), clip)
            tree.record(rel, SOURCE)
            truth_v[vid] = {**clip.to_dict(), "split": split, "raw_name": raw_name}
            for item in vt.questions(clip, rng, cfg.how2qa_questions_per_video, n_choices=4):
                s, e = vt.window(clip.duration, rng)
                rec = {"vid_name": vid, "ts": f"{vt.fmt_time(s)}-{vt.fmt_time(e)}", "qid": next(qids),
                       "q": item.question, **{f"a{k}": c for k, c in enumerate(item.choices)}}
                if split != "test_public":
                    rec["answer_idx"] = item.answer_idx
                truth.setdefault("how2qa_answers", {})[str(rec["qid"])] = item.answer_idx
                records.append(rec)
            subs.append({"vid_name": vid, "sub": vt.subtitles(clip.duration, rng, vt.HOW2_LINES)})
        tree.write_jsonl(f"{SOURCE}/how2qa_{split}_release.jsonl", records, SOURCE)
        counts[split] = {"records": len(records), "videos": cfg.how2_videos[split]}
    tree.write_jsonl(f"{SOURCE}/how2_subtitles.jsonl", subs, SOURCE)
    tree.write_json(f"{SOURCE}/how2_vid_mapping.json", dict(sorted(mapping.items(), key=lambda kv: int(kv[0]))),
                    SOURCE)
    truth[SOURCE] = truth_v
    return counts, {"subtitles": len(subs), "vid_mapping": len(mapping)}
