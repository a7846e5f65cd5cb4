"""GQA balanced questions and images.

Layout (downloads.cs.stanford.edu/nlp/data/gqa): ``gqa/questions1.2.zip`` with
``{train,val,testdev}_balanced_questions.json`` at its root (a dict keyed by question id, fields as
upstream: semantic program, entailed/equivalent, groups, types, annotations, fullAnswer, ...);
``gqa/images.zip`` with ``images/<imageId>.jpg`` (train/val ids are numeric Visual Genome ids,
testdev ids look like ``n123456``); LXMERT's ``trainval_ans2label.json`` / ``trainval_label2ans.json``
(answers of train+val, no empty-string entry, indented by 4 like the originals).
"""

from __future__ import annotations

from pipelines.synth import language
from pipelines.synth.config import ScaleConfig
from pipelines.synth.language import GQAItem
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream, unique_ints
from pipelines.synth.scenes import Scene, jpeg_bytes, random_scene, render_scene
from pipelines.synth.writers import OutputTree, json_bytes

SOURCE = "gqa"
SPLITS = ("train", "val", "testdev")


def _semantic_str(ops: list[dict]) -> str:
    parts = []
    for op in ops:
        dep = f" [{', '.join(map(str, op['dependencies']))}]" if op["dependencies"] else ""
        parts.append(f"{op['operation']}: {op['argument']}{dep}")
    return "->".join(parts)


def _token_index(text: str, word: str) -> str | None:
    tokens = [t.strip("?.,").lower() for t in text.split()]
    return str(tokens.index(word)) if word in tokens else None


def _record(item: GQAItem, image_id: str, qid: str, obj_ids: dict[int, str]) -> dict:
    ids = [obj_ids[id(s)] for s in item.objects]
    ops = [{"operation": op, "dependencies": deps, "argument": arg.format(*ids) if ids else arg}
           for op, deps, arg in item.program]
    q_ann, fa_ann, a_ann = {}, {}, {}
    for shape, oid in zip(item.objects, ids, strict=True):
        if (i := _token_index(item.question, shape.kind)) is not None:
            q_ann[i] = oid
        if (i := _token_index(item.full_answer, shape.kind)) is not None:
            fa_ann[i] = oid
        if item.answer == shape.kind:
            a_ann["0"] = oid
    return {
        "semantic": ops,
        "entailed": [],
        "equivalent": [qid],
        "question": item.question,
        "imageId": image_id,
        "isBalanced": True,
        "groups": {"global": item.global_group, "local": item.local_group},
        "answer": item.answer,
        "semanticStr": _semantic_str(ops),
        "annotations": {"answer": a_ann, "question": q_ann, "fullAnswer": fa_ann},
        "types": {"detailed": item.detailed, "semantic": item.semantic_type, "structural": item.structural},
        "fullAnswer": item.full_answer,
    }


def write(tree: OutputTree, cfg: ScaleConfig, seed: int, truth: dict) -> Report:
    rng = stream(seed, SOURCE)
    w, h = cfg.image_size
    taken_q: set[int] = set()
    taken_obj: set[int] = set()
    n_vg = cfg.gqa_images["train"] + cfg.gqa_images["val"]
    vg_ids = [str(i) for i in unique_ints(rng, n_vg, 1, 2_420_000)]
    n_ids = [f"n{i}" for i in unique_ints(rng, cfg.gqa_images["testdev"], 100_000, 1_000_000)]
    split_ids = {"train": vg_ids[: cfg.gqa_images["train"]], "val": vg_ids[cfg.gqa_images["train"]:],
                 "testdev": n_ids}
    counts: dict[str, dict[str, int]] = {}
    q_members: list[tuple[str, bytes]] = []
    images: list[tuple[str, bytes]] = []
    scenes: dict[str, Scene] = {}
    answers: set[str] = set()
    truth_q: dict[str, dict] = {}
    for split in SPLITS:
        questions: dict[str, dict] = {}
        for image_id in split_ids[split]:
            scene = random_scene(rng, w, h)
            scenes[image_id] = scene
            obj_ids = {id(s): str(o) for s, o in
                       zip(scene.shapes, unique_ints(rng, len(scene.shapes), 100_000, 4_000_000, taken_obj),
                           strict=True)}
            for item in language.gqa_questions(scene, rng, cfg.gqa_questions_per_image):
                qid = f"{unique_ints(rng, 1, 0, 100_000_000, taken_q)[0]:08d}"
                questions[qid] = _record(item, image_id, qid, obj_ids)
                truth_q[qid] = {"imageId": image_id, "family": item.family, "answer": item.answer}
                if split != "testdev":
                    answers.add(item.answer)
            images.append((f"images/{image_id}.jpg", jpeg_bytes(render_scene(scene))))
        q_members.append((f"{split}_balanced_questions.json", json_bytes(questions)))
        counts[split] = {"records": len(questions), "images": len(split_ids[split])}
    tree.write_zip(f"{SOURCE}/questions1.2.zip", sorted(q_members), SOURCE)
    tree.write_zip(f"{SOURCE}/images.zip", sorted(images), SOURCE, compress=False)
    label2ans = sorted(answers)
    tree.write_json(f"{SOURCE}/trainval_ans2label.json", {a: i for i, a in enumerate(label2ans)}, SOURCE, indent=4)
    tree.write_json(f"{SOURCE}/trainval_label2ans.json", label2ans, SOURCE, indent=4)
    truth[SOURCE] = {"images": {k: v.to_dict() for k, v in scenes.items()}, "questions": truth_q}
    return counts, {"vocabulary": len(label2ans)}
