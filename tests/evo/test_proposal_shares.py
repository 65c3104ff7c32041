"""Each proposer's shares of proposals parsed, passing the sandbox and novel: counted from the archive's statuses
and shown under the leaderboard's status line and in its JSON."""

import json

from evo.archive import Archive
from evo.leaderboard import main as leaderboard_main
from evo.proposal_shares import ProposalShares, proposal_shares
from evo.status import Status

FATES = {
    "llm": [
        Status.UNPARSEABLE,
        Status.UNPARSEABLE,
        Status.INVALID,
        Status.DUPLICATE,
        Status.DONE,
        Status.FAILED,
        Status.TRAINING,
        Status.PROPOSED,
    ],
    "symbolic": [Status.DONE, Status.DUPLICATE, Status.INVALID, Status.DONE],
    "baseline": [Status.DONE, Status.INVALID],
}


def _archive(path) -> Archive:
    archive = Archive(path)
    for proposer, statuses in FATES.items():
        for i, status in enumerate(statuses):
            archive.add(1, proposer, status, name=f"{proposer}_{i}", code="def loss_fn(): pass")
    return archive


def test_shares_count_each_decided_proposal_once(tmp_path):
    shares = proposal_shares(_archive(tmp_path / "a.sqlite").all())
    # llm: 7 decided (the proposed one is not), 5 parsed, 4 passing (duplicate, done, failed, training), 3 novel
    assert shares == {"llm": ProposalShares(7, 5, 4, 3), "symbolic": ProposalShares(4, 4, 3, 2)}
    assert shares["llm"].line("llm") == "llm: 7 proposals, 5 parsed (71%), 4 passing (57%), 3 novel (43%)"


def test_the_leaderboard_shows_the_shares(tmp_path, capsys):
    _archive(tmp_path / "archive.sqlite").close()
    assert leaderboard_main([str(tmp_path)]) == 0
    assert "symbolic: 4 proposals, 4 parsed (100%), 3 passing (75%), 2 novel (50%)" in capsys.readouterr().out
    assert leaderboard_main([str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["proposal_shares"]
    assert shown["llm"] == {"proposals": 7, "parsed": 5, "passing": 4, "novel": 3}
