"""Data: caption folders (captions.jsonl + images/), COCO caption files, and splits."""

import json

import pytest
from PIL import Image

from slime_core.infra.errors import SlimeError
from slime_core.stages.data import Sample, load_coco, load_folder, select_split

from conftest import DEMO, SHARED, demo_records, make_folder


def test_demo_gallery(demo_samples):
    records = demo_records()
    assert len(demo_samples) == len(records) > 0
    for s, rec in zip(demo_samples, records):
        assert s.name == rec["image"]
        assert s.path == DEMO / "images" / rec["image"] and s.path.exists()
        assert s.captions == rec["captions"] and all(isinstance(c, str) for c in s.captions)
        assert s.split == rec["split"]
        assert not {"image", "captions", "split"} & set(s.meta)


def test_split_selection(tmp_path):
    folder = make_folder(tmp_path, demo_records()[:5], ["train", "train", "dev", "test", "test"])
    assert [s.split for s in load_folder(folder, "train")] == ["train", "train"]
    assert len(load_folder(folder, ["dev", "test"])) == 3
    assert len(load_folder(folder)) == 5
    with pytest.raises(SlimeError, match=r"no samples in split \['val'\]; this dataset has splits \['dev', 'test', 'train'\]"):
        load_folder(folder, "val")


def test_select_split_none_keeps_everything():
    samples = [Sample("a.jpg", None, ["x"], "train"), Sample("b.jpg", None, ["y"], "test")]
    assert select_split(samples, None) is samples
    assert select_split(samples, "test") == [samples[1]]


def test_missing_index(tmp_path):
    with pytest.raises(SlimeError, match="no captions.jsonl"):
        load_folder(tmp_path)


@pytest.mark.parametrize("bad_line", ["{not json", json.dumps({"captions": ["x"]}), json.dumps({"image": "a.jpg"}),
                                      json.dumps({"image": "a.jpg", "captions": 3})])
def test_bad_record_names_the_line(tmp_path, bad_line):
    good = json.dumps({"image": "a.jpg", "captions": ["x"], "split": "test"})
    (tmp_path / "captions.jsonl").write_text(good + "\n\n" + bad_line + "\n")
    with pytest.raises(SlimeError, match=r"captions.jsonl:3: not a valid record"):
        load_folder(tmp_path, require_images=False)


def test_missing_image(tmp_path):
    folder = make_folder(tmp_path, demo_records()[:2])
    missing = demo_records()[1]["image"]
    (folder / "images" / missing).unlink()
    with pytest.raises(SlimeError, match=f"image .*{missing} is missing"):
        load_folder(folder)
    samples = load_folder(folder, require_images=False)
    assert samples[0].path is not None and samples[1].path is None


def test_image_present_false_means_captions_only(tmp_path):
    (tmp_path / "captions.jsonl").write_text(json.dumps(
        {"image": "x.jpg", "captions": ["A cat ."], "split": "val", "image_present": False, "source": "COCO"}) + "\n")
    [s] = load_folder(tmp_path, require_images=False)
    assert s.path is None and s.split == "val" and s.meta == {"image_present": False, "source": "COCO"}


def write_coco(path, images, annotations):
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_load_coco(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "000001.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "000002.jpg")
    coco = write_coco(tmp_path / "captions_val2017.json",
                      [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.jpg"}],
                      [{"image_id": 1, "caption": " A cat on a mat. "}, {"image_id": 2, "caption": "A dog."},
                       {"image_id": 1, "caption": "A cat sleeping."}])
    samples = load_coco(coco, tmp_path / "img")
    by_name = {s.name: s for s in samples}
    assert by_name["000001.jpg"].captions == ["A cat on a mat.", "A cat sleeping."]
    assert by_name["000002.jpg"].captions == ["A dog."]
    assert all(s.split == "val2017" for s in samples)
    assert by_name["000001.jpg"].meta == {"image_id": 1}
    assert by_name["000001.jpg"].path == tmp_path / "img" / "000001.jpg"
    assert {s.split for s in load_coco(coco, tmp_path / "img", split="dev")} == {"dev"}


def test_load_coco_missing_images(tmp_path):
    coco = write_coco(tmp_path / "captions_train2017.json", [{"id": 7, "file_name": "7.jpg"}], [])
    with pytest.raises(SlimeError, match="needs image_dir"):
        load_coco(coco)
    with pytest.raises(SlimeError, match="7.jpg is missing"):
        load_coco(coco, tmp_path)
    [s] = load_coco(coco, tmp_path, require_images=False)
    assert s.path is None and s.captions == [] and s.split == "train2017"
    [s] = load_coco(coco, require_images=False)
    assert s.path is None


@pytest.mark.parametrize("content", ["[]", "{", json.dumps({"images": []})])
def test_load_coco_bad_file(tmp_path, content):
    bad = tmp_path / "captions_val2017.json"
    bad.write_text(content)
    with pytest.raises(SlimeError, match="not a COCO captions file"):
        load_coco(bad, require_images=False)


def test_load_coco_absent_file(tmp_path):
    with pytest.raises(SlimeError, match="no such COCO captions file"):
        load_coco(tmp_path / "nope.json", require_images=False)


@pytest.mark.skipif(not (SHARED / "flickr8k_subset1000" / "captions.jsonl").exists(), reason="../shared absent")
def test_shared_flickr_splits():
    samples = load_folder(SHARED / "flickr8k_subset1000")
    assert {s.split for s in samples} == {"train", "dev", "test"}
    assert len({s.name for s in samples}) == len(samples)
    demo = {r["image"] for r in demo_records()}
    assert demo <= {s.name for s in select_split(samples, "test")}  # the demo gallery is the test split


@pytest.mark.skipif(not (SHARED / "coco_val2017_captions_only" / "captions.jsonl").exists(), reason="../shared absent")
def test_shared_coco_captions_only():
    samples = load_folder(SHARED / "coco_val2017_captions_only", require_images=False)
    assert samples and all(s.path is None and s.captions for s in samples)
