import json

import pytest

from trainer.data import (
    DataFormatError,
    load_preference_dataset,
    normalize_rows,
    read_rows,
    span_token_weights,
)


def test_preference_format_is_detected(preference_file):
    fmt, dataset = load_preference_dataset(preference_file)
    assert fmt == "preference"
    assert dataset.column_names == ["prompt", "chosen", "rejected", "chosen_span", "rejected_span"]
    assert dataset[0]["chosen_span"] == [-1, -1]


def test_spin_rows_become_real_vs_generated_pairs(spin_file):
    fmt, dataset = load_preference_dataset(spin_file)
    assert fmt == "spin"
    row = dataset[0]
    assert row["prompt"][-1]["role"] == "user"
    assert row["chosen"][0]["content"].startswith("a calm sentence")
    assert row["rejected"][0]["content"].startswith("LOUD")


def test_granular_flag_decides_the_side(granular_file):
    fmt, dataset = load_preference_dataset(granular_file)
    assert fmt == "granular"
    rejected_side, chosen_side = dataset[0], dataset[1]
    assert rejected_side["chosen_span"] == [-1, -1] and rejected_side["rejected_span"][0] > 0
    assert chosen_side["rejected_span"] == [-1, -1] and chosen_side["chosen_span"][0] > 0
    start, end = rejected_side["rejected_span"]
    assert rejected_side["rejected"][start:end] == "7"


def test_implicit_prompt_is_extracted():
    rows = [
        {
            "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}],
        }
    ]
    _, (row,) = normalize_rows(rows)
    assert row["prompt"] == [{"role": "user", "content": "hi"}]
    assert row["rejected"] == [{"role": "assistant", "content": "go away"}]


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"prompt": "p", "chosen": "", "rejected": "r"}, "chosen", "is empty"),
        ({"prompt": "p", "chosen": 3, "rejected": "r"}, "chosen", "must be a non-empty string"),
        (
            {"prompt": "p", "chosen": "c", "rejected": [{"role": "assistant", "content": "r"}]},
            "prompt",
            "mixes",
        ),
        (
            {
                "prompt": "p",
                "correct_response": "abc",
                "incorrect_response": "abd",
                "masked_region": [2, 9, -1],
            },
            "masked_region",
            "outside",
        ),
        (
            {
                "prompt": "p",
                "correct_response": "abc",
                "incorrect_response": "abd",
                "masked_region": [0, 1, 0],
            },
            "masked_region",
            "flag",
        ),
        (
            {"real": [{"role": "user", "content": "q"}], "generated": [{"role": "user", "content": "q"}]},
            "real",
            "assistant",
        ),
    ],
)
def test_malformed_rows_name_the_row_and_field(row, field, problem):
    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    rows = [row] if set(row) != set(good) else [good, row]
    with pytest.raises(DataFormatError) as err:
        normalize_rows(rows)
    assert err.value.field == field and problem in str(err.value)
    assert f"row {len(rows) - 1}" in str(err.value)


def test_json_list_and_bad_jsonl(tmp_path):
    listed = tmp_path / "d.json"
    listed.write_text(json.dumps([{"prompt": "p", "chosen": "c", "rejected": "r"}]))
    assert read_rows(listed)[0]["chosen"] == "c"
    broken = tmp_path / "d.jsonl"
    broken.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{not json\n')
    with pytest.raises(DataFormatError, match="row 1"):
        read_rows(broken)
    with pytest.raises(ValueError, match="cannot tell the data format"):
        normalize_rows([{"question": "q"}])


def test_span_token_weights_cover_overlapping_tokens():
    assert span_token_weights(["The", " answer", " is", " 17", "."], [14, 16]) == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert span_token_weights(["a", "b"], [-1, -1]) == [1.0, 1.0]
