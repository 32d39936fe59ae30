"""Each dataset refusal of issue 15 through ``mlkd data summary``: exit 2, one line, naming the
path and the option (or dataset name) to use."""

import pytest

from fault_helpers import run_cli
from replicas import COCO_SAMPLE, write_coco_list
from replicas_layouts import write_coco2017, write_csv_list, write_voc2012


def write_config(tmp_path, name, options) -> str:
    text = f"data:\n  name: {name}\n  options:\n" + "".join(f"    {k}: {v}\n" for k, v in options.items())
    (tmp_path / "exp.yaml").write_text(text)
    return str(tmp_path / "exp.yaml")


def coco2017_as_2014(tmp_path):
    write_coco2017(tmp_path / "coco")
    return "coco2014", {"root": tmp_path / "coco"}, [str(tmp_path / "coco"), "data.name=coco2017"]


def voc2012_as_2007(tmp_path):
    folder = write_voc2012(tmp_path / "VOCdevkit" / "VOC2012")
    return "voc2007", {"root": folder}, [str(folder), "is a VOC2012 folder", "data.name=", "voc0712"]


def nus_empty(tmp_path):
    return "nuswide", {"root": tmp_path}, [str(tmp_path / "ConceptsList"), "csv:"]


def one_list_file(tmp_path):
    listing = write_coco_list(tmp_path / "val.json", "val2014", COCO_SAMPLE["val2014"])
    return "coco2014", {"root": tmp_path, "list_file": listing}, [str(listing), "list_file: {train:"]


def list_cell(tmp_path):
    listing = write_csv_list(tmp_path / "d.csv", header=("path", "labels", "split"), images=False)
    return "list", {"train_file": listing, "test_file": listing}, [str(listing), "format: csv_list"]


@pytest.mark.parametrize("case", [coco2017_as_2014, voc2012_as_2007, nus_empty, one_list_file, list_cell])
def test_refusal_is_one_line(tmp_path, capsys, case):
    name, options, needles = case(tmp_path)
    code, err = run_cli(["data", "summary", write_config(tmp_path, name, options)], capsys)
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text
    for needle in needles:
        assert needle in text, text
