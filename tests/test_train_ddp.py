"""``torchrun`` DDP on the CPU (gloo): two ranks train on different shards and end with identical weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys, warnings
    warnings.simplefilter("ignore")
    sys.path.insert(0, {root!r})
    import torch
    from tests.conftest import TEXTS
    from tests.test_train_loop import _batches, _cfg, _model
    from vlpet.tokenization import train_tokenizer
    from vlpet.train import ListBatchSource, Trainer, dist_from_env, resolve_device
    from vlpet.train.distributed import destroy, init_process_group
    info = dist_from_env()
    dev = resolve_device("cpu", info.local_rank)
    init_process_group(info, dev)
    tok = train_tokenizer(TEXTS * 10, "bart", vocab_size=300)
    model = _model(tok)
    batches = _batches(tok, n_batches=3, seed=info.rank + 1)  # each rank its own shard
    result = Trainer(model, _cfg(epochs=1), ListBatchSource(batches), sys.argv[1], tokenizer=tok, dist_info=info,
                     device=dev, progress=False, tensorboard=False).fit()
    h = hashlib.sha256()
    for k, v in sorted(model.trainable_state_dict().items()):
        h.update(k.encode()); h.update(v.numpy().tobytes())
    with open(f"{{sys.argv[1]}}/rank{{info.rank}}.json", "w") as f:
        json.dump({{"hash": h.hexdigest(), "world": result.world_size, "steps": result.steps}}, f)
    destroy(info)
""")


@pytest.mark.slow
def test_torchrun_two_ranks_on_cpu(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(run)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["steps"] == r1["steps"] == 3
    assert r0["hash"] == r1["hash"]  # gradients were all-reduced: both ranks hold the same weights
    assert (run / "model" / "trainable.safetensors").is_file()
    ckpt = run / "checkpoints" / "step-0000003"
    assert (ckpt / "rng.json").is_file() and (ckpt / "rng-rank1.json").is_file()
