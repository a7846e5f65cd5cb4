"""features.decode: image decoding to RGB, bad-media classification, HERO video sampling and decord/PyAV decoding."""

from __future__ import annotations

import io
import logging
import pickle
import struct
import warnings
import zlib
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageFile

from features import decode as D
from features.decode import (
    BadMediaError,
    decode_image,
    fast_decode_for_clip,
    ffmpeg_fps_indices,
    hero_frame_indices,
    hero_sampling_fps,
    read_video_frames,
    times_to_indices,
)

av = pytest.importorskip("av")


# ------------------------------------------------------------------------------------------------------- helpers

def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGB pixels and carries no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _reason(src, **kw) -> str:
    with pytest.raises(BadMediaError) as exc:
        decode_image(src, **kw)
    return exc.value.reason


def _encode_id_frame(i: int, w: int, h: int) -> np.ndarray:
    """A frame whose index is written as 8 black/white vertical bars (robust to H.264)."""
    a = np.zeros((h, w, 3), np.uint8)
    bar = w // 8
    for b in range(8):
        if (i >> b) & 1:
            a[:, b * bar:(b + 1) * bar] = 255
    return a


def _frame_ids(frames: np.ndarray) -> list[int]:
    bar = frames.shape[2] // 8
    return [int(sum(int(f[:, b * bar + 2:(b + 1) * bar - 2].mean() > 127) << b for b in range(8))) for f in frames]


