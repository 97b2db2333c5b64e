"""Limits that keep a malformed or hostile input from eating the machine before anything objects.

Each is far above what a real image-classification data set needs (CIFAR-10's zip: 50,000 members
of about 1 KB, stored, not compressed); each refusal is one line naming the limit and the fix.
"""

from __future__ import annotations

# Zip archives, checked from the central directory before any member is read.
MAX_ZIP_MEMBERS = 2_000_000
MAX_MEMBER_BYTES = 64 * 2**20  # one image file, uncompressed
MAX_TOTAL_BYTES = 16 * 2**30  # every image member together, uncompressed
# JPEG and PNG are compressed already: a member that deflates 100x is not an image file.
MAX_COMPRESSION_RATIO = 100
# Pixels per image, read from the image's header before it is decoded (4096 x 4096).
MAX_IMAGE_PIXELS = 4096 * 4096
