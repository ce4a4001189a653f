import argparse
import json

from metrotrace.server.trace import cli, jsonld
from metrotrace.server.trace.examples import M1, A, food_events


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="metrotrace")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_trace_recall_and_export(tmp_path, capsys):
    doc = tmp_path / "food.jsonld"
    doc.write_text(json.dumps(jsonld.write_document(food_events())))
    data = ["--data-dir", str(tmp_path / "data")]
    assert run(["epcis", "import", str(doc), *data], capsys)[0] == 0
    code, out, _ = run(["trace", "forward", A, *data], capsys)
    assert code == 0 and len(json.loads(out)["sales"]) == 2
    code, out, _ = run(["trace", "backward", M1, "--method", "index", *data], capsys)
    assert code == 0 and json.loads(out)["producers"]
    code, out, _ = run(["trace", "recall", A, "--format", "csv", *data], capsys)
    assert out.count("\nsale,") == 2
    code, out, _ = run(["trace", "balance", "--holder", M1, "--lot", A, *data], capsys)
    assert json.loads(out)[0]["held"] == 38_500_000
    code, out, _ = run(["epcis", "export", *data], capsys)
    assert jsonld.read_document(json.loads(out)) == food_events()


def test_import_refuses_a_bad_document_whole(tmp_path, capsys):
    bad = jsonld.write_document(food_events())
    bad["epcisBody"]["eventList"][3]["quantityList"][0]["epcClass"] = "urn:epc:class:lgtin:1.2.X"
    doc = tmp_path / "bad.jsonld"
    doc.write_text(json.dumps(bad))
    data = ["--data-dir", str(tmp_path / "data")]
    code, _, err = run(["epcis", "import", str(doc), *data], capsys)
    assert code == 2 and "event 3: quantityList[0].epcClass" in err
    code, out, _ = run(["epcis", "export", *data], capsys)
    assert json.loads(out)["epcisBody"]["eventList"] == []
