"""One configuration load shares one budget of expanded hostlist names (bounded.session, issue
12): many small lines cannot add up to millions of names either. The refusal names the
expression that crossed the limit. Budgets and expected texts written by hand."""
import pytest

from migsync import bounded, hostlist
from migsync.errors import HostlistError


def test_bracketed_expressions_share_the_budget_of_one_load():
    with bounded.session(bounded.Budget(max_names=5)):
        assert hostlist.expand("n[1-3]") == ["n1", "n2", "n3"]
        with pytest.raises(HostlistError) as exc:
            hostlist.expand("m[1-3]")  # 6 names in all
    assert str(exc.value) == ("hostlists in this configuration expand to more than 5 names in "
                              "all (in 'm[1-3]')")


def test_plain_lists_count_too():
    with bounded.session(bounded.Budget(max_names=2)):
        with pytest.raises(HostlistError) as exc:
            hostlist.expand("a,b,c")
    assert str(exc.value) == ("hostlists in this configuration expand to more than 2 names in "
                              "all (in 'a,b,c')")


def test_without_a_load_there_is_no_shared_budget():
    assert len(hostlist.expand("n[1-3000]")) == 3000
