"""The published results (results/*.json) and the pages made from them cannot drift apart.

The README's table, the docs' results page and each method page's table are made from the
committed results files; these tests fail when a committed page differs from what the files
give, or a number in a file is missing from the pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ditto.cli import main
from ditto.errors import DittoError
from ditto.experiments.report import (
    README_BEGIN,
    README_END,
    glance_table,
    load_published,
    method_table,
    readme_with_table,
    results_page,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def published():
    return load_published(RESULTS)


def test_the_committed_results_files_load_and_cover_the_headline_envs(published):
    names = {p["name"] for p in published}
    assert {"cartpole", "pendulum", "pong-cpu"} <= names
    for record in published:
        assert record["command"] and record["source"] and record["protocol"]
        assert record.get("machine") and record.get("date")
        for row in record["results"]:
            assert len(row["seed_returns"]) == row["seeds"] == len(row["seed_list"])


def test_readme_table_is_the_one_the_results_files_give(published):
    readme = (ROOT / "README.md").read_text()
    assert README_BEGIN in readme and README_END in readme
    assert readme_with_table(readme, published) == readme, (
        "README.md's results table differs from results/*.json: run `ditto report --readme`"
    )


def test_readme_check_command_fails_on_a_stale_table(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\n| stale |\n{README_END}\n")
    args = ["report", "--readme", str(readme), "--results", str(RESULTS)]
    assert main([*args, "--check"]) == 1
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    assert "| stale |" not in readme.read_text() and "results/cartpole.json" in readme.read_text()


def test_every_published_number_is_on_the_results_page_and_the_method_pages(published):
    page = results_page(published)
    for record in published:
        assert f"{{ #{record['name']} }}" in page and record["command"] in page
        for row in record["results"]:
            assert f"{row['return_mean']:.1f}" in page
            for value in row["seed_returns"]:
                assert f"{value:.1f}" in page
            mine = method_table(published, row["algo"])
            assert f"[{record['name']}](../results.md#{record['name']})" in mine
    assert glance_table(published, link="#{name}") in page


def test_a_method_page_without_results_and_an_unknown_method():
    assert method_table([], "ditto").count("\n") == 1  # the header alone
    with pytest.raises(ValueError, match="no method"):
        method_table([], "no_such_method")


def test_a_results_file_must_be_named_as_its_name(tmp_path):
    record = json.loads((RESULTS / "cartpole.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps(record))
    with pytest.raises(DittoError, match="not its file's"):
        load_published(tmp_path)