def _make_video(path, n: int, fps: int, w: int = 64, h: int = 48, faststart: bool = False) -> str:
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(_encode_id_frame(i, w, h), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    v = {
        "10s": _make_video(d / "v10s.mp4", 100, 10),
        "short": _make_video(d / "short.mp4", 12, 10),      # 1.2 s
        "tiny": _make_video(d / "tiny.mp4", 5, 10),         # 0.5 s
        "one": _make_video(d / "one.mp4", 1, 10),
        "faststart": _make_video(d / "fs.mp4", 100, 10, faststart=True),
    }
    for key, cut in (("10s", "trunc"), ("faststart", "trunc_fs")):
        data = open(v[key], "rb").read()
        (d / f"{cut}.mp4").write_bytes(data[: len(data) // 2])
        v[cut] = str(d / f"{cut}.mp4")
    (d / "zero.mp4").write_bytes(b"")
    (d / "junk.mp4").write_bytes(b"this is not a video, just some text\n" * 50)
    buf = io.BytesIO()
    Image.fromarray(_noise(32, 32)).save(buf, "JPEG")
    (d / "image.mp4").write_bytes(buf.getvalue())
    v.update(zero=str(d / "zero.mp4"), junk=str(d / "junk.mp4"), image=str(d / "image.mp4"))
    return v


# -------------------------------------------------------------------------------------------------------- images

def test_rgb_jpeg_from_path_and_bytes(tmp_path):
    p = tmp_path / "a.jpg"
    Image.fromarray(_noise(30, 40)).save(p, quality=95)
    a = decode_image(p)
    b = decode_image(p.read_bytes())
    assert a.mode == "RGB" and a.size == (40, 30)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_missing_file_is_not_bad_media(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "nope.jpg")


def test_zero_byte_and_text_file_named_jpg(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("definitely not an image\n")
    assert _reason(tmp_path / "zero.jpg") == "empty"
    assert _reason(tmp_path / "text.jpg") == "not-image"


def test_truncated_jpeg_is_an_error_unless_tolerated(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(_noise(300, 400)).save(p, quality=90)
    data = p.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "cut.jpg") == "truncated"
    im = decode_image(tmp_path / "cut.jpg", allow_truncated=True)
    assert im.size == (400, 300)
    # identical to PIL's global LOAD_TRUNCATED_IMAGES behaviour (the incumbent script's), without touching it
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        ref = Image.open(tmp_path / "cut.jpg").convert("RGB")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert np.array_equal(np.asarray(im), np.asarray(ref))


def test_truncated_and_corrupt_png(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(_noise(100, 120)).save(p)
    data = p.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "cut.png") == "truncated"
    assert decode_image(tmp_path / "cut.png", allow_truncated=True).size == (120, 100)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # restored
    broken = bytearray(data)
    mid = len(broken) // 2
    broken[mid:mid + 64] = b"\x00" * 64  # garbage inside the zlib stream
    (tmp_path / "broken.png").write_bytes(bytes(broken))
    assert _reason(tmp_path / "broken.png") == "corrupt"
    bad_crc = bytearray(data)
    bad_crc[20] ^= 0xFF  # inside IHDR: PIL cannot identify it, but it is a PNG
    (tmp_path / "crc.png").write_bytes(bytes(bad_crc))
    assert _reason(tmp_path / "crc.png") == "corrupt"


def test_decompression_bomb_guard(tmp_path):
    (tmp_path / "huge.png").write_bytes(_png_header_only(100_000, 100_000))
    assert _reason(tmp_path / "huge.png") == "too-large"  # PIL's DecompressionBombError, mapped
    (tmp_path / "big.png").write_bytes(_png_header_only(10_000, 10_000))  # 1e8 > 89.5e6: our header check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert _reason(tmp_path / "big.png") == "too-large"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's warning as an error: same reason
        assert _reason(tmp_path / "big.png") == "too-large"
    p = tmp_path / "small.png"
    Image.fromarray(_noise(40, 40)).save(p)
    assert _reason(p, max_pixels=1000) == "too-large"
    assert decode_image(p, max_pixels=1600).size == (40, 40)


def test_cmyk_jpeg(tmp_path):
    a = np.zeros((32, 32, 3), np.uint8)
    a[:16] = (255, 0, 0)
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(a).convert("CMYK").save(p, quality=95)
    assert Image.open(p).mode == "CMYK"
    out = np.asarray(decode_image(p)).astype(int)
    assert out.shape == (32, 32, 3)
    assert np.abs(out[4, 4] - (255, 0, 0)).max() <= 8
    assert np.abs(out[28, 28] - (0, 0, 0)).max() <= 8


def test_greyscale_and_bilevel(tmp_path):
    g = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = np.asarray(decode_image(tmp_path / "g.png"))
    assert out.shape == (8, 64, 3)
    assert np.array_equal(out[..., 0], g) and np.array_equal(out[..., 1], g) and np.array_equal(out[..., 2], g)
    Image.fromarray(g > 127).save(tmp_path / "b.png")
    assert set(np.unique(np.asarray(decode_image(tmp_path / "b.png")))) <= {0, 255}


def test_rgba_alpha_composited_over_white_by_default(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0] = (10, 20, 30, 0)      # fully transparent: background shows
    a[0, 1] = (10, 20, 30, 255)    # opaque: colour kept
    a[0, 2] = (0, 0, 0, 128)       # half-transparent black
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    white = np.asarray(decode_image(tmp_path / "a.png")).astype(int)
    assert tuple(white[0, 0]) == (255, 255, 255)
    assert tuple(white[0, 1]) == (10, 20, 30)
    assert np.abs(white[0, 2] - 127).max() <= 1
    black = np.asarray(decode_image(tmp_path / "a.png", alpha_background=(0, 0, 0))).astype(int)
    assert tuple(black[0, 0]) == (0, 0, 0) and tuple(black[0, 1]) == (10, 20, 30)
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    assert np.asarray(decode_image(tmp_path / "la.png"))[0].tolist() == [[255, 255, 255], [50, 50, 50]]


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(decode_image(tmp_path / "p.png"))[0].tolist() == [[255, 255, 255], [0, 255, 0]]
    p.save(tmp_path / "p_opaque.png")
    assert np.asarray(decode_image(tmp_path / "p_opaque.png"))[0].tolist() == [[255, 0, 0], [0, 255, 0]]


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    g = np.array([[0, 1000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = np.asarray(decode_image(tmp_path / "g16.png"))
    assert out[0, :, 0].tolist() == [0, 4, 128, 255]  # round(v * 255 / 65535); PIL's convert would give 0,255,255,255
    assert (out[..., 0] == out[..., 1]).all()


def test_exif_orientation_6_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:6, :6] = (255, 0, 0)  # red block at the stored top-left
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert Image.open(tmp_path / "rot.jpg").size == (40, 20)
    out = np.asarray(decode_image(tmp_path / "rot.jpg")).astype(int)
    assert out.shape == (40, 20, 3)  # width/height swapped
    assert out[2, 17, 0] > 200 and out[2, 17, 1] < 60  # red now at the top-right
    assert out[2, 2, 0] < 60
    assert np.asarray(decode_image(tmp_path / "rot.jpg", exif_transpose=False)).shape == (20, 40, 3)


def test_fast_jpeg_draft_is_opt_in(tmp_path):
    p = tmp_path / "big.jpg"
    Image.fromarray(_noise(800, 1000)).save(p, quality=90)
    full = decode_image(p)
    fast = fast_decode_for_clip(p, size=224)
    assert full.size == (1000, 800)
    assert fast.size == (500, 400)  # DCT scaling 1/2: the largest that keeps both sides >= 224
    assert fast.mode == "RGB"
    a = np.asarray(full.resize((224, 224), Image.Resampling.BICUBIC)).astype(int)
    b = np.asarray(fast.resize((224, 224), Image.Resampling.BICUBIC)).astype(int)
    assert not np.array_equal(a, b)  # not paper-exact: that is why it is off by default
    assert D.ImageDecodeOptions().jpeg_draft is None


def test_bad_media_error_pickles_and_reads_well(tmp_path):
    e = BadMediaError(tmp_path / "x.jpg", "truncated", "image file is truncated")
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.reason, e2.detail) == (str(tmp_path / "x.jpg"), "truncated", "image file is truncated")
    assert "truncated" in str(e2)
    with pytest.raises(ValueError):
        BadMediaError("x", "made-up-reason")


# ------------------------------------------------------------------------------------------------ video sampling

def test_hero_sampling_rule():
    assert hero_sampling_fps(60.0) == Fraction(2, 3)
    assert hero_sampling_fps(1.61) == Fraction(2, 3)
    assert hero_sampling_fps(1.59) == 2  # 2 / max(int(1.59), 1)
    assert hero_sampling_fps(0.4) == 2
    assert hero_frame_indices(100, 10.0).tolist() == [7, 22, 37, 52, 67, 82, 97]
    assert hero_frame_indices(12, 10.0).tolist() == [2, 7]
    assert hero_frame_indices(1, 10.0).tolist() == [0]  # ffmpeg would output nothing; we keep one frame
    assert len(hero_frame_indices(1800, 30000 / 1001)) == 40  # a 60 s clip -> 40 rows (VALUE: ~40)
    assert hero_frame_indices(240, 24.0)[0] == 17  # 18/24 s is exactly half a tick: rounds up, ffmpeg-style


@pytest.mark.parametrize(("n", "fps", "out_fps"), [(100, 10, "2/3"), (12, 10, "2"), (5, 10, "2"), (240, 24, "2/3"),
                                                   (100, 30, "2/3"), (250, 25, "2/3")])
def test_sampling_matches_ffmpeg_fps_filter(tmp_path, n, fps, out_fps):
    """Our indices equal what libavfilter's real ``fps`` filter (via PyAV) outputs for the same stream."""
    path = _make_video(tmp_path / "f.mp4", n, fps)
    got = []
    with av.open(path) as c:
        stream = c.streams.video[0]
        graph = av.filter.Graph()
        src = graph.add_buffer(template=stream)
        flt = graph.add("fps", fps=out_fps)
        sink = graph.add("buffersink")
        src.link_to(flt)
        flt.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    got.append(graph.pull().to_ndarray(format="rgb24"))
                except (av.BlockingIOError, av.EOFError):
                    return

        for frame in c.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    assert _frame_ids(np.stack(got)) == ffmpeg_fps_indices(n, fps, Fraction(out_fps)).tolist()


def test_times_to_indices():
    assert times_to_indices([0.0, 0.05, 0.1, 2.05, 99.0, -1.0], 10.0, 100).tolist() == [0, 0, 1, 20, 99, 0]


# ------------------------------------------------------------------------------------------------ video decoding

def test_10s_video_hero_frames(videos):
    out = read_video_frames(videos["10s"])
    assert out.backend == "decord"
    assert out.frames.shape == (7, 48, 64, 3) and out.frames.dtype == np.uint8
    assert out.indices.tolist() == [7, 22, 37, 52, 67, 82, 97]
    assert _frame_ids(out.frames) == [7, 22, 37, 52, 67, 82, 97]
    assert np.allclose(out.times, out.indices / 10.0)
    assert (out.info.num_frames, out.info.fps, out.info.width, out.info.height) == (100, 10.0, 64, 48)


def test_short_and_one_frame_videos(videos):
    short = read_video_frames(videos["short"])  # 1.2 s < 1.6 s: fps = 2
    assert short.indices.tolist() == [2, 7] and _frame_ids(short.frames) == [2, 7]
    tiny = read_video_frames(videos["tiny"])    # 0.5 s: one tick
    assert tiny.indices.tolist() == [2] and _frame_ids(tiny.frames) == [2]
    one = read_video_frames(videos["one"])
    assert one.frames.shape == (1, 48, 64, 3) and one.indices.tolist() == [0]


def test_explicit_indices_and_times(videos):
    out = read_video_frames(videos["10s"], [5, 5, 0, 99])
    assert _frame_ids(out.frames) == [5, 5, 0, 99]
    assert read_video_frames(videos["10s"], times=[0.0, 2.05]).indices.tolist() == [0, 20]
    with pytest.raises(IndexError):
        read_video_frames(videos["10s"], [100])


def test_bad_videos(videos):
    def reason(key):
        with pytest.raises(BadMediaError) as exc:
            read_video_frames(videos[key])
        return exc.value.reason

    assert reason("zero") == "empty"
    assert reason("junk") == "not-video"
    assert reason("image") == "not-video"
    assert reason("trunc") == "corrupt"      # moov atom lost: the container cannot be opened
    assert reason("trunc_fs") == "truncated"  # index intact, frames missing


def test_pyav_backend_and_fallback(videos, monkeypatch, caplog):
    ref = read_video_frames(videos["10s"])
    direct = read_video_frames(videos["10s"], backend="pyav")
    assert direct.backend == "pyav" and direct.indices.tolist() == ref.indices.tolist()
    assert np.abs(direct.frames.astype(int) - ref.frames.astype(int)).max() <= 2

    def broken(*args, **kwargs):
        raise D._DecodeFailure("open", "simulated decord failure")

    monkeypatch.setattr(D, "_read_decord", broken)
    with caplog.at_level(logging.WARNING, logger="features.decode"):
        fb = read_video_frames(videos["10s"])
    assert fb.backend == "pyav" and _frame_ids(fb.frames) == [7, 22, 37, 52, 67, 82, 97]
    assert "simulated decord failure" in caplog.text and fb.meta["decord_error"] == "simulated decord failure"
    one = read_video_frames(videos["one"])
    assert one.backend == "pyav" and one.frames.shape == (1, 48, 64, 3)
    with pytest.raises(BadMediaError) as exc:  # both decoders fail: still bad media, with both reasons
        read_video_frames(videos["junk"])
    assert exc.value.reason == "not-video" and "simulated" in exc.value.detail
