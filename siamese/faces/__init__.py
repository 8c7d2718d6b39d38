"""Faces in images: detect (box, five landmarks, score), align to a canonical crop, follow them
across video frames, capture one person's clear frontal faces, and turn a folder or a video into
aligned crops with a manifest. RGB uint8 in, no model here."""

from siamese.faces.align import (
           ARCFACE_TEMPLATE_112,
           LFW_MEDIAN_LANDMARKS,
           align,
           face_inside,
           resize_faces,
           similarity_transform,
           template,
)
from siamese.faces.capture import Capture, captures, clear_face, collect, dominant_face, read_face_folders, sources
from siamese.faces.detect import Detector, Face, HaarDetector, YuNetDetector, box_iou, central_face, frontalness
from siamese.faces.folder import MANIFEST_COLUMNS, detect_folder, read_manifest
from siamese.faces.track import FaceTracker, Track

__all__ = ["ARCFACE_TEMPLATE_112", "LFW_MEDIAN_LANDMARKS", "MANIFEST_COLUMNS", "Capture", "Detector", "Face",
           "FaceTracker", "HaarDetector", "Track", "YuNetDetector", "align", "box_iou", "captures", "central_face",
           "clear_face", "collect", "detect_folder", "dominant_face", "face_inside", "frontalness", "read_face_folders",
           "read_manifest", "resize_faces", "similarity_transform", "sources", "template"]
