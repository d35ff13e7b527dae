"""``vigint-edge bench``: how fast the edge pipeline is on this machine, measured against its own parts.

Every figure comes from the same run, so ratios (pipeline vs. the slower of decode-only and model-only)
mean something even on a busy machine:

- ``decode_fps``: frames per second the capture (PyAV) demuxes, decodes and converts to BGR, no other work.
- ``model_sync_fps`` / ``model_async_fps``: detector calls per second on decoded frames: one call at a time
  on a LATENCY-hint detector (all cores on one request), and through OpenVINO's ``AsyncInferQueue`` on the
  THROUGHPUT-hint detector the pipeline uses. ``model_fps`` is the better of the two: the model's best.
- ``pipeline_fps``: frames per second through the whole per-camera pipeline (capture, motion gate, detector
  on every frame via ``detect_async``, tracking, zones, clip, continuous recording, spooling), not paced.
  Measured on three inputs: an H.264 camera stream (vtest re-encoded, 2-s GOP: clips are remuxed), the
  original ``vtest.avi`` (MS-MPEG4: clips must be encoded to H.264) and a 1080p H.264 stream.
- ``pipeline_5fps_fps``: the H.264 stream at the default 5-fps detect rate, which sets how many cameras fit.
- ``idle_cpu_fraction``: CPU seconds per second of video for a static scene (motion gate on), i.e. the
  fraction of one core a camera watching nothing costs.
- ``encode_fps``: frames per second the clip encoder (``ClipWriter``, libx264) alone encodes vtest.avi's frames.
- ``shared_cores_bound_*fps`` and ``pipeline_*of_bound``: cores x 1000 / (decode + model [+ encode] CPU ms
  per frame), the most a pipeline doing only those can reach when they share the cores, and the share of it
  the real pipeline reaches.
- ``*_cpu_ms``: CPU milliseconds (all threads, ``getrusage``) per frame or inference of the run reported,
  which shows where the pipeline's time goes when every core is busy.

Writes ``BENCHMARKS.md`` (with the machine and the command) and prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import av
import cv2
import numpy as np

from vigint_edge.capture.source import VideoSource
from vigint_edge.recording.clip import ClipWriter
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.detection.detector import load_detector
from vigint_edge.events.pipeline import CameraPipeline
from vigint_edge.delivery.spool import Spool


def _camera(path: Path, detect_fps: float = 30.0) -> CameraConfig:
    return CameraConfig(id="bench", source=str(path), detect_fps=detect_fps, realtime=False)


def _frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    return [f.image for f in VideoSource(_camera(path), max_frames=limit).frames()]


def make_h264(src: Path, dst: Path, size: tuple[int, int] | None = None, fps: int | None = None,
              seconds: float | None = None, empty_lead_s: float = 0.0) -> Path:
    """``src`` re-encoded as H.264 the way IP cameras send it (a keyframe every 2 s, no B-frames), optionally
    resized and at another nominal rate; made once and reused. ``empty_lead_s``: that many seconds of an empty
    scene (flat mid-grey) first, within ``seconds``."""
    if dst.exists():
        return dst
    cap = cv2.VideoCapture(str(src))
    rate = fps or int(round(cap.get(cv2.CAP_PROP_FPS) or 10))
    limit = int(seconds * rate) if seconds else None
    tmp = dst.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        w = size[0] if size else int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = size[1] if size else int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * rate), "bf": "0"}
        n = 0
        while limit is None or n < limit:
            ok, img = cap.read()
            if not ok:
                break
            if size:
                img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
            if n < empty_lead_s * rate:
                img = np.full_like(img, 128)
            for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(pkt)
            n += 1
        for pkt in stream.encode():
            out.mux(pkt)
    cap.release()
    tmp.rename(dst)
    return dst


def _cpu_s() -> float:
    """CPU seconds (user + system) this process has used, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rate(run) -> tuple[float, float]:
    """``run()`` returns how many items it did; -> (items per second, CPU milliseconds per item)."""
    cpu, t = _cpu_s(), time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t), 1000 * (_cpu_s() - cpu) / max(1, n)


