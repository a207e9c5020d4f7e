"""Generator of MOTChallenge ``seqinfo.ini`` files from the video they describe.

Frame size and count come from the video itself (every frame decoded, so the count is exact, not the
container's estimate); the sequence name and frame rate from the manifest (``seq_name``, ``fps``) where the
MOTChallenge values differ from what the container says (PETS09-S2L1 is a 7 fps sequence in a file that
claims 10 fps). The layout is MOTChallenge's, byte for byte, so a generated file matches a downloaded one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.errors import AssetError

#: generated-file revision: bump when the text written here changes
GENERATOR_REVISION = 1


def video_facts(path: Path) -> tuple[int, int, int, float | None]:
    """(width, height, exact frame count, container frame rate) of a video, decoding every frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise AssetError(f"OpenCV cannot open {path}", "check the file, or install opencv-python")
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or None
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0 or not width or not height:
        raise AssetError(f"{path}: no decodable frames", "check the file plays (OpenCV may lack its codec)")
    return width, height, count, fps


def seqinfo_text(name: str, frame_rate: float, length: int, width: int, height: int) -> str:
    rate = int(frame_rate) if float(frame_rate).is_integer() else round(frame_rate, 3)
    return (f"[Sequence]\nname={name}\nimDir=img1\nframeRate={rate}\nseqLength={length}\n"
            f"imWidth={width}\nimHeight={height}\nimExt=.jpg\n\n")


def generate(inputs: dict[str, Path], out: Path, meta: dict[str, Any]) -> None:
    """Asset generator (see datasets/README.md): ``seqinfo`` from the role ``video``."""
    video = inputs["video"]
    width, height, count, fps = video_facts(video)
    expected = (meta.get("frames"), tuple(meta["frame_size"]) if meta.get("frame_size") else None)
    if expected[0] is not None and expected[0] != count or expected[1] is not None and expected[1] != (width, height):
        raise AssetError(f"{video.name} decodes to {count} frames of {width}x{height}, the manifest says "
                         f"{expected[0]} frames of {expected[1]}", "this OpenCV decodes the video differently: "
                         "check its video backend (cv2.getBuildInformation())")
    rate = meta.get("fps") or fps
    if not rate:
        raise AssetError(f"{video.name} states no frame rate and the manifest gives none", "add fps = N to it")
    out.write_text(seqinfo_text(str(meta.get("seq_name") or meta.get("name") or video.stem), rate, count, width,
                                height), encoding="utf-8")
