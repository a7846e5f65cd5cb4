"""Feature store: concurrent readers in DataLoader worker processes (fork; maps reopened per process)."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .test_store_support import VIDEO_SPEC, extract, write_media

from features.store import FeatureStore


class FeatureDataset(Dataset):
    def __init__(self, reader, ids):
        self.reader, self.ids = reader, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        m = self.ids[i]
        arr = self.reader.get(m)
        # the pid this reader's maps belong to: must be the worker's own after the fork
        return m, torch.from_numpy(np.array(arr)), os.getpid(), self.reader._maps_pid


def test_dataloader_workers_read_the_same_bytes(tmp_path):
    media = tmp_path / "media"
    write_media(media, [f"img{i:02d}" for i in range(24)])
    extract(tmp_path / "store", media, flush_rows=5)
    reader = FeatureStore.open_reader(tmp_path / "store")
    ids = reader.media_ids
    direct = {m: reader.get(m).tobytes() for m in ids}  # maps opened in the parent before forking
    assert reader._maps_pid == os.getpid()
    loader = DataLoader(FeatureDataset(reader, ids), batch_size=5, shuffle=True, num_workers=2,
                        multiprocessing_context="fork", generator=torch.Generator().manual_seed(0))
    seen, pids = [], set()
    for names, feats, worker_pids, map_pids in loader:
        assert feats.shape[1:] == (49, 64) and feats.dtype == torch.float16
        for m, f in zip(names, feats):
            assert f.numpy().tobytes() == direct[m]
        assert worker_pids.tolist() == map_pids.tolist()  # each worker reopened its own maps
        pids |= set(worker_pids.tolist())
        seen += list(names)
    assert sorted(seen) == ids
    assert len(pids) == 2 and os.getpid() not in pids
    assert reader._maps_pid == os.getpid()  # the parent's reader is untouched


def test_dataloader_ragged_videos(tmp_path):
    media = tmp_path / "media"
    write_media(media, [f"vid{i}" for i in range(10)], ext=".mp4")
    extract(tmp_path / "store", media, VIDEO_SPEC, flush_rows=3)
    reader = FeatureStore.open_reader(tmp_path / "store")
    ds = FeatureDataset(reader, reader.media_ids)
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork",
                        collate_fn=lambda rows: rows)
    got = {m: f for batch in loader for (m, f, _pid, _mp) in batch}
    assert got.keys() == set(reader.media_ids)
    for m, f in got.items():
        assert f.shape[1] == 512 and f.numpy().tobytes() == reader.get(m).tobytes()
