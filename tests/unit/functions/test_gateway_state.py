"""The gateway's per-function balancing and queueing (FunctionState), without sockets."""

from __future__ import annotations

import asyncio
import time

import pytest

from mpcloud_operator.functions.gateway import FunctionState, Gateway, Metrics, NoCapacity
from mpcloud_operator.functions.routes import FunctionRoute


def _state(concurrency=2, max_instances=10, instances=("a:1", "b:1")) -> FunctionState:
    state = FunctionState(FunctionRoute("n", "f", concurrency=concurrency, max_instances=max_instances), Metrics())
    state.set_instances(list(instances))
    return state


def test_least_in_flight_then_the_concurrency_limit():
    state = _state(concurrency=2)
    picks = [state.try_acquire() for _ in range(4)]
    assert sorted(picks) == ["a:1", "a:1", "b:1", "b:1"] and picks[0] != picks[1]
    assert state.try_acquire() is None and state.total == 4  # 2 instances × concurrency 2
    state.release("b:1")
    assert state.try_acquire() == "b:1"


def test_max_instances_caps_the_instances_used():
    state = _state(concurrency=1, max_instances=1)
    assert state.try_acquire() == "a:1" and state.try_acquire() is None


def test_waiters_are_served_in_order_when_capacity_frees():
    async def scenario():
        state = _state(concurrency=1, instances=("a:1",))
        assert state.try_acquire() == "a:1"
        deadline = time.monotonic() + 5
        first, second = state.enqueue(10), state.enqueue(10)
        waits = [asyncio.ensure_future(state.wait(first, deadline)), asyncio.ensure_future(state.wait(second, deadline))]
        assert state.try_acquire() is None  # nobody overtakes the queue
        await asyncio.sleep(0)
        state.release("a:1")
        got_first = await waits[0]
        assert not waits[1].done()
        state.release(got_first)
        return got_first, await waits[1], state.total

    assert asyncio.run(scenario()) == ("a:1", "a:1", 1)


def test_new_instances_wake_waiters_and_deadline_gives_no_capacity():
    async def scenario():
        state = _state(instances=())
        place = state.enqueue(10)
        waiter = asyncio.ensure_future(state.wait(place, time.monotonic() + 5))
        await asyncio.sleep(0)
        state.set_instances(["c:1"])
        assert await waiter == "c:1"
        late = state.enqueue(10)
        with pytest.raises(NoCapacity, match="free instance"):
            await asyncio.wait_for(state.wait(late, time.monotonic() + 0.01), 0.01 + 5)
        # Busy, not cold: an instance exists; with none, the message says it is scaling from zero.
        state.set_instances([])
        with pytest.raises(NoCapacity, match="scaling from zero"):
            await state.wait(state.enqueue(10), time.monotonic())
        assert not state.waiters or all(w.done() for w in state.waiters)

    asyncio.run(scenario())


def test_queue_is_bounded():
    async def scenario():
        state = _state(instances=())
        state.enqueue(1)
        with pytest.raises(NoCapacity, match="waiting already"):
            state.enqueue(1)

    asyncio.run(scenario())


def test_a_refused_instance_is_dropped_until_routes_name_it_again():
    state = _state(concurrency=5)
    state.drop("a:1")
    assert {state.try_acquire() for _ in range(3)} == {"b:1"}
    state.set_instances(["a:1", "b:1"])
    assert state.try_acquire() == "a:1"


def test_demand_body_has_the_contract_fields():
    class _NoSource:
        async def start(self, table): ...
        async def stop(self): ...
        def ready(self): return True  # noqa: E704

    gateway = Gateway(_NoSource(), demand_url=None, gateway_id="gw-1")
    state = _state()
    state.requests, state.cold_starts = 5, 1
    state.try_acquire()
    assert gateway._demand_body(state) == {"namespace": "n", "name": "f", "waiting": 0, "inFlight": 1, "requests": 5,
                                           "coldStarts": 1, "poolStarts": 0, "instances": 2, "gateway": "gw-1"}
