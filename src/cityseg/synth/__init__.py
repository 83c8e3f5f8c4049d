"""Procedurally drawn street scenes: cityseg's built-in dataset, with the exact labels beside every pair.

``cityseg synth OUT`` writes pairs in the layout and encoding of the Kaggle Cityscapes pairs (512x256 JPEG,
photo left, colour mask right, quality 95, 4:2:0 chroma) and beside each one its exact official label ids as a
lossless PNG (``N_labelIds.png``), so the whole pipeline runs without a download and a labeller can be scored
against the truth.

A scene is a pinhole-camera view down a street. Everything is placed in metres in a world frame
(X right, Y up, Z forward; the camera sits at (0, camera height, 0)) and projected, so perspective, sizes and
occlusion (painter's order, far to near) agree. Each primitive is drawn twice with ``PIL.ImageDraw``: into the
label image with its official label id (hard edges, no antialiasing) and into the photo with a material colour,
lit by the scene's sun and hazed with distance. Then, vectorised in numpy: windows, fence bars, wall joints and
paving joints (each pixel's ray meets its surface's plane, patterns are box-filtered so they never flicker),
per-class texture (noise at three scales), cast shadows, exposure, colour temperature, blur and sensor noise.

The stages, one module each:

- ``camera``: the pinhole camera, projection, visible faces, per-pixel rays (the only module that knows the
  camera's pose); ``geometry``: world vectors and faces; ``dice``: the scalar random numbers.
- ``materials``: colour palettes, per-class texture strengths, colour arithmetic; ``lighting``: sun, sky, haze.
- ``street``: lanes, parking, kerbs, sidewalks, frontage kinds, the cross street; ``ground``: the ground drawn
  from them.
- ``props``: buildings and parks, vegetation, street furniture, vehicles, people, as functions over a ``scene``.
- ``patterns`` and ``finish``: the per-pixel passes that turn the drawn canvas into a photo.
- ``render``: the order a scene is drawn in; ``write``: pairs and label ids on disk; ``labelled``: scenes as
  KITTI, BDD100K, ACDC, Dark Zurich or ``images/`` + ``labels/`` datasets (photos and label images);
  ``exports``: scenes as annotation tools export them (Pascal VOC, CVAT's Cityscapes, Roboflow, COCO).
- ``drive``: a generated drive, the camera moving down one street, as a video with the label ids of every
  frame (``cityseg synth --video``); ``scene.Shot`` is where one frame is taken from.

Every number comes from the one generator passed in, so a seed fixes a scene. The masks use only ids whose
colour maps back to them (``classes.color_to_label_id``), so decoding a mask by its colours recovers the
label-id PNG exactly; the ego-vehicle bonnet at the bottom is ``unlabeled`` (0).
"""

from __future__ import annotations

from cityseg.synth.drive import (
    DRIVE_FPS,
    DRIVE_SECONDS,
    DRIVE_SIZE,
    Drive,
    DriveSummary,
    drive_frames,
    labels_folder,
    write_drive,
)
from cityseg.synth.exports import write_layout
from cityseg.synth.ids import DRAWN_IDS
from cityseg.synth.labelled import LayoutSummary, write_labelled
from cityseg.synth.render import IMAGE_SIZE, render_scene
from cityseg.synth.write import JPEG_QUALITY, JPEG_SUBSAMPLING, SynthSummary, train_class_shares, write_scenes

__all__ = [
    "DRAWN_IDS",
    "DRIVE_FPS",
    "DRIVE_SECONDS",
    "DRIVE_SIZE",
    "IMAGE_SIZE",
    "JPEG_QUALITY",
    "JPEG_SUBSAMPLING",
    "Drive",
    "DriveSummary",
    "LayoutSummary",
    "SynthSummary",
    "drive_frames",
    "labels_folder",
    "render_scene",
    "train_class_shares",
    "write_drive",
    "write_labelled",
    "write_layout",
    "write_scenes",
]
