"""The gallery of known people: the one store of a person's faces (SQLite), enrolment into it,
nearest-neighbour search, recognition (a name or "unknown") and its calibration."""

from siamese.gallery.calibrate import impostors_from_lfw, refresh
from siamese.gallery.enrol import add_images, add_video, enroll, import_folder, reembed
from siamese.gallery.index import Index
from siamese.gallery.legacy import import_enrolled, legacy_people
from siamese.gallery.recognize import METHODS, Match, Recognizer, load_recognizer, recognize
from siamese.gallery.store import Gallery, GalleryError, ModelMismatch
from siamese.gallery.svc import Svc

__all__ = ["METHODS", "Gallery", "GalleryError", "Index", "Match", "ModelMismatch", "Recognizer", "Svc",
           "add_images", "add_video", "enroll", "import_enrolled", "import_folder", "impostors_from_lfw",
           "legacy_people", "load_recognizer", "recognize", "reembed", "refresh"]
