"""Feature-extraction benchmark: our engine vs the model alone vs the incumbent recipe, in one run.

Inputs are generated here: COCO-like JPEGs (640x480 and varied sizes, quality 90, smooth content with
shapes, as photos compress) and short H.264 mp4s. Figures (CPU fp32, all cores, RN101 random init;
weights do not change the cost):
- ``model_only_img_s``: the same extractor, batch and precision on pre-decoded, pre-resized tensors;
- ``pipeline_img_s``: the whole engine, JPEG files on disk to a committed store (model already built);
- ``baseline_img_s``: VL-Adapter's recipe re-implemented minimally (docs/data.md §3): PIL decode, one image
  per forward, one ``.h5`` per image (h5py);
- ``efficiency`` = pipeline / model_only (target >= 0.90 on the CPU), ``speedup_vs_baseline``;
- ``noop_over_cold``: an unchanged re-run over the cold run (target <= 0.02); ``add5_over_cold``: the
  re-run after adding 5% new images (target <= 0.10);
- video (clip-vit-b32-video, HERO sampling): frames/s, videos/s, and the share of time spent decoding;
- with ``--device-decode``: ``pipeline_device_decode_img_s``, the engine with batched ``decode_jpeg`` on the
  extractor's device (nvJPEG on a GPU), to decide where decoding should run.

Run: ``.venv/bin/python bench/extract.py [--images 96] [--videos 8]`` on an otherwise idle machine.
The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def make_jpegs(folder: Path, n: int, seed: int, start: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(start, start + n):
        w, h = (640, 480) if k % 3 else (int(rng.integers(480, 641)), int(rng.integers(360, 481)))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * rng.uniform(0.1, 0.4) + yy * rng.uniform(0.1, 0.4) + rng.uniform(0, 255)) % 255
                         for _ in range(3)], -1).astype(np.uint8)
        im = Image.fromarray(base)
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            box = [x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))]
            fill = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        path = folder / f"COCO_val2014_{k:012d}.jpg"
        im.save(path, quality=90)
        paths.append(path)
    return paths


def make_videos(folder: Path, n: int, seconds: float = 12.0, fps: int = 30) -> list[Path]:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    out_paths = []
    for k in range(n):
        path = folder / f"clip_{k:03d}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for f in range(int(seconds * fps)):
                img = np.zeros((240, 320, 3), np.uint8)
                img[:, :, k % 3] = 30 + 7 * k  # every video distinct (the store dedups equal bytes)
                x = int(f * 280 / (seconds * fps))
                y = 20 + (17 * k) % 160
                img[y:y + 40, x:x + 40] = (220, 40 + 20 * k % 200, 40)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        out_paths.append(path)
    return out_paths


def model_only(extractor, paths: list[Path], batch: int) -> float:
    tensors = [extractor.preprocess(extractor.decode(p), as_uint8=True) for p in paths]
    x = torch.cat(tensors)
    extractor.to_storage(extractor.forward(x[:batch]))  # warm-up
    t = time.perf_counter()
    for s in range(0, len(x), batch):
        extractor.to_storage(extractor.forward(x[s:s + batch]))
    return len(x) / (time.perf_counter() - t)


def baseline(extractor, paths: list[Path], out: Path) -> float:
    """The incumbent: PIL decode, one image per forward, one .h5 per image (as coco_CLIP.py)."""
    import h5py

    out.mkdir(parents=True, exist_ok=True)
    model = extractor.model
    device = next(model.parameters()).device  # the incumbent script moves each image to the model's device
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    t = time.perf_counter()
    for p in paths:
        im = Image.open(p).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
        x = (torch.from_numpy(np.asarray(im)).permute(2, 0, 1).unsqueeze(0).float() / 255 - mean) / std
        with torch.inference_mode():
            grid = model.visual.forward_intermediates(x.to(device), indices=1, stop_early=True,
                                                      intermediates_only=True)["image_intermediates"][-1]
        feats = grid.float().cpu().permute(0, 2, 3, 1).reshape(49, 2048).numpy().astype(np.float16)
        img_id = p.name.split(".")[0]
        with h5py.File(out / f"{img_id}.h5", "w") as f:
            f.create_group(img_id).create_dataset("features", data=feats)
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--device-decode", action="store_true",
                    help="also time the batched decode_jpeg path (nvJPEG on a GPU) into a separate store")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from features.engine import default_workers, extract
    from features.extractors import get_extractor

    torch.set_num_threads(os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        images = make_jpegs(tmp / "images", args.images, seed=0)
        ex = get_extractor("clip-rn101-grid", device=args.device, weights="random")
        _ = ex.model
        figures: dict[str, object] = {"images": args.images, "batch_size": args.batch_size,
                                      "workers": args.workers if args.workers is not None else default_workers(),
                                      "threads": torch.get_num_threads(), "device": args.device,
                                      "torch": torch.__version__}
        figures["model_only_img_s"] = round(model_only(ex, images, args.batch_size), 3)
        cold = extract(tmp / "images", tmp / "store", extractor=ex, batch_size=args.batch_size,
                       workers=args.workers, progress=False)
        figures["pipeline_img_s"] = round(args.images / cold.seconds, 3)
        if args.device_decode:
            dd = extract(tmp / "images", tmp / "store-dd", extractor=ex, batch_size=args.batch_size,
                         workers=args.workers, progress=False, device_decode=True)
            figures["pipeline_device_decode_img_s"] = round(args.images / dd.seconds, 3)
        figures["baseline_img_s"] = round(baseline(ex, images, tmp / "h5"), 3)
        figures["efficiency"] = round(figures["pipeline_img_s"] / figures["model_only_img_s"], 3)
        figures["speedup_vs_baseline"] = round(figures["pipeline_img_s"] / figures["baseline_img_s"], 3)
        fresh = get_extractor("clip-rn101-grid", device=args.device, weights="random")  # a new run: no model yet
        noop = extract(tmp / "images", tmp / "store", extractor=fresh, batch_size=args.batch_size,
                       workers=args.workers, progress=False)
        figures["cold_s"], figures["noop_s"] = cold.seconds, noop.seconds
        figures["noop_over_cold"] = round(noop.seconds / cold.seconds, 4)
        make_jpegs(tmp / "images", max(1, args.images // 20), seed=1, start=args.images)
        add5 = extract(tmp / "images", tmp / "store", extractor=ex, batch_size=args.batch_size,
                       workers=args.workers, progress=False)
        figures["add5_extracted"], figures["add5_s"] = add5.extracted, add5.seconds
        figures["add5_over_cold"] = round(add5.seconds / cold.seconds, 4)

        if args.videos:
            videos = make_videos(tmp / "videos", args.videos)
            vex = get_extractor("clip-vit-b32-video", device=args.device, weights="random")
            _ = vex.model
            t = time.perf_counter()
            decoded = [vex.preprocess(vex.decode(p), as_uint8=True) for p in videos]
            decode_s = time.perf_counter() - t
            vex.to_storage(vex.forward(decoded[0]))  # warm-up
            t = time.perf_counter()
            for x in decoded:
                vex.to_storage(vex.forward(x))
            model_s = time.perf_counter() - t
            frames = sum(int(x.shape[0]) for x in decoded)
            run = extract(tmp / "videos", tmp / "vstore", extractor=vex, workers=args.workers, progress=False)
            figures.update({"videos": args.videos, "video_frames": frames,
                            "video_pipeline_frames_s": round(frames / run.seconds, 3),
                            "video_pipeline_videos_s": round(args.videos / run.seconds, 3),
                            "video_model_only_frames_s": round(frames / model_s, 3),
                            "video_decode_share": round(decode_s / (decode_s + model_s), 3)})
        precision = "fp32" if args.device == "cpu" else "fp16 autocast (baseline fp32)"
        print(f"feature extraction benchmark ({args.device} {precision}, RN101/ViT-B-32 random init)")
        for k, v in figures.items():
            print(f"  {k:<28} {v}")
        print(json.dumps(figures))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
