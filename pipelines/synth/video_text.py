"""Text about clips: multiple-choice questions, motion captions and subtitle lines.

Questions are answerable from the frames (direction, colour or kind of the shape moving a given
way, number of shapes); distractors come from the same answer family so the choice cannot be made
from the answer text alone. Subtitles are neutral chatter with start/end times: they exercise the
``[Subs]`` input path without giving the answers away, so the visual features have to carry them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipelines.synth.scenes import COLORS
from pipelines.synth.video import Clip, MovingShape

DIRECTION_ANSWER = {"right": "To the right.", "left": "To the left.", "up": "Upward.", "down": "Downward.",
                    "none": "It does not move."}
DIRECTION_PHRASE = {"right": "to the right", "left": "to the left", "up": "upward", "down": "downward",
                    "none": "nowhere"}
MOTION = {"right": "moves from left to right", "left": "moves from right to left",
          "up": "moves from the bottom to the top", "down": "moves from the top to the bottom",
          "none": "stays still"}
PLACE_ANSWERS = {"left": "On the left side.", "right": "On the right side.", "up": "At the top.",
                 "down": "At the bottom.", "middle": "In the middle."}
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
SHAPE_ANSWERS = ["The circle.", "The square.", "The triangle.", "The star.", "The hexagon."]
COUNT_ANSWERS = ["None.", "One.", "Two.", "Three.", "Four.", "Five."]


@dataclass(frozen=True)
class ChoiceQuestion:
    question: str
    choices: tuple[str, ...]
    answer_idx: int
    family: str


def _mc(rng: random.Random, question: str, correct: str, pool: list[str], n_choices: int,
        family: str) -> ChoiceQuestion:
    distractors = rng.sample([p for p in pool if p != correct], n_choices - 1)
    choices = [correct, *distractors]
    rng.shuffle(choices)
    return ChoiceQuestion(question, tuple(choices), choices.index(correct), family)


def questions(clip: Clip, rng: random.Random, n: int, n_choices: int) -> list[ChoiceQuestion]:
    """Up to ``n`` distinct questions, one family at a time in random order."""
    fam: dict[str, list[ChoiceQuestion]] = {"direction": [], "color": [], "shape": [], "count": [], "place": []}
    colors = [c.capitalize() + "." for c in COLORS]
    for s in clip.shapes:
        fam["direction"].append(_mc(rng, f"Which direction does the {s.color} {s.kind} move?",
                                    DIRECTION_ANSWER[s.direction], list(DIRECTION_ANSWER.values()), n_choices,
                                    "direction"))
        if s.direction != "none":
            places = list(PLACE_ANSWERS.values())
            fam["place"].append(_mc(rng, f"Where is the {s.color} {s.kind} at the end of the video?",
                                    PLACE_ANSWERS[s.direction], places, n_choices, "place"))
            fam["place"].append(_mc(rng, f"Where does the {s.color} {s.kind} start?",
                                    PLACE_ANSWERS[_OPPOSITE[s.direction]], places, n_choices, "place"))
        if s.direction != "none" and len(clip.movers(s.direction)) == 1:
            phrase = DIRECTION_PHRASE[s.direction]
            fam["color"].append(_mc(rng, f"What color is the shape that moves {phrase}?",
                                    s.color.capitalize() + ".", colors, n_choices, "color"))
            fam["shape"].append(_mc(rng, f"Which shape moves {phrase}?", f"The {s.kind}.", SHAPE_ANSWERS,
                                    n_choices, "shape"))
        elif s.direction == "none" and len(clip.shapes) == 1:
            fam["color"].append(_mc(rng, f"What color is the {s.kind}?", s.color.capitalize() + ".", colors,
                                    n_choices, "color"))
    fam["count"].append(_mc(rng, "How many shapes are in the video?", COUNT_ANSWERS[len(clip.shapes)],
                            COUNT_ANSWERS, n_choices, "count"))
    order = [f for f in fam if fam[f]]
    rng.shuffle(order)
    out: list[ChoiceQuestion] = []
    while len(out) < n and any(fam[f] for f in order):
        for f in order:
            if fam[f] and len(out) < n:
                out.append(fam[f].pop(rng.randrange(len(fam[f]))))
    return out


def _an(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _clause(s: MovingShape, article: str = "the") -> str:
    if article == "a":
        article = _an(s.color)
    return f"{article} {s.color} {s.kind} {MOTION[s.direction]}"


def description(clip: Clip, rng: random.Random) -> str:
    """A TVC-style sentence describing the motion (capitalised, with a period)."""
    s = list(clip.shapes)
    rng.shuffle(s)
    if len(s) == 1:
        x = s[0]
        text = rng.choice([
            _clause(x, "the"), _clause(x, "a"),
            f"{_an(x.color)} {x.color} {x.kind} slides {DIRECTION_PHRASE[x.direction]} across the screen"
            if x.direction != "none" else f"{_an(x.color)} {x.color} {x.kind} sits still on the screen",
            f"the {x.kind}, which is {x.color}, {MOTION[x.direction]}",
        ])
    else:
        x, y = s
        text = rng.choice([
            f"{_clause(x)} while {_clause(y)}",
            f"{_clause(x, 'a')} and {_clause(y, 'a')}",
            f"as {_clause(x)}, {_clause(y)}",
        ])
    return text[0].upper() + text[1:] + "."


def instruction(clip: Clip, rng: random.Random) -> str:
    """A YouCook2-style imperative caption (lower case, no final period)."""
    parts = []
    for s in clip.shapes:
        if s.direction == "none":
            parts.append(f"keep the {s.color} {s.kind} still")
        else:
            verb = rng.choice(("move", "slide", "push"))
            parts.append(f"{verb} the {s.color} {s.kind} {DIRECTION_PHRASE[s.direction]}")
    return " and ".join(parts)


TV_CHARACTERS = {
    "The Big Bang Theory": ["Sheldon", "Leonard", "Penny", "Howard", "Raj"],
    "Castle": ["Castle", "Beckett", "Ryan", "Esposito"],
    "Friends": ["Ross", "Rachel", "Monica", "Chandler", "Joey", "Phoebe"],
    "Grey's Anatomy": ["Meredith", "Cristina", "Derek", "Bailey"],
    "House M.D.": ["House", "Wilson", "Cuddy", "Chase", "Foreman"],
    "How I Met You Mother": ["Ted", "Barney", "Robin", "Marshall", "Lily"],
}
TV_LINES = ["Did you see that?", "Hold on a second.", "That's all this is?", "Okay, let's try that again.",
            "I don't know what you're talking about.", "Watch this.", "Where are you going?", "I told you so.",
            "Can we talk about this later?", "It's not what it looks like.", "What just happened?",
            "Give me a minute.", "You're kidding, right?", "I need some coffee."]
HOW2_LINES = ["hi i'm going to show you how to do this", "so what we're going to do now is line everything up",
              "you want to make sure it's nice and even", "first let me show you the tools",
              "just take your time with this part", "and that's really all there is to it",
              "now we're going to go ahead and finish up", "there you go"]
YC2_LINES = ["now we're going to add the sauce", "let it cook for a few minutes", "stir everything together",
             "season with a little salt and pepper", "that looks about right", "now put it on the plate",
             "add a bit of oil to the pan", "and we're done"]


def subtitles(duration: float, rng: random.Random, lines: list[str], speakers: list[str] | None = None) -> list[dict]:
    """1-6 lines spread over the clip, ``{"text", "start", "end"}`` with times in seconds (3 decimals)."""
    k = max(1, min(6, round(duration / 2.5)))
    out = []
    for i in range(k):
        start = duration * i / k + rng.uniform(0, 0.2) * duration / k
        end = min(duration, start + duration / k * rng.uniform(0.5, 0.8))
        text = rng.choice(lines)
        if speakers:
            text = f" {rng.choice(speakers)} : {text}"
        out.append({"text": text, "start": round(start, 3), "end": round(max(end, start + 0.001), 3)})
    return out


def fmt_time(x: float) -> str:
    """A time as upstream writes it in ``ts`` strings: up to 2 decimals, no trailing zeros ("20.16", "0")."""
    s = f"{round(x, 2):.2f}".rstrip("0").rstrip(".")
    return s or "0"


def window(duration: float, rng: random.Random) -> tuple[float, float]:
    """A moment [start, end] inside the clip covering 30-90 % of it (rounded to 2 decimals)."""
    length = duration * rng.uniform(0.3, 0.9)
    start = rng.uniform(0, duration - length)
    s, e = round(start, 2), round(start + length, 2)
    if s == 0:
        s = 0
    return s, min(e, round(duration, 2))
