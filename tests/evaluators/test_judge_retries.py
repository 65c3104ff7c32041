"""Judges retry truncated bodies, empty bodies and empty replies with the proposer's bounded backoff: MT-Bench
against a loopback judge whose first replies to each prompt are broken still gets the judge's rating for every
turn, and a judge that never answers leaves the turn unrated with the reason instead of aborting the evaluation."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evaluators.judge import ERROR_OUTPUT, JudgeConfig, ask
from evaluators.mt_bench import MTBenchSpec, evaluate, judgment_file

RATINGS = {"ANSWER_SEVEN": 7, "ANSWER_FIVE": 5, "ANSWER_NINE": 9, "ANSWER_FOUR": 4}


def _completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": "scripted",
            "object": "chat.completion",
            "created": 0,
            "model": "scripted-judge",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


BROKEN = {
    "truncated": lambda: _completion("Rating: [[1]]")[:45],  # a 200 whose JSON stops half-way
    "empty_body": lambda: b"",  # a 200 with no body at all
    "empty_reply": lambda: _completion(""),  # a well-formed completion without text
}


class BrokenFirstJudge:
    """Answers the n-th request for a prompt with ``script[n]`` while there is one, then with the rating."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def reply(self, body: dict) -> bytes:
        prompt = body["messages"][-1]["content"]
        with self.lock:
            n = self.calls[prompt]
            self.calls[prompt] += 1
        if n < len(self.script):
            return BROKEN[self.script[n]]()
        last = max(RATINGS, key=prompt.rfind)  # the answer being graded is the last one in the prompt
        return _completion(f"Fine. Rating: [[{RATINGS[last]}]]" if last in prompt else "Rating: [[2]]")


@pytest.fixture
def judge_server(request) -> Iterator[tuple[BrokenFirstJudge, str]]:
    judge = BrokenFirstJudge(request.param)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            payload = judge.reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield judge, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _spec(tmp_path: Path, shared_data: Path, base_url: str, max_retries: int) -> MTBenchSpec:
    answers = {
        81: ["ANSWER_SEVEN", "ANSWER_FIVE"],
        82: ["ANSWER_NINE", "ANSWER_FOUR"],
    }  # two writing questions
    path = (
        tmp_path / "model_answer" / "scripted.jsonl"
    )  # answers on disk: no model is loaded, only the judge runs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "question_id": q,
                    "answer_id": f"a{q}",
                    "model_id": "scripted",
                    "tstamp": 0.0,
                    "choices": [{"index": 0, "turns": turns}],
                }
            )
            + "\n"
            for q, turns in answers.items()
        )
    )
    data = shared_data / "mt_bench"
    return MTBenchSpec(
        judge=JudgeConfig(model="scripted-judge", base_url=base_url, max_retries=max_retries, parallel=4),
        output_dir=str(tmp_path),
        model_id="scripted",
        question_file=str(data / "question.jsonl"),
        judge_prompts=str(data / "judge_prompts.jsonl"),
        reference_answers=str(data / "reference_answer" / "gpt-4.jsonl"),
        question_ids=(81, 82),
    )


@pytest.mark.parametrize(
    "judge_server",
    [["truncated", "empty_reply"], ["truncated", "empty_body"]],
    indirect=True,
    ids=["truncated-then-empty-reply", "truncated-then-empty-body"],
)
def test_every_turn_gets_the_judges_rating_through_broken_replies(
    tmp_path, shared_data, judge_server, monkeypatch
):
    judge, base_url = judge_server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fitness = evaluate("unused-model", _spec(tmp_path, shared_data, base_url, max_retries=2))

    assert fitness.details["per_item"] == {"81/turn1": 7, "81/turn2": 5, "82/turn1": 9, "82/turn2": 4}
    assert fitness.n == 4 and fitness.details["n_errors"] == 0 and fitness.details["n_unparseable"] == 0
    assert fitness.score == pytest.approx((7 + 5 + 9 + 4) / 4)
    assert sorted(judge.calls.values()) == [3, 3, 3, 3]  # broken, broken, rating: for each of the 4 prompts
    rows = [json.loads(line) for line in judgment_file(tmp_path, "scripted-judge").read_text().splitlines()]
    assert len(rows) == 4 and not any("error" in row for row in rows)


@pytest.mark.parametrize("judge_server", [["truncated", "empty_reply", "empty_body"]], indirect=True)
def test_a_judge_that_never_answers_leaves_the_turn_unrated_with_the_reason(
    tmp_path, shared_data, judge_server, monkeypatch
):
    judge, base_url = judge_server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fitness = evaluate(
        "unused-model", _spec(tmp_path, shared_data, base_url, max_retries=1)
    )  # 2 tries: too few

    assert fitness.n == 0 and fitness.details["n_errors"] == 4 and fitness.details["per_item"] == {}
    rows = [json.loads(line) for line in judgment_file(tmp_path, "scripted-judge").read_text().splitlines()]
    assert {row["judgment"] for row in rows} == {ERROR_OUTPUT} and {row["score"] for row in rows} == {-1}
    assert all(row["error"].startswith("gave up after 2 tries: EmptyReply") for row in rows)

    # A rerun asks again for the unrated turns: per prompt the 3rd reply is broken too, the 4th is the rating.
    again = evaluate("unused-model", _spec(tmp_path, shared_data, base_url, max_retries=1))
    assert again.details["per_item"] == {"81/turn1": 7, "81/turn2": 5, "82/turn1": 9, "82/turn2": 4}
    assert again.details["judge_calls"] == 4 and sorted(judge.calls.values()) == [4, 4, 4, 4]


@pytest.mark.parametrize("judge_server", [["empty_body", "truncated", "empty_reply"]], indirect=True)
def test_ask_returns_the_first_usable_reply(judge_server):
    judge, base_url = judge_server
    config = JudgeConfig(model="scripted-judge", base_url=base_url, max_retries=3)
    reply = ask(config.client(), config, [{"role": "user", "content": "rate ANSWER_NINE please"}])
    assert reply.text == "Fine. Rating: [[9]]" and reply.error is None
    assert sum(judge.calls.values()) == 4
