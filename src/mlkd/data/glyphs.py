"""The emoji glyph drawn for each COCO class (``coco_scenes``) and the fonts that draw them.

:data:`CLASS_GLYPHS` maps each of the 80 COCO classes (category-id order, as
:data:`mlkd.data.coco.COCO_CLASSES`) to one Unicode code point and its emoji name. Classes
with no emoji of their own take a distinct stand-in (``stand_in=True``); docs/scenes.md lists
the whole table.
"""

from __future__ import annotations

from typing import NamedTuple


class Glyph(NamedTuple):
    codepoint: int
    name: str
    stand_in: bool = False


_TABLE = {
    "person": (0x1F9CD, "person standing"),
    "bicycle": (0x1F6B2, "bicycle"),
    "car": (0x1F697, "automobile"),
    "motorcycle": (0x1F3CD, "motorcycle"),
    "airplane": (0x2708, "airplane"),
    "bus": (0x1F68C, "bus"),
    "train": (0x1F686, "train"),
    "truck": (0x1F69A, "delivery truck"),
    "boat": (0x26F5, "sailboat"),
    "traffic light": (0x1F6A6, "vertical traffic light"),
    "fire hydrant": (0x1F9EF, "fire extinguisher", True),
    "stop sign": (0x1F6D1, "stop sign"),
    "parking meter": (0x26FD, "fuel pump", True),
    "bench": (0x1FAB5, "wood", True),
    "bird": (0x1F426, "bird"),
    "cat": (0x1F408, "cat"),
    "dog": (0x1F415, "dog"),
    "horse": (0x1F40E, "horse"),
    "sheep": (0x1F411, "ewe"),
    "cow": (0x1F404, "cow"),
    "elephant": (0x1F418, "elephant"),
    "bear": (0x1F43B, "bear"),
    "zebra": (0x1F993, "zebra"),
    "giraffe": (0x1F992, "giraffe"),
    "backpack": (0x1F392, "backpack"),
    "umbrella": (0x2602, "umbrella"),
    "handbag": (0x1F45C, "handbag"),
    "tie": (0x1F454, "necktie"),
    "suitcase": (0x1F9F3, "luggage"),
    "frisbee": (0x1F94F, "flying disc"),
    "skis": (0x1F3BF, "skis"),
    "snowboard": (0x1F3C2, "snowboarder"),
    "sports ball": (0x26BD, "soccer ball"),
    "kite": (0x1FA81, "kite"),
    "baseball bat": (0x1F3CF, "cricket game", True),
    "baseball glove": (0x1F9E4, "gloves", True),
    "skateboard": (0x1F6F9, "skateboard"),
    "surfboard": (0x1F3C4, "person surfing"),
    "tennis racket": (0x1F3BE, "tennis", True),
    "bottle": (0x1F37E, "bottle with popping cork"),
    "wine glass": (0x1F377, "wine glass"),
    "cup": (0x2615, "hot beverage"),
    "fork": (0x1F374, "fork and knife"),
    "knife": (0x1F52A, "kitchen knife"),
    "spoon": (0x1F944, "spoon"),
    "bowl": (0x1F35C, "steaming bowl"),
    "banana": (0x1F34C, "banana"),
    "apple": (0x1F34E, "red apple"),
    "sandwich": (0x1F96A, "sandwich"),
    "orange": (0x1F34A, "tangerine"),
    "broccoli": (0x1F966, "broccoli"),
    "carrot": (0x1F955, "carrot"),
    "hot dog": (0x1F32D, "hot dog"),
    "pizza": (0x1F355, "pizza"),
    "donut": (0x1F369, "doughnut"),
    "cake": (0x1F382, "birthday cake"),
    "chair": (0x1FA91, "chair"),
    "couch": (0x1F6CB, "couch and lamp"),
    "potted plant": (0x1FAB4, "potted plant"),
    "bed": (0x1F6CF, "bed"),
    "dining table": (0x1F37D, "fork and knife with plate", True),
    "toilet": (0x1F6BD, "toilet"),
    "tv": (0x1F4FA, "television"),
    "laptop": (0x1F4BB, "laptop"),
    "mouse": (0x1F5B1, "computer mouse"),
    "remote": (0x1F3AE, "video game", True),
    "keyboard": (0x2328, "keyboard"),
    "cell phone": (0x1F4F1, "mobile phone"),
    "microwave": (0x1F4FB, "radio", True),
    "oven": (0x1F373, "cooking", True),
    "toaster": (0x1F35E, "bread", True),
    "sink": (0x1F6B0, "potable water", True),
    "refrigerator": (0x1F9CA, "ice", True),
    "book": (0x1F4D5, "closed book"),
    "clock": (0x23F0, "alarm clock"),
    "vase": (0x1F3FA, "amphora"),
    "scissors": (0x2702, "scissors"),
    "teddy bear": (0x1F9F8, "teddy bear"),
    "hair drier": (0x1F4A8, "dashing away", True),
    "toothbrush": (0x1FAA5, "toothbrush"),
}
#: class name -> Glyph, in the order of mlkd.data.coco.COCO_CLASSES.
CLASS_GLYPHS = {name: Glyph(*entry) for name, entry in _TABLE.items()}
