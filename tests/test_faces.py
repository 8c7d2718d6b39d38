import numpy as np

from siamese.faces.align import align, similarity_transform, template
from siamese.faces.detect import Face, HaarDetector, central_face
from siamese.io.images import read_image


def test_two_people_photo_has_both_faces(samples, yunet):
    image = read_image(samples / "photos" / "two_people.jpg")
    faces = yunet.detect(image)
    assert len(faces) == 2
    left, right = sorted(faces, key=lambda f: f.box[0])
    w = image.shape[1]
    assert left.center[0] < w / 2 < right.center[0]  # Obama left, Biden right
    assert all(f.score >= 0.5 and f.landmarks.shape == (5, 2) for f in faces)


def test_big_photo_is_detected_on_a_downscaled_copy_in_source_pixels(samples):
    from siamese.faces.detect import YuNetDetector

    image = read_image(samples / "photos" / "obama_and_biden.jpg")  # 2000x1428
    full = YuNetDetector(max_side=None).detect(image)
    small = YuNetDetector(max_side=640).detect(image)
    # The two main faces are found either way, in the same place (source coordinates).
    for f in small[:2]:
        nearest = min(np.linalg.norm(f.center - g.center) for g in full)
        assert nearest < 0.1 * f.box[2]


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = np.deg2rad(17), 1.7, np.array([12.0, -5.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_template_scales_and_pads():
    t112, t224 = template(112), template(224)
    np.testing.assert_allclose(t224, 2 * t112, rtol=1e-6)
    padded = template(112, padding=0.2)
    # More context: the landmarks move towards the centre.
    assert np.ptp(padded[:, 0]) < np.ptp(t112[:, 0])


def test_aligned_crop_puts_landmarks_on_the_template(lfw_root, yunet):
    from siamese.faces.detect import YuNetDetector

    image = read_image(lfw_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    face = central_face(yunet.detect(image), image.shape)
    crop = align(image, face.landmarks, size=112, padding=0.3)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # Detect again in the crop: its landmarks land near the template (detector noise ~2 px).
    again = central_face(YuNetDetector(min_score=0.3).detect(crop), crop.shape)
    assert again is not None
    err = np.linalg.norm(again.landmarks - template(112, 0.3), axis=1)
    assert err.mean() < 0.03 * 112, err


def test_alignment_undoes_a_rotation_and_scale_of_the_photo(lfw_root):
    import cv2

    image = read_image(lfw_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    lms = np.array([[101, 112], [146, 112], [126, 138], [107, 155], [144, 154]], np.float32)
    m = cv2.getRotationMatrix2D((125, 125), 25, 0.8)
    m[:, 2] += (30, -10)
    moved = cv2.warpAffine(image, m, (250, 250), borderMode=cv2.BORDER_REPLICATE)
    moved_lms = lms @ m[:, :2].T + m[:, 2]
    a, b = align(image, lms, 112), align(moved, moved_lms, 112)
    # Same face, same crop: only resampling blur differs.
    assert np.abs(a.astype(int) - b.astype(int))[20:-20, 20:-20].mean() < 6


def test_central_face_prefers_the_box_holding_the_centre():
    def face(x, y, w, h):
        return Face(np.array([x, y, w, h], np.float32), np.zeros((5, 2), np.float32), 0.9)

    big_off_centre, centred = face(0, 0, 90, 90), face(90, 90, 70, 70)
    assert central_face([big_off_centre, centred], (250, 250, 3)) is centred
    assert central_face([big_off_centre], (250, 250, 3)) is None
    assert central_face([], (250, 250, 3)) is None


def test_detection_finds_the_central_face_on_a_random_lfw_sample(lfw_root, yunet):
    from siamese.data.lfw import LFW

    lfw = LFW(lfw_root)
    refs = lfw.images()
    pick = np.random.default_rng(1).choice(len(refs), 150, replace=False)
    found = sum(central_face(yunet.detect(read_image(lfw.path(refs[i]))), (250, 250)) is not None
                for i in pick)
    assert found / len(pick) >= 0.98  # full-LFW rate (>= 99.5 %) is in docs/ and the slow test


def test_haar_detector_gives_box_and_placed_landmarks(lfw_root):
    image = read_image(lfw_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    faces = HaarDetector().detect(image)
    face = central_face(faces, image.shape)
    assert face is not None
    x, y, w, h = face.box
    assert (face.landmarks[:, 0] > x).all() and (face.landmarks[:, 0] < x + w).all()
    assert face.landmarks[0, 0] < face.landmarks[1, 0]  # left eye left of right eye


def test_no_face_in_a_blank_image(yunet):
    assert yunet.detect(np.full((200, 300, 3), 127, np.uint8)) == []
