"""What of a person box is masked (``mask.people``), and which labels are never masked.

``heads`` (default): the head of every tracked person, estimated from the person box, whether or
not a face region covers it (a face seen from behind, in profile or in the dark is missed by the
face model, not by the person model). Geometry, for an upright person box x, y, w, h:

* height ``HEAD_H`` = 22 % of the box height, from the box top (an adult's head is ~13 % of
  standing height; the rest covers a bent head, hair, a hat and a box cut a little low);
* width ``HEAD_W`` = 60 % of the box width, centred, but never narrower than the head's height
  (a person with arms out has a wide box; a head is about as wide as it is tall), nor wider than
  the box;

then grown by ``mask.margin`` like a face. ``bodies``: the whole person box (grown by the margin).
``off``: people are detected for events only. Cars, dogs and cats are never masked.
"""

from __future__ import annotations

from typing import Literal

from daemon.regions import Box, Detection

PeopleMode = Literal["heads", "bodies", "off"]
HEAD_H = 0.22
HEAD_W = 0.6
MASKED_ALWAYS = frozenset({"face"})


def head_box(box: Box) -> Box:
    x, y, w, h = box
    hh = HEAD_H * h
    hw = min(w, max(HEAD_W * w, hh))
    return (x + (w - hw) / 2, y, hw, hh)


def for_tracking(d: Detection, mode: PeopleMode) -> Detection:
    """What the tracker follows: with ``heads``, a person's head box (the tracker's growth and
    speed limits are in box sizes, made for faces: a head moves and grows like one, a whole
    body box would grow by body heights); otherwise the detection as it is."""
    if d.label == "person" and mode == "heads":
        return Detection(head_box(d.box), d.score, d.label)
    return d


def tracked_mask_box(label: str, box: Box, mode: PeopleMode) -> Box | None:
    """The box to mask for a track (its box already made by :func:`for_tracking`)."""
    if label == "person":
        return None if mode == "off" else box
    if label in ("car", "dog", "cat"):
        return None
    return box


def mask_box(label: str, box: Box, mode: PeopleMode) -> Box | None:
    """The box to mask for a detection or track of ``label`` (None: not masked)."""
    if label == "person":
        if mode == "heads":
            return head_box(box)
        return box if mode == "bodies" else None
    if label in ("car", "dog", "cat"):
        return None
    return box  # faces and anything unknown: masked (fail closed)
