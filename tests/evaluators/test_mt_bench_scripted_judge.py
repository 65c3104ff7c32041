"""MT-Bench judging against a deterministic loopback judge: the rating parser, retries, errors, resume, files."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evaluators.judge import ERROR_OUTPUT, JudgeConfig, parse_rating
from evaluators.mt_bench import MTBenchSpec, evaluate, judgment_file

# Marker in the model's answer -> what the judge says. FAIL_ONCE answers HTTP 500 once, then a rating (the client
# retries); ALWAYS_FAIL answers 500 every time (the judgment becomes FastChat's $ERROR$).
REPLIES = {
    "ANSWER_EIGHT": "The answer is fine. Rating: [[8]]",
    "ANSWER_EIGHT_HALF": "Good. [[8.5]]",
    "ANSWER_THREE": "Rating: [[3]]",
    "ANSWER_GARBAGE": "I cannot decide, it is somewhere between good and bad.",
    "FAIL_ONCE": "Recovered. [[6]]",
    "ALWAYS_FAIL": "",
}


@pytest.mark.parametrize(
    ("judgment", "rating"),
    [
        ("[[8]]", 8),
        ("[[8.5]]", 8.5),
        ("Rating: [[3]]", 3),
        ("score [7] here", 7),
        ("[[10]] then [2]", 10),
        ("garbage", None),
        ("[[eight]]", None),
        ("", None),
        (ERROR_OUTPUT, None),
    ],
)
def test_parse_rating(judgment, rating):
    parsed = parse_rating(judgment)
    assert math.isnan(parsed) if rating is None else parsed == rating


class ScriptedJudge:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.failed_once = False

    def reply(self, body: dict) -> tuple[int, dict]:
        prompt = body["messages"][-1]["content"]
        marker = next(m for m in sorted(REPLIES, key=len, reverse=True) if m in prompt)
        with self.lock:
            self.calls.append(marker)
            fail = marker == "ALWAYS_FAIL" or (marker == "FAIL_ONCE" and not self.failed_once)
            self.failed_once |= marker == "FAIL_ONCE"
        if fail:
            return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
        return 200, {
            "id": "scripted",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": REPLIES[marker]},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


@pytest.fixture
def scripted_judge() -> Iterator[tuple[ScriptedJudge, str]]:
    judge = ScriptedJudge()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            status, payload = judge.reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield judge, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _write_answers(path: Path, answers: dict[int, list[str]]) -> None:
    path.parent.mkdir(parents=True)
    rows = [
        {
            "question_id": qid,
            "answer_id": f"a{qid}",
            "model_id": "scripted",
            "tstamp": 0.0,
            "choices": [{"index": 0, "turns": turns}],
        }
        for qid, turns in answers.items()
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_scripted_judge_end_to_end(tmp_path, shared_data, scripted_judge, monkeypatch):
    judge, base_url = scripted_judge
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a loopback judge needs no key
    # 81 is a writing question (single-v1), 101 a reasoning one (single-math-v1 with the reference answer),
    # 82 writing. Answers already on disk: no model is loaded, only the judge runs.
    _write_answers(
        tmp_path / "model_answer" / "scripted.jsonl",
        {
            81: ["ANSWER_EIGHT", "ANSWER_EIGHT_HALF"],
            101: ["ANSWER_THREE", "ANSWER_GARBAGE"],
            82: ["FAIL_ONCE", "ALWAYS_FAIL"],
        },
    )
    data = shared_data / "mt_bench"
    spec = MTBenchSpec(
        judge=JudgeConfig(
            model="scripted-judge", base_url=base_url, max_retries=2, parallel=3, max_tokens=64
        ),
        output_dir=str(tmp_path),
        model_id="scripted",
        question_file=str(data / "question.jsonl"),
        judge_prompts=str(data.parent / "mt_bench" / "judge_prompts.jsonl"),
        reference_answers=str(data / "reference_answer" / "gpt-4.jsonl"),
        question_ids=(81, 82, 101),
    )
    fitness = evaluate("unused-model", spec)

    assert fitness.score == pytest.approx((8 + 8.5 + 3 + 6) / 4)
    assert fitness.n == 4
    assert fitness.details["n_unparseable"] == 1
    assert fitness.details["n_errors"] == 1
    assert fitness.details["per_item"] == {"81/turn1": 8, "81/turn2": 8.5, "101/turn1": 3, "82/turn1": 6}
    assert fitness.details["per_turn"] == {"1": pytest.approx((8 + 3 + 6) / 3), "2": 8.5}
    # 6 judgments; FAIL_ONCE took 2 calls, ALWAYS_FAIL 1 + 2 retries.
    assert sorted(judge.calls) == sorted(
        ["ANSWER_EIGHT", "ANSWER_EIGHT_HALF", "ANSWER_THREE", "ANSWER_GARBAGE"]
        + ["FAIL_ONCE"] * 2
        + ["ALWAYS_FAIL"] * 3
    )
    assert fitness.details["judge_calls"] == 6

    rows = [json.loads(line) for line in judgment_file(tmp_path, "scripted-judge").read_text().splitlines()]
    assert len(rows) == 6
    by_key = {(row["question_id"], row["turn"]): row for row in rows}
    assert by_key[(81, 1)]["judge"] == ["scripted-judge", "single-v1"]
    assert by_key[(81, 2)]["judge"] == ["scripted-judge", "single-v1-multi-turn"]
    assert by_key[(101, 1)]["judge"] == ["scripted-judge", "single-math-v1"]
    assert by_key[(101, 2)]["judge"] == ["scripted-judge", "single-math-v1-multi-turn"]
    assert by_key[(82, 2)]["judgment"] == ERROR_OUTPUT and by_key[(82, 2)]["score"] == -1
    assert by_key[(101, 2)]["score"] == -1
    reference = json.loads((data / "reference_answer" / "gpt-4.jsonl").read_text().splitlines()[0])
    assert reference["question_id"] == 101
    assert reference["choices"][0]["turns"][0] in by_key[(101, 1)]["user_prompt"]
    assert reference["choices"][0]["turns"][1] in by_key[(101, 2)]["user_prompt"]
    assert {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"} <= set(
        rows[0]
    )

    # Rerun: every stored judgment is reused; only the failed one is asked again (and fails again).
    judge.calls.clear()
    again = evaluate("unused-model", spec)
    assert judge.calls == ["ALWAYS_FAIL"] * 3
    assert again.details["judge_calls"] == 1
    assert (again.score, again.n, again.details["per_item"]) == (
        fitness.score,
        fitness.n,
        fitness.details["per_item"],
    )
    assert len(judgment_file(tmp_path, "scripted-judge").read_text().splitlines()) == 6