def decode_fps(path: Path) -> tuple[float, float]:
    """(frames/s, CPU ms/frame) through the capture alone (demux, decode, BGR conversion)."""
    def run() -> int:
        n = 0
        for frame in VideoSource(_camera(path)).frames():
            frame.image  # the conversion the detector needs
            n += 1
        return n
    return _rate(run)


def model_fps(model_path: Path, device: str, frames: list[np.ndarray], n: int = 800) -> tuple[float, float, float]:
    """(sync calls/s on a LATENCY detector, async calls/s through ``AsyncInferQueue`` on the pipeline's
    THROUGHPUT detector, CPU ms per async call). ``n`` calls each, about as many as the pipeline's frames."""
    latency = load_detector(model_path, device, score_threshold=0.5, performance_hint="LATENCY")
    for img in frames[:5]:
        latency.detect(img)
    t = time.perf_counter()
    for i in range(n):
        latency.detect(frames[i % len(frames)])
    sync = n / (time.perf_counter() - t)
    del latency
    detector = load_detector(model_path, device, score_threshold=0.5)
    done = []
    for img in frames[:5]:
        detector.detect(img)

    def run() -> int:
        for i in range(n):
            detector.detect_async(frames[i % len(frames)], lambda dets, err: done.append(err))
        detector.wait_all()
        return len(done)
    return (sync, *_rate(run))


def encode_fps(video: Path, work: Path, n: int = 800) -> tuple[float, float]:
    """(frames/s, CPU ms/frame) of the clip encoder alone (``ClipWriter``: libx264 as event clips of non-H.264
    cameras are encoded), fed the decoder's own pictures of ``video`` (its first 200, repeated)."""
    pictures = [f.av_frame for f in VideoSource(_camera(video), max_frames=200).frames()]
    w, h = pictures[0].width, pictures[0].height

    def run() -> int:
        with ClipWriter(work / "encode.mp4", width=w, height=h, fps=10.0) as clip:
            for i in range(n):
                clip.write(pictures[i % len(pictures)], i / 10.0)
        return n
    return _rate(run)


def pipeline_fps(detector, video: Path, detect_fps: float | None, work: Path) -> tuple[float, float]:
    """(frames/s, CPU ms/frame) through capture + the whole pipeline (detect at ``detect_fps``; None: every
    frame)."""
    cam = _camera(video, detect_fps or 30.0)
    source = VideoSource(cam)
    dev = DeviceConfig(tenant_id="bench", device_id="bench", api_url="http://127.0.0.1:9")
    pipe = CameraPipeline(cam, dev, EventConfig(), MotionConfig(), detector, Spool(work / "spool", 50 * 1024**3),
                          work / "rec")

    def run() -> int:
        n = 0
        for frame in source.frames():
            if n == 0:
                pipe.fps = source.fps
            pipe.process(frame)
            n += 1
        pipe.finish()
        return n
    return _rate(run)


