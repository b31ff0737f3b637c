"""The mock harness answers a repeated run from a cache: each caller still gets objects of its own."""

from testbed.harness import run_stack


def test_a_repeated_run_is_a_copy_that_a_test_may_change_freely():
    first = run_stack(stack="dev")
    registered = len(first.resources)
    first.resources[0].inputs.clear()
    first.resources.clear()
    again = run_stack(stack="dev")
    assert len(again.resources) == registered and again.resources[0].inputs
