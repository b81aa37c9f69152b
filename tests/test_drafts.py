"""argen.transformer.drafts: the corpus lookup that speculative decoding drafts from."""

import random
from collections import Counter, defaultdict

import pytest
import torch
from safetensors.torch import save_file

from argen.transformer.drafts import FILE, BatchDrafts, CorpusDrafts


def brute_force(sequences, contexts):
    """Context tuple -> most frequent next token (ties: smallest id), counted the obvious way."""
    counts = defaultdict(Counter)
    for s in sequences:
        for n in contexts:
            for i in range(n, len(s)):
                counts[tuple(s[i - n : i])][s[i]] += 1
    return {k: min(t for t, c in cnt.items() if c == max(cnt.values())) for k, cnt in counts.items()}


def test_table_is_the_most_frequent_continuation_of_every_context():
    rng = random.Random(0)
    sequences = [[rng.randrange(6) for _ in range(rng.randrange(1, 40))] for _ in range(200)]
    drafts = CorpusDrafts(sequences, contexts=(3, 1, 2))
    assert drafts.contexts == (3, 2, 1)
    expected = brute_force(sequences, (1, 2, 3))
    assert len(drafts.table) == len(expected)
    assert all(drafts.table[CorpusDrafts._key(k)] == v for k, v in expected.items())


def test_the_longest_known_context_wins_and_proposals_chain():
    drafts = CorpusDrafts([[1, 2, 3, 4], [9, 3, 7], [9, 3, 7], [5, 5]], contexts=(2, 1))
    assert drafts.next_token([1, 2, 3]) == 4  # "2 3" was seen: its continuation, not "3 -> 7"
    assert drafts.next_token([8, 3]) == 7  # "8 3" unseen: falls back to "3", seen twice as "3 7"
    assert drafts.next_token([]) is None and drafts.next_token([6]) is None
    rows = drafts.propose([[1, 2], [9], [6], [5]], 3)
    assert rows.tolist() == [[3, 4, -1], [3, 7, -1], [-1, -1, -1], [5, 5, 5]]  # "5 -> 5" repeats


def test_a_row_is_drafted_from_its_own_past_before_the_corpus():
    batch = BatchDrafts(CorpusDrafts([[1, 2, 3, 4]], contexts=(2, 1)), 3)
    rows = [[1, 2, 9, 1, 2, 0], [1, 2, 0, 0, 0, 0], [1, 2, 3, 0, 0, 0]]
    drafts = batch.propose(rows, [5, 2, 3], [False, False, True], 2)
    # row 0 wrote "1 2 -> 9" before: its own continuation wins; row 1 has only the corpus's; row 2 is done
    assert drafts.tolist() == [[9, 1], [3, 4], [-1, -1]]
    rows[1][2:4] = [7, 1]  # row 1 commits "7 1": now its own "1 -> 2" and the corpus agree, "2 -> 7" is its own
    assert batch.propose(rows, [5, 4, 3], [False, False, True], 2).tolist() == [[9, 1], [2, 7], [-1, -1]]


def test_saved_with_an_export_and_loaded_back(tmp_path):
    sequences = [[3, 1, 4, 1, 5], [9, 2, 6], [5]]
    path = CorpusDrafts(sequences, contexts=(4, 2)).save(tmp_path)
    assert path == tmp_path / FILE
    loaded = CorpusDrafts.load(tmp_path)
    assert loaded.sequences == sequences and loaded.contexts == (4, 2)
    assert CorpusDrafts.load(tmp_path / "elsewhere") is None


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        CorpusDrafts([])
    with pytest.raises(ValueError, match="positive"):
        CorpusDrafts([[1, 2]], contexts=(2, 0))
    save_file({"tokens": torch.arange(5, dtype=torch.int32), "lengths": torch.tensor([2, 2]),
               "contexts": torch.tensor([2])}, str(tmp_path / FILE))
    with pytest.raises(ValueError, match="does not match"):
        CorpusDrafts.load(tmp_path)
