"""Acknowledgement marks follow the chain of stored records, never past a hole."""

from hypothesis import given
from hypothesis import strategies as st

from metrotrace.gateway.acks import AckTracker

N = b"\x01"


def test_in_order_records_move_the_mark():
    t = AckTracker()
    assert [t.stored(N, s, s - 1) for s in (1, 2, 3)] == [1, 2, 3]


def test_a_lost_record_holds_the_mark_until_resent():
    t = AckTracker()
    t.stored(N, 1, 0)
    assert t.stored(N, 3, 2) == 1  # 2 was lost on the line
    assert t.stored(N, 4, 3) == 1
    assert t.stored(N, 2, 1) == 4  # the resend fills the hole
    assert t.stored(N, 3, 2) == 4  # and duplicates change nothing


def test_gaps_in_numbering_after_a_reset_are_followed():
    t = AckTracker()
    t.stored(N, 1, 0)
    t.stored(N, 2, 1)
    assert t.stored(N, 1001, 2) == 1001  # the node rebooted and took a new lease


def test_a_new_gateway_starts_from_the_first_record_it_sees():
    t = AckTracker()
    assert t.stored(N, 5001, 5000) == 5001
    assert AckTracker({N: 7}).stored(N, 9, 8) == 7


@given(st.permutations(list(range(1, 30))))
def test_any_arrival_order_ends_at_the_last_record(order):
    t = AckTracker({N: 0})
    marks = [t.stored(N, s, s - 1) for s in order]
    assert marks == sorted(marks)  # never goes back
    assert marks[-1] == 29
    # the mark never passes a record that has not arrived yet
    for i, mark in enumerate(marks):
        assert set(range(1, mark + 1)) <= set(order[: i + 1])
