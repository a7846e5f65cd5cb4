"""`vlpet params` reproduces the paper's trainable-parameter percentages (docs/method.md §3, Table 2, Table 9)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from vlpet.config import TRANSFER_METHODS
from vlpet.params import method_param_counts

# Paper Table 2 (BART-base and T5-base, P%) and Table 9 (BART transfer designs).
PAPER_BART = {"vl-pet-large": 4.16, "vl-pet-middlex": 2.98, "vl-pet-middley": 2.98, "vl-pet-small": 2.98,
              "vl-adapter": 4.18, "lora": 5.93, "bitfit": 1.21, "compacter": 2.70, "prompt-tuning": 2.00,
              "full": 100.0}
PAPER_T5_VLPET = {"vl-pet-large": 7.31, "vl-pet-middlex": 4.50, "vl-pet-middley": 4.50, "vl-pet-small": 4.51}
PAPER_TABLE9 = {"compacter+g-small+lw": 2.08, "compacter+g-middlex+lw": 2.07, "compacter+g-middley+lw": 2.07,
                "compacter+g-large+lw": 3.28, "vl-adapter+g-small+lw": 2.98, "vl-adapter+g-middlex+lw": 2.98,
                "vl-adapter+g-middley+lw": 2.98, "vl-adapter+g-large+lw": 4.16}
# docs/method.md §3: the analytic recomputation of the exact numerators and denominators.
SPEC_EXACT = {("bart-base", "vl-pet-large"): (6_052_416, 145_606_464),
              ("bart-base", "vl-pet-middlex"): (4_281_804, 143_835_852),
              ("bart-base", "vl-pet-middley"): (4_281_792, 143_835_840),
              ("bart-base", "vl-pet-small"): (4_291_020, 143_845_068),
              ("t5-base", "vl-pet-large"): (17_582_208, 240_521_856),
              ("t5-base", "vl-pet-middlex"): (10_499_736, 233_439_384),
              ("t5-base", "vl-pet-small"): (10_518_168, 233_457_816)}


@pytest.fixture(scope="module")
def cli_rows():
    runner = CliRunner()
    rows = {}
    for backbone in ("bart-base", "t5-base"):
        result = runner.invoke(app, ["params", "--backbone", backbone, "--json"])
        assert result.exit_code == 0, result.output
        for row in json.loads(result.output):
            assert set(row) == {"backbone", "method", "trainable", "total", "percent"}
            rows[(row["backbone"], row["method"])] = row
    return rows


def test_cli_lists_every_required_method(cli_rows):
    for backbone in ("bart-base", "t5-base"):
        assert {m for (b, m) in cli_rows if b == backbone} == set(PAPER_BART)


@pytest.mark.parametrize("method,percent", sorted(PAPER_BART.items()))
def test_bart_percentages_match_paper(cli_rows, method, percent):
    assert cli_rows[("bart-base", method)]["percent"] == percent


@pytest.mark.parametrize("method,percent", sorted(PAPER_T5_VLPET.items()))
def test_t5_vlpet_percentages_match_paper(cli_rows, method, percent):
    assert cli_rows[("t5-base", method)]["percent"] == percent


@pytest.mark.parametrize("key,exact", sorted(SPEC_EXACT.items()))
def test_exact_counts_match_spec(cli_rows, key, exact):
    row = cli_rows[key]
    assert (row["trainable"], row["total"]) == exact


def test_bart_backbone_size_matches_public_model(cli_rows):
    # full FT total = bart-base 139,420,416 + 200 new vocab rows * 768 + visual projector 1,582,848.
    assert cli_rows[("bart-base", "full")]["total"] == 139_420_416 + 200 * 768 + 1_582_848
    # t5-base 222,903,552 with the vocab resized 32128 -> 32200, + RMS-norm visual projector 1,581,312.
    assert cli_rows[("t5-base", "full")]["total"] == 222_903_552 + 72 * 768 + 1_581_312


def test_table9_transfer_designs():
    counts = {c.method: round(c.percent, 2) for c in method_param_counts("bart-base", TRANSFER_METHODS)}
    assert counts == PAPER_TABLE9


def test_unknown_backbone_is_a_clear_cli_error():
    result = CliRunner().invoke(app, ["params", "--backbone", "gpt-7"])
    assert result.exit_code != 0
    assert "unknown backbone 'gpt-7'" in result.output


def test_t5_bias_methods_count_the_relative_attention_tables(cli_rows):
    # Upstream trains every parameter whose name contains "bias": on T5 the visual projector (1,581,312, above)
    # plus the encoder's and decoder's relative_attention_bias tables, 2 x 32 buckets x 12 heads = 768.
    projector, tables = 1_581_312, 2 * 32 * 12
    assert cli_rows[("t5-base", "bitfit")]["trainable"] == projector + tables
    # LoRA rank 128 on q and v of 36 attentions (12 encoder self, 12 decoder self, 12 cross): 72 x 2 x 128 x 768.
    assert cli_rows[("t5-base", "lora")]["trainable"] == 72 * 2 * 128 * 768 + projector + tables
    # the shown percentages keep two decimals: 0.70 and 6.59
    assert (cli_rows[("t5-base", "bitfit")]["percent"], cli_rows[("t5-base", "lora")]["percent"]) == (0.70, 6.59)
