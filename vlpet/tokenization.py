"""Tokenizers with the VL-T5 special tokens (docs/method.md §4).

Both families get 100 ``<extra_id_i>`` and 100 ``<vis_extra_id_i>`` tokens appended in descending order,
so ``<vis_extra_id_k>`` has id ``len(tokenizer) - 1 - k``: the visual embedding reads that word-embedding
row as the (frozen) object-order embedding of visual token k. T5's tokenizer already has the extra ids;
BART's does not. Resized vocab: BART 50265 + 200 = 50465, T5 32100 + 100 = 32200.

When the pretrained tokenizer is not on disk, ``train_tokenizer`` trains a byte-level BPE on the
project's own text with ``tokenizers`` and the family's special-token layout; it is saved with the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedTokenizerFast

from vlpet.config import Family

N_EXTRA_IDS = 100
N_VIS_EXTRA_IDS = 100


def extra_id_tokens(n: int = N_EXTRA_IDS) -> list[str]:
    return [f"<extra_id_{i}>" for i in range(n - 1, -1, -1)]


def vis_extra_id_tokens(n: int = N_VIS_EXTRA_IDS) -> list[str]:
    return [f"<vis_extra_id_{i}>" for i in range(n - 1, -1, -1)]


def add_vl_special_tokens(tokenizer: Any) -> Any:
    """Append the missing ``<extra_id_i>`` / ``<vis_extra_id_i>`` tokens (descending) in place."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in extra_id_tokens() + vis_extra_id_tokens() if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer


def vl_vocab_size(family: Family, base_vocab: int | None = None) -> int:
    """Vocab size after adding the VL special tokens to the public tokenizers (no tokenizer needed)."""
    if family == "bart":
        return (base_vocab or 50265) + N_EXTRA_IDS + N_VIS_EXTRA_IDS
    # T5: 32000 sentencepiece + 100 extra ids (already there) + 100 vis extra ids.
    return (base_vocab or 32100) + N_VIS_EXTRA_IDS


def train_tokenizer(texts: Iterable[str], family: Family, vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` with the family's special tokens and VL extra ids.

    BART layout: <s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>; inputs are ``<s> x </s>``.
    T5 layout: <pad>=0 </s>=1 <unk>=2 ...; inputs are ``x </s>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if family == "bart":
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
    else:
        specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if family == "bart":
        tok.add_special_tokens(["<mask>"])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                       unk_token="<unk>", mask_token="<mask>")
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    return add_vl_special_tokens(fast)


def vis_extra_id(tokenizer_len: int, k: int) -> int:
    """Token id of ``<vis_extra_id_k>`` (the object-order embedding row of visual token k)."""
    return tokenizer_len - 1 - k