def idle_cpu_fraction(detector, frame: np.ndarray, work: Path, seconds: int = 60, fps: float = 10.0) -> float:
    """CPU seconds per second of video for ``seconds`` of a static H.264 scene (capture, decode and the
    continuous recording included; the detector looks once every 5 s)."""
    still = work / "static.mp4"
    with av.open(str(still), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        stream.options = {"g": str(int(2 * fps)), "bf": "0"}
        for _ in range(int(seconds * fps)):
            for pkt in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    before = _cpu_s()
    pipeline_fps(detector, still, 5.0, work / "idle")
    return (_cpu_s() - before) / seconds


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


ROUNDS = 3  # runs of each throughput measurement; the best counts


def _best(measure) -> tuple:
    """The run with the highest rate (first item) of ``measure(round)`` over ``ROUNDS`` rounds."""
    return max((measure(i) for i in range(ROUNDS)), key=lambda r: r[0])


def run(vtest: Path, model_path: Path, out_md: Path | None, cache: Path, device: str = "CPU") -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    camera = make_h264(vtest, cache / "bench_vtest_h264.mp4")
    hd = make_h264(vtest, cache / "bench_1080p_h264.mp4", size=(1920, 1080), fps=25, seconds=10)
    detector = load_detector(model_path, device, score_threshold=0.5)
    frames = _frames(vtest, 200)
    r: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Best of ``ROUNDS`` for every throughput, baselines and pipeline alike (timeit's rule: the fastest run
        # is the one the shared machine disturbed least).
        for name, video in (("", camera), ("reencode_", vtest), ("1080p_", hd)):
            r[f"decode_{name}fps"], r[f"decode_{name}cpu_ms"] = _best(lambda _: decode_fps(video))
        r["encode_fps"], r["encode_cpu_ms"] = _best(lambda i: encode_fps(vtest, work))
        runs = [model_fps(model_path, device, frames) for _ in range(ROUNDS)]
        r["model_sync_fps"] = max(x[0] for x in runs)
        r["model_async_fps"], r["model_async_cpu_ms"] = max((x[1:] for x in runs), key=lambda x: x[0])
        r["model_fps"] = max(r["model_sync_fps"], r["model_async_fps"])
        for name, video in (("", camera), ("reencode_", vtest), ("1080p_", hd)):
            r[f"pipeline_{name}fps"], r[f"pipeline_{name}cpu_ms"] = _best(
                lambda i: pipeline_fps(detector, video, None, work / f"p-{name}{i}"))
        r["pipeline_5fps_fps"] = _best(lambda i: pipeline_fps(detector, camera, 5.0, work / f"p4-{i}"))[0]
        r["idle_cpu_fraction"] = idle_cpu_fraction(detector, frames[0], work)
    for name in ("", "reencode_", "1080p_"):
        r[f"pipeline_{name}ratio"] = r[f"pipeline_{name}fps"] / min(r[f"decode_{name}fps"], r["model_fps"])
        # The CPU time the parts alone need per frame (decode, model, and for vtest.avi the clip encoder) adds up
        # on shared cores: the most frames per second all the cores can give a pipeline doing just those.
        cpu = r[f"decode_{name}cpu_ms"] + r["model_async_cpu_ms"] + (r["encode_cpu_ms"] if name == "reencode_" else 0)
        r[f"shared_cores_bound_{name}fps"] = (os.cpu_count() or 1) * 1000.0 / cpu
        r[f"pipeline_{name}of_bound"] = r[f"pipeline_{name}fps"] / r[f"shared_cores_bound_{name}fps"]
    r["cameras_at_5fps_10fps_source"] = int(r["pipeline_5fps_fps"] // 10)
    r = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
    if out_md is not None:
        out_md.write_text(_markdown(r))
    return r


def _markdown(r: dict) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def row(key: str, digits: int = 1) -> str:  # camera | re-encode | 1080p
        return " | ".join(f"{r[key.format(n)]:.{digits}f}" for n in ("", "reencode_", "1080p_"))
    ceiling = r["model_async_cpu_ms"] / r["pipeline_cpu_ms"]
    return f"""# Benchmarks

Measured {now} on: {machine()}.
Command: `make bench` (`vigint-edge bench`). Detector: COCO SSDLite-MobileNetV2 (300x300), OpenVINO IR, CPU.
Inputs, all from `vtest.avi` (768x576, 10 fps, 795 frames): **camera** = it re-encoded once as H.264 the way
IP cameras send it (keyframe every 2 s, no B-frames), so clips are remuxed; **re-encode** = `vtest.avi`
itself (MS-MPEG4, which browsers do not play, so every clip frame is encoded to H.264); **1080p** = 10 s
upscaled to 1920x1080 H.264 at 25 fps. Each throughput is the best of {ROUNDS} runs, all in one `make bench`;
the machine is shared, so read the ratios rather than the absolutes. CPU times are the whole process's
(every thread), from `getrusage`, for the same best run.

| measure | camera (H.264 768x576) | re-encode (vtest.avi) | 1080p H.264 |
|---|---|---|---|
| decode only: demux + decode + BGR (frames/s) | {row("decode_{}fps")} |
| decode only: CPU ms per frame | {row("decode_{}cpu_ms", 2)} |
| full pipeline, detector on every frame (frames/s) | {row("pipeline_{}fps")} |
| full pipeline: CPU ms per frame | {row("pipeline_{}cpu_ms", 2)} |
| pipeline / min(decode, model) (target ≥ 0.80) | {row("pipeline_{}ratio", 2)} |
| bound on shared cores: cores x 1000 / (decode + model [+ encode] CPU ms per frame) (frames/s) | {row("shared_cores_bound_{}fps")} |
| pipeline / that bound | {row("pipeline_{}of_bound", 2)} |

| measure | value |
|---|---|
| model only, one call at a time, LATENCY hint (inferences/s) | {r['model_sync_fps']:.1f} |
| model only, `AsyncInferQueue` on the pipeline's THROUGHPUT-hint detector (inferences/s) | {r['model_async_fps']:.1f} |
| model only, async: CPU ms per inference | {r['model_async_cpu_ms']:.2f} |
| clip encoder only (`ClipWriter`, libx264 veryfast, 768x576), frames/s and CPU ms per frame | {r['encode_fps']:.1f}, {r['encode_cpu_ms']:.2f} |
| model baseline used in the ratios (the better of the two) | {r['model_fps']:.1f} |
| full pipeline at the default 5-fps detect rate, camera input (frames/s) | {r['pipeline_5fps_fps']:.1f} |
| static scene: CPU seconds per minute of video | {r['idle_cpu_fraction'] * 60:.2f} s ({r['idle_cpu_fraction'] * 100:.1f} % of one core; target < 5 %) |
| 10-fps cameras at a 5-fps detect rate two cores sustain | {r['cameras_at_5fps_10fps_source']} |

Raw: `{json.dumps(r)}`

Reading it: the pipeline runs the detector through OpenVINO's `AsyncInferQueue` (`detect_async`), so a
frame is decoded (on the capture's reader thread), motion-gated and written to its clip while earlier ones
are at the detector; results are applied in frame order. Clips of H.264 cameras are the camera's own packets
remuxed (no re-encoding), and the same packets feed the continuous recording.

The model alone keeps both cores busy, so decoding (and encoding) cannot run beside it for free: on the same
cores their CPU times per frame add up, and min(decode, model) is out of reach whenever decoding costs
something. The "bound on shared cores" row is what a pipeline that only decoded, ran the model (and encoded
the clip) could reach with every core busy; the row under it shows how much of it the real pipeline (motion,
tracking, zones, muxing, the continuous recording, spooling) keeps. Put another way, with all cores busy the
ratio is at most (model CPU per inference) / (pipeline CPU per frame), here
{r['model_async_cpu_ms']:.2f} / {r['pipeline_cpu_ms']:.2f} = {ceiling:.2f} for the camera input. The
re-encode column pays libx264 for every frame of the always-active event, and the 1080p column decodes 5x
the pixels, which is why those two stay well under 0.80 on two cores. On a NUC the model would run on the
iGPU (`model.device: GPU`) and the CPU would only decode; there is no GPU here to measure that. The static-scene
figure includes capture, decoding and the continuous recording; the detector looks at a scene where nothing
moves once every 5 s.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vigint-edge bench")
    p.add_argument("--video", type=Path, required=True, help="vtest.avi")
    p.add_argument("--model", type=Path, required=True, help="model.xml")
    p.add_argument("--device", default="CPU")
    p.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    args = p.parse_args(argv)
    result = run(args.video, args.model, args.out, args.cache, args.device)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
