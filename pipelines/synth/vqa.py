"""VQA v2 questions and annotations about the synthetic COCO images, plus the answer vocabulary.

Layout (visualqa.org / LXMERT): ``vqa/v2_Questions_{Train,Val}_mscoco.zip`` ->
``v2_OpenEnded_mscoco_{train,val}2014_questions.json``; ``vqa/v2_Annotations_{Train,Val}_mscoco.zip`` ->
``v2_mscoco_{train,val}2014_annotations.json``; ``trainval_ans2label.json`` / ``trainval_label2ans.json``
(LXMERT's vocabulary format: index 0 is the empty string, files indented by 4).
question_id = image_id * 1000 + k, ten annotator answers per question with noise so soft scores vary.
"""

from __future__ import annotations

from collections import Counter

from pipelines.synth import language
from pipelines.synth.coco import CocoImage
from pipelines.synth.manifest import Report
from pipelines.synth.rng import stream
from pipelines.synth.writers import OutputTree, json_bytes

SOURCE = "vqa"
INFO = {"description": "This is v2.0 of the VQA dataset (vlpet synthetic).", "url": "http://visualqa.org",
        "version": "2.0", "year": 2017, "contributor": "VQA Team", "date_created": "2017-04-26 17:07:13"}
LICENSE = {"url": "http://creativecommons.org/licenses/by/4.0/",
           "name": "Creative Commons Attribution 4.0 International License"}
VOCAB_MIN_COUNT = 3  # LXMERT keeps answers seen >= 9 times in the full data; scaled down here
_DIGITS = {w: str(n) for n, w in language.NUMBER_WORDS.items()}


def _normalize(answer: str) -> str:
    """The part of the VQA answer normaliser that matters for these answers: number words -> digits,
    articles dropped (so "three" and "3" are one vocabulary entry, as in LXMERT's vocabulary)."""
    words = [_DIGITS.get(w, w) for w in answer.lower().split() if w not in ("a", "an", "the")]
    return " ".join(words)


def write(tree: OutputTree, images: list[CocoImage], per_image: int, seed: int,
          truth: dict) -> Report:
    rng = stream(seed, SOURCE)
    counts: dict[str, dict[str, int]] = {}
    all_answers: Counter[str] = Counter()
    majority: set[str] = set()
    truth_q: dict[str, dict] = {}
    for subset, tag in (("train2014", "Train"), ("val2014", "Val")):
        questions, annotations = [], []
        imgs = sorted((im for im in images if im.subset == subset), key=lambda im: im.image_id)
        for im in imgs:
            for k, item in enumerate(language.vqa_questions(im.scene, rng, per_image)):
                qid = im.image_id * 1000 + k
                answers = language.annotator_answers(item, rng)
                tally = Counter(a["answer"] for a in answers)
                mc = max(tally, key=lambda ans: (tally[ans], ans == item.answer))
                all_answers.update(tally)
                majority.add(mc)
                questions.append({"image_id": im.image_id, "question": item.question, "question_id": qid})
                annotations.append({"question_type": item.question_type, "multiple_choice_answer": mc,
                                    "answers": answers, "image_id": im.image_id, "answer_type": item.answer_type,
                                    "question_id": qid})
                truth_q[str(qid)] = {"img_id": im.img_id, "family": item.family, "answer": item.answer,
                                     "target": item.target.kind if item.target else None}
        qfile = {"info": INFO, "task_type": "Open-Ended", "data_type": "mscoco", "license": LICENSE,
                 "data_subtype": subset, "questions": questions}
        afile = {"info": INFO, "license": LICENSE, "data_subtype": subset, "annotations": annotations,
                 "data_type": "mscoco"}
        tree.write_zip(f"{SOURCE}/v2_Questions_{tag}_mscoco.zip",
                       [(f"v2_OpenEnded_mscoco_{subset}_questions.json", json_bytes(qfile))], SOURCE,
                       dir_entries=False)
        tree.write_zip(f"{SOURCE}/v2_Annotations_{tag}_mscoco.zip",
                       [(f"v2_mscoco_{subset}_annotations.json", json_bytes(afile))], SOURCE, dir_entries=False)
        counts[subset] = {"records": len(questions), "images_used": len(imgs)}
    frequent: Counter[str] = Counter()
    for ans, c in all_answers.items():
        frequent[_normalize(ans)] += c
    vocab = sorted({_normalize(a) for a in majority} | {a for a, c in frequent.items() if c >= VOCAB_MIN_COUNT})
    label2ans = ["", *(a for a in vocab if a)]
    tree.write_json(f"{SOURCE}/trainval_ans2label.json", {a: i for i, a in enumerate(label2ans)}, SOURCE, indent=4)
    tree.write_json(f"{SOURCE}/trainval_label2ans.json", label2ans, SOURCE, indent=4)
    truth[SOURCE] = truth_q
    return counts, {"vocabulary": len(label2ans)}
