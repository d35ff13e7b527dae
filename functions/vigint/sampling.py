"""What part of a clip Gemini sees, and what that costs in tokens.

Token figures (Gemini API documentation, ai.google.dev/gemini-api/docs/tokens and
ai.google.dev/gemini-api/docs/video-understanding):

* an image with both sides at most 384 px counts 258 tokens; larger images are cut into 768x768 tiles of
  258 tokens each (``TOKENS_PER_IMAGE_TILE``);
* a video is sampled at 1 frame per second, each frame 258 tokens, and its audio counts 32 tokens per second
  (``TOKENS_PER_VIDEO_SECOND`` = 258 + 32; the docs round this to "about 300 tokens per second").

Like Frigate's GenAI review (at most one frame per second, a bounded number of frames), we never send more
than 1 fps: ``plan`` picks the whole clip as video when it fits the per-event token budget, else at most
``budget // 258`` frames spread evenly over the clip (never more than one per second), JPEG, scaled to fit one
768x768 tile. Frames are decoded with PyAV and encoded to JPEG with its MJPEG encoder.
"""

from __future__ import annotations

import dataclasses
import fractions
import io
import math

TOKENS_PER_IMAGE_TILE = 258
TOKENS_PER_VIDEO_SECOND = 258 + 32
TILE_PX = 768


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to show one clip to Gemini.

    Attributes:
        mode: ``"video"`` (the clip itself), ``"frames"`` (JPEG stills) or ``"snapshot"`` (no clip).
        frame_times: for ``"frames"``, the times in seconds from the clip's start.
        estimated_tokens: media tokens by the figures above (snapshot included).
    """

    mode: str
    frame_times: tuple[float, ...]
    estimated_tokens: int


def image_tokens(width: int, height: int) -> int:
    """Tokens of one image of ``width`` x ``height`` pixels (258 per 768x768 tile; 258 if both <= 384)."""
    if width <= 384 and height <= 384:
        return TOKENS_PER_IMAGE_TILE
    return math.ceil(width / TILE_PX) * math.ceil(height / TILE_PX) * TOKENS_PER_IMAGE_TILE


def video_tokens(duration_s: float, has_audio: bool = True) -> int:
    """Tokens of a clip sent as video: 258 per second of 1 fps frames, + 32 per second of audio."""
    per_second = TOKENS_PER_VIDEO_SECOND if has_audio else TOKENS_PER_IMAGE_TILE
    return max(1, math.ceil(duration_s)) * per_second


def plan(*, duration_s: float | None, has_clip: bool, has_snapshot: bool, budget_tokens: int,
         video_allowed: bool = True, has_audio: bool = True) -> Plan:
    """Chooses video or frames, whichever costs less within ``budget_tokens``.

    The clip goes as video when that costs no more than the frames would (a silent clip whose every second
    fits the budget: same 258 tokens per second, and the model sees the motion); otherwise as at most
    ``budget // 258`` frames, never more than one per second.

    Args:
        duration_s: clip length in seconds (None/0 if unknown).
        has_clip: a clip is available.
        has_snapshot: the snapshot will be attached too (258 tokens, counted in the budget).
        budget_tokens: media tokens allowed for this event.
        video_allowed: False when the clip cannot be sent as video (e.g. too large to send inline).
        has_audio: the clip has an audio track (counted at 32 tokens per second when sent as video).
    """
    snap = TOKENS_PER_IMAGE_TILE if has_snapshot else 0
    if not has_clip:
        return Plan("snapshot", (), snap)
    duration = max(float(duration_s or 0.0), 0.0)
    seconds = max(1, math.ceil(duration))
    room = max(budget_tokens - snap, TOKENS_PER_IMAGE_TILE)
    n_frames = max(1, min(seconds, room // TOKENS_PER_IMAGE_TILE))  # at most 1 fps
    frames_cost = n_frames * TOKENS_PER_IMAGE_TILE + snap
    video_cost = video_tokens(duration, has_audio) + snap
    if video_allowed and video_cost <= budget_tokens and video_cost <= frames_cost:
        return Plan("video", (), video_cost)
    if n_frames == 1:
        times: tuple[float, ...] = (duration / 2,)
    else:
        step = duration / n_frames
        times = tuple(round(step * (i + 0.5), 3) for i in range(n_frames))
    return Plan("frames", times, frames_cost)


def has_audio(clip: bytes) -> bool:
    """True if the mp4 ``clip`` has an audio stream (False if it cannot be opened)."""
    import av

    try:
        with av.open(io.BytesIO(clip), mode="r") as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, ValueError):
        return False


def extract_frames(clip: bytes, times: tuple[float, ...], max_side: int = TILE_PX,
                   container_format: str | None = None) -> list[bytes]:
    """JPEG stills of ``clip`` nearest to each of ``times`` (seconds from its first frame).

    ``clip`` is an mp4, or (``container_format="mpegts"``) MPEG-TS such as an event's HLS segments joined in
    index order: MPEG-TS timestamps do not start at 0, so times count from the first decoded frame.
    Frames are scaled down (aspect kept) so the longer side is at most ``max_side`` pixels.

    Raises:
        av.error.FFmpegError: the clip cannot be decoded.
        ValueError: the clip has no video stream or no frame could be decoded.
    """
    import av

    wanted = sorted(times)
    out: list[bytes] = []
    with av.open(io.BytesIO(clip), mode="r", format=container_format) as container:
        if not container.streams.video:
            raise ValueError("clip has no video stream")
        stream = container.streams.video[0]
        i, last, origin = 0, None, None
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            origin = t if origin is None else origin
            t -= origin
            last = frame
            while i < len(wanted) and t >= wanted[i]:
                out.append(_jpeg(frame, max_side))
                i += 1
            if i >= len(wanted):
                break
        while i < len(wanted) and last is not None:  # times past the last frame: use the last frame
            out.append(_jpeg(last, max_side))
            i += 1
    if not out:
        raise ValueError("no frame could be decoded from the clip")
    return out


def _jpeg(frame, max_side: int) -> bytes:
    import av

    w, h = frame.width, frame.height
    scale = min(1.0, max_side / max(w, h))
    w2, h2 = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    img = frame.reformat(width=w2, height=h2, format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = w2, h2, "yuvj420p"
    codec.time_base = fractions.Fraction(1, 25)
    codec.options = {"qscale": "4"}
    packets = codec.encode(img) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)
