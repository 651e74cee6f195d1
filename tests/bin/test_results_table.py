"""RESULTS.md sections: one table per setting, replaced in place, other sections kept."""
from __future__ import annotations

from audiossl.bin.results_table import CAVEAT, minutes, with_section


def test_sections_are_added_replaced_and_kept():
    first = with_section("", "Demo setting", ["| demo v1 |"])
    assert first.startswith("# CTC ASR") and CAVEAT in first and "## Demo setting\n\n| demo v1 |\n" in first
    both = with_section(first, "Long setting", ["| long |"])
    assert both.index("## Demo setting") < both.index("## Long setting")
    again = with_section(both, "Demo setting", ["| demo v2 |"])
    assert "demo v1" not in again and "| demo v2 |" in again and "| long |" in again
    assert again.count("## Demo setting") == 1 and again.count(CAVEAT) == 1
    assert with_section(again, "Demo setting", ["| demo v2 |"]) == again
    assert again.index("## Demo setting") < again.index("## Long setting")  # replaced where it stood
    assert with_section(again, " Long setting ", ["| long v2 |"]).count("## Long setting") == 1


def test_document_starting_with_a_section():
    document = "## A\n\nold\n"
    assert with_section(document, "A", ["new"]) == "## A\n\nnew\n"


def test_minutes():
    assert minutes(0) == "0:00" and minutes(61.9) == "1:01" and minutes(3600) == "60:00"
