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


class _FakeClaimer:
    """The gateway's claimer without a cluster: one pool pod at p:8080, specialised (or not) at once."""

    def __init__(self, specialise_problem: str | None = None) -> None:
        self.problem = specialise_problem
        self.joined, self.retired = [], []

    async def claim(self, route):
        from mpcloud_operator.functions.poolclaim import Claimed

        return Claimed(route.namespace, "pool-pod", "p:8080", "cf-pool-python311-none")

    async def specialise(self, session, claimed, route):
        return self.problem

    async def join(self, claimed, route):
        self.joined.append(claimed.pod)

    async def retire(self, namespace, pod):
        self.retired.append(pod)


def _pool_gateway(claimer: _FakeClaimer) -> tuple[Gateway, FunctionState]:
    from mpcloud_operator.functions.routes import PoolTarget

    class _NoSource:
        async def start(self, table): ...
        async def stop(self): ...
        def ready(self): return True  # noqa: E704

    gateway = Gateway(_NoSource(), demand_url=None, gateway_id="gw-1", queue_timeout=5)
    gateway.claimer, gateway.session = claimer, object()
    target = PoolTarget("cf-pool-python311-none", "python3.11", "uid", "default", "index.main", "0" * 64, "{}")
    route = FunctionRoute("n", "f", pool=target)
    gateway.table.set_function(route)
    return gateway, gateway.states[("n", "f")]


def test_a_cold_request_is_served_by_the_specialised_pool_pod_which_retires_when_the_functions_own_is_ready():
    async def scenario():
        claimer = _FakeClaimer()
        gateway, state = _pool_gateway(claimer)
        instance = await gateway._acquire(state, time.monotonic())
        assert instance == "p:8080" and (state.cold_starts, state.pool_starts) == (1, 1)
        await asyncio.sleep(0)
        assert claimer.joined == ["pool-pod"]
        # The Service lists the pool pod (it joined) and then the function's own pod: the pool pod retires once idle.
        gateway.table.set_slice(("n", "f"), "s", ("p:8080",))
        assert state.own_instances() == [] and claimer.retired == []
        gateway.table.set_slice(("n", "f"), "s", ("own:8080", "p:8080"))
        assert state.usable == ["own:8080"]  # no new request goes to the pool pod
        await asyncio.sleep(0.01)
        assert claimer.retired == []  # a request is still in flight there
        state.release("p:8080")
        await asyncio.sleep(0.2)
        assert claimer.retired == ["pool-pod"]
        assert gateway.metrics.cold.labels("n", "f", "pool")._sum.get() > 0

    asyncio.run(scenario())


def test_a_failed_specialisation_falls_back_to_the_functions_own_pod():
    async def scenario():
        claimer = _FakeClaimer(specialise_problem="HTTP 422: SyntaxError")
        gateway, state = _pool_gateway(claimer)
        acquiring = asyncio.ensure_future(gateway._acquire(state, time.monotonic()))
        await asyncio.sleep(0.05)
        assert claimer.retired == ["pool-pod"] and not acquiring.done()  # still waiting: the plain cold path
        gateway.table.set_slice(("n", "f"), "s", ("own:8080",))
        assert await acquiring == "own:8080" and (state.cold_starts, state.pool_starts) == (1, 0)

    asyncio.run(scenario())
