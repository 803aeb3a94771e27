import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.data.datasets import ZIP_MAX_RATIO, open_dataset
from core.errors import DatasetError


def _png(value=128, size=8):
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tree(root, files):
    for relative in files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png())
    return root


def test_mvtec_layout_with_masks(tmp_path):
    root = _tree(tmp_path, ["train/good/0.png", "train/good/1.png", "test/good/2.png", "test/crack/3.png",
                            "test/crack/4.png", "ground_truth/crack/3_mask.png"])
    dataset = open_dataset(root)
    assert dataset.layout == "mvtec"
    assert dataset.summary() == {"layout": "mvtec", "train_good": 2, "test_good": 1, "test_defect": 2,
                                 "defect_types": {"crack": 2}, "masks": 1}
    masked = [sample for sample in dataset.test if sample.mask_path is not None]
    assert [sample.path.name for sample in masked] == ["3.png"]


def test_casting_layout_trains_on_ok_front_only(tmp_path):
    root = _tree(tmp_path, ["train/ok_front/a.jpeg", "train/def_front/b.jpeg", "test/ok_front/c.jpeg",
                            "test/def_front/d.jpeg"])
    dataset = open_dataset(root)
    assert dataset.layout == "casting"
    assert [sample.path.name for sample in dataset.train_good] == ["a.jpeg"]
    assert sorted((sample.path.name, sample.label) for sample in dataset.test) == [
        ("b.jpeg", "defect"), ("c.jpeg", "good"), ("d.jpeg", "defect")]


def test_flat_layout_splits_good_images_reproducibly(tmp_path):
    root = _tree(tmp_path, [f"good/{index}.png" for index in range(10)] + ["scratch/x.png", "dent/y.png"])
    first, second = open_dataset(root), open_dataset(root)
    assert first.layout == "flat"
    assert len(first.train_good) == 7 and first.summary()["test_good"] == 3
    assert first.summary()["defect_types"] == {"dent": 1, "scratch": 1}
    assert [s.path for s in first.train_good] == [s.path for s in second.train_good]


def test_zip_with_a_top_folder_opens_like_the_folder(tmp_path):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ["part/train/good/0.png", "part/test/good/1.png", "part/test/dent/2.png"]:
            bundle.writestr(name, _png())
    with open_dataset(archive) as dataset:
        extracted_root = dataset.root
        assert dataset.layout == "mvtec" and dataset.summary()["test_defect"] == 1
        assert dataset.load(dataset.test, 4).images.shape == (2, 4, 4)
    assert not extracted_root.exists()  # the temporary folder is removed on close


@pytest.mark.parametrize("member, message", [
    ("../evil.png", "points outside the archive"),
    ("/etc/evil.png", "absolute path"),
    ("train/../../evil.png", "points outside the archive"),
])
def test_hostile_zip_paths_are_refused_and_nothing_escapes(tmp_path, member, message):
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train/good/0.png", _png())
        bundle.writestr(member, _png())
    with pytest.raises(DatasetError, match=message):
        open_dataset(archive)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


def test_symlink_members_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train/good/0.png", _png())
        link = zipfile.ZipInfo("train/good/passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        open_dataset(archive)


def test_zip_bomb_ratio_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("train/good/0.png", b"\0" * (ZIP_MAX_RATIO * 2000))
    with pytest.raises(DatasetError, match="zip bomb"):
        open_dataset(archive)


def test_missing_empty_and_unrecognised_folders_say_what_is_accepted(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        open_dataset(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="Accepted layouts: MVTec AD"):
        open_dataset(empty)
    _tree(tmp_path / "odd", ["images/a.png"])
    with pytest.raises(DatasetError, match="Accepted layouts"):
        open_dataset(tmp_path / "odd")


def test_a_layout_without_good_training_images_is_refused(tmp_path):
    (tmp_path / "train" / "good").mkdir(parents=True)
    _tree(tmp_path, ["test/dent/a.png"])
    with pytest.raises(DatasetError, match="no good images to train on"):
        open_dataset(tmp_path)


def test_a_text_file_is_not_a_dataset(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DatasetError, match="not a folder or a .zip"):
        open_dataset(path)
