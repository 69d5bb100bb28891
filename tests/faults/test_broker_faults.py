"""The broker fails under the split layout (`pipeline stage ingest`, `pipeline stage correlate`, `pipeline gateway`
as separate processes): its JVM is SIGSTOPped (hung) or SIGKILLed (crashed) and restarted on the same data dir.

What a user sees: while the broker cannot take a write, a webhook is answered 503 with Retry-After and a JSON body
(Alertmanager retries it); nothing answered 2xx is ever lost; once the broker is back the same processes, never
restarted, take webhooks again and every alert becomes an incident.

One broker of this module's own (the tests stop and kill it); each test has its own topics.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.helpers import (
    Answer,
    Load,
    OwnBroker,
    Processes,
    alert,
    all_incidents,
    apply_topics,
    burst,
    duplicates,
    eventually,
    figures,
    opened_incidents,
    own_settings,
    pods_of,
    send,
    signal_pods,
    webhook,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    own = OwnBroker(tmp_path_factory.mktemp("own-kafka"))
    try:
        own.start()
        yield own
    finally:
        own.close()


def _refusal(answer: Answer) -> str:
    """The check every non-2xx answer must pass: 503, Retry-After, a JSON body saying the broker is away."""
    assert answer.status == 503, (answer.status, answer.body, answer.error)
    assert answer.retry_after and answer.retry_after.isdigit(), answer
    assert isinstance(answer.body, dict) and answer.body["code"] == "BROKER_UNAVAILABLE", answer.body
    return str(answer.body["error"])


async def test_a_hung_broker_gets_fast_503s_past_the_in_flight_limit_and_200_again_after_sigcont(
    broker: OwnBroker, tmp_path: Path
) -> None:
    settings = own_settings(broker.start(), tmp_path)
    await apply_topics(settings)
    limit, timeout, concurrent = 2, 3.0, 10
    async with Processes(settings, tmp_path / "logs", INGEST_MAX_IN_FLIGHT=limit,
                         INGEST_PRODUCE_TIMEOUT_S=timeout) as procs:
        ingest = procs.add("ingest", ["stage", "ingest"])
        await ingest.wait_ready()
        async with httpx.AsyncClient(base_url=ingest.url, timeout=60, trust_env=False) as http:
            t0 = time.monotonic()
            first = await send(http, 0, webhook(alert("hung", "before")), t0)
            assert first.status == 200, first

            broker.pause()
            paused_at = time.monotonic()
            try:
                bodies = [webhook(alert("hung", f"pod-{i}")) for i in range(concurrent)]
                # one client each: the requests reach ingest together, as Alertmanager's groups would
                answers = await asyncio.gather(*(_one(ingest.url, i, b, t0) for i, b in enumerate(bodies)))
                reasons = Counter(_refusal(a).split(":")[0] for a in answers)
                health_started = time.monotonic()
                health = await http.get("/api/v1/health")
                health_s = time.monotonic() - health_started
                assert health.status_code == 503, health.text
                assert health.json()["status"] == "unhealthy"
                assert health.json()["dependencies"]["kafka"]["status"] == "down"
            finally:
                broker.resume()
            stopped_s = time.monotonic() - paused_at

            async def accepted() -> Answer | None:
                answer = await send(http, 99, webhook(alert("hung", "after")), t0)
                return answer if answer.status == 200 else None

            resumed_at = time.monotonic()
            await eventually(accepted, "a webhook answered 200 after SIGCONT", timeout=60, every=0.5,
                             on_fail=procs.tails)
            back_s = time.monotonic() - resumed_at
            # Alertmanager re-sends what got 503: now taken, by the same process.
            resent = [await send(http, a.index, bodies[a.index], t0) for a in answers]
            assert [a.status for a in resent] == [200] * concurrent, resent
            assert (await http.get("/api/v1/health")).status_code == 200
            assert ingest.alive and ingest.starts == 1
        on_topic = await signal_pods(settings, "hung")

    fast = [a.ended - a.started for a in answers if "too many" in a.body["error"]]
    slow = [a.ended - a.started for a in answers if "too many" not in a.body["error"]]
    assert fast, f"no request was refused by the in-flight limit of {limit}: {reasons}"
    figures("broker-sigstop", {
        "in_flight_limit": limit, "produce_timeout_s": timeout, "concurrent_webhooks": concurrent,
        "answers_503": len(answers), "refusal_reasons": dict(reasons),
        "refused_by_limit_max_s": round(max(fast), 3), "timed_out_max_s": round(max(slow), 3) if slow else None,
        "retry_after": sorted({a.retry_after for a in answers}),
        "health_while_stopped": {"status": health.status_code, "answered_s": round(health_s, 2)},
        "broker_stopped_s": round(stopped_s, 1), "first_200_after_sigcont_s": round(back_s, 2),
        "resent_200": len(resent), "resent_reported_duplicates": sum(a.body["duplicates"] for a in resent),
        "signal_records_of_refused_alerts": sum(on_topic[f"pod-{i}"] for i in range(concurrent)),
    })


async def _one(url: str, index: int, body: dict, t0: float) -> Answer:
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
        return await send(http, index, body, t0)


async def test_broker_sigkill_during_a_webhook_burst_loses_nothing_acknowledged_and_recovers_by_itself(
    broker: OwnBroker, tmp_path: Path
) -> None:
    settings = own_settings(broker.start(), tmp_path)
    await apply_topics(settings)
    ns, alerts, per_request, clients = "burst", 1200, 2, 12
    bodies = burst(ns, alerts, per_request)
    async with Processes(settings, tmp_path / "logs", INGEST_PRODUCE_TIMEOUT_S=5) as procs:
        ingest = procs.add("ingest", ["stage", "ingest"])
        correlate = procs.add("correlate", ["stage", "correlate"])
        gateway = procs.add("gateway", ["gateway"])
        await asyncio.gather(ingest.wait_ready(), correlate.wait_ready("/metrics"), gateway.wait_ready("/api/v1/health"))

        load = Load(ingest.url, bodies, clients)
        sending = asyncio.create_task(load.run())
        await eventually(lambda: _at_least(load, len(bodies) // 4), "a quarter of the burst acknowledged",
                         on_fail=procs.tails)
        await asyncio.to_thread(broker.kill)
        killed_at = time.monotonic() - load.t0
        await asyncio.sleep(3.0)  # down for a while, as after a node loss, before it is started again
        await asyncio.to_thread(broker.start)  # same data dir, same port
        ready_at = time.monotonic() - load.t0
        answers = await sending

        assert all(a.status in (200, 503) for a in answers), Counter((a.status, a.error) for a in answers)
        refused = [a for a in answers if a.status != 200]
        assert refused, "the broker was killed mid-burst, yet no request was refused"
        for answer in refused:
            _refusal(answer)
        acknowledged = {pod for a in answers if a.status == 200 for pod in pods_of(bodies[a.index])}

        # Every alert answered 2xx is on the signals topic: none was lost with the broker.
        stored = await signal_pods(settings, ns)
        assert sorted(acknowledged - set(stored)) == []

        # Alertmanager re-sends what got 503: taken at once by the same, never restarted processes.
        async with httpx.AsyncClient(base_url=ingest.url, timeout=60, trust_env=False) as http:
            resent = [await send(http, a.index, bodies[a.index], load.t0) for a in refused]
        assert [a.status for a in resent] == [200] * len(refused), [(a.status, a.body) for a in resent]

        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as http:

            async def all_there() -> list[dict] | None:
                found = await all_incidents(http, ns)
                return found if len(found) >= alerts else None

            found = await eventually(all_there, f"{alerts} incidents in the gateway", timeout=120,
                                     on_fail=procs.tails)
            health = await http.get("/api/v1/health")
        assert health.status_code == 200, health.text
        assert all(p.alive and p.starts == 1 for p in (ingest, correlate, gateway)), procs.tails()

    resources = Counter(i["resource"] for i in found)
    assert {f"Pod/pod-{n}" for n in range(alerts)} == set(resources)
    assert duplicates(resources) == {}  # no resource has two incidents
    opened = await opened_incidents(settings, ns)
    assert len(opened.events) == alerts and opened.opened_twice == {}  # each incident opened once, never again
    final = await signal_pods(settings, ns)
    ok_times = [a.ended for a in answers if a.status == 200]
    gap = max((b - a for a, b in zip(sorted(ok_times), sorted(ok_times)[1:], strict=False)), default=0.0)
    figures("broker-kill", {
        "alerts": alerts, "requests": len(bodies), "alerts_per_request": per_request, "clients": clients,
        "answers": dict(Counter(a.status for a in answers)), "retry_after": sorted({a.retry_after for a in refused}),
        "refusal_reasons": dict(Counter(_refusal(a).split(":")[0] for a in refused)),
        "killed_at_s": round(killed_at, 2), "broker_ready_at_s": round(ready_at, 2),
        "outage_s": round(ready_at - killed_at, 1), "longest_gap_without_2xx_s": round(gap, 2),
        "acknowledged_alerts": len(acknowledged), "acknowledged_missing_from_signals": 0,
        "resent_requests": len(resent), "resent_200": sum(1 for a in resent if a.status == 200), "resent_reported_duplicates": sum(a.body["duplicates"] for a in resent),
        "incidents": len(found), "resources_with_2_incidents": 0, "incidents_opened_twice": 0,
        "incident_opened_records": opened.records, "opened_records_redelivered_same_id": opened.redelivered,
        "signal_records": sum(final.values()), "alerts_with_2_signal_records": len(duplicates(final.elements())),
        "processes_restarted": 0,
    })


async def _at_least(load: Load, count: int) -> bool:
    return load.ok >= count
