"""Concurrent-call limits of ``sipcore-proxy`` (dialog profiles), in-process
on real 127.0.0.1 sockets: the call over a limit is answered 486 (or 503)
and makes no dialog; a call counts from its INVITE until its BYE or
failure; callers and accounts are counted apart."""

from __future__ import annotations

from pathlib import Path

from app_helpers import Caller, Uas, app_toml, run, running, sip_udp


def limits(**values: object) -> str:
    lines = "".join(
        f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str) else f"{k} = {v}\n"
        for k, v in values.items()
    )
    return "[limits]\n" + lines


def test_the_call_over_the_per_caller_limit_gets_486_until_a_call_ends(tmp_path: Path) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        uas.hold = True  # calls ring until the test answers them
        async with running(app_toml(tmp_path, uas.uri, extra=limits(per_caller=2))) as app:
            alice = await Caller.open(sip_udp(app), "alice")
            alice.invite("a1")
            alice.invite("a2")
            await uas.wait_for("two INVITEs held", lambda: len(uas.held) == 2)
            assert app.tracker.profile_size("caller", "alice") == 2  # counted from the INVITE
            busy = await alice.call("a3")
            assert (busy.status_code, busy.reason) == (486, "Busy Here")
            assert app.tracker.get("a3", "a3-tag") is None  # refused before dlg_manage
            assert [r.call_id for r in uas.received if r.method == "INVITE"] == ["a1", "a2"]
            # Another caller is not limited by alice's calls.
            bob = await Caller.open(sip_udp(app), "bob")
            bob.invite("b1")
            await uas.wait_for("bob's INVITE", lambda: len(uas.held) == 3)
            # alice's first call is answered and hung up: she may call again.
            uas.answer(200)
            answered = await alice.final("a1")
            alice.ack(answered)
            assert (await alice.bye(answered)).status_code == 200
            assert app.tracker.profile_size("caller", "alice") == 1
            alice.invite("a4")
            await uas.wait_for("a4 held", lambda: len(uas.held) == 3)
            # A call that fails leaves the profile too.
            uas.answer(486)  # a2
            assert (await alice.final("a2")).status_code == 486
            assert app.tracker.profile_size("caller", "alice") == 1
            while uas.held:
                uas.answer(480)
            assert (await bob.final("b1")).status_code == 480
            assert (await alice.final("a4")).status_code == 480
            assert app.tracker.profile_size("caller") == 0
            assert app.router.counters.over_caller_limit == 1
            for caller in (alice, bob):
                caller.close()
        uas.close()

    run(main())


def test_the_per_account_limit_counts_a_domain_and_answers_503_when_configured(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        uas.hold = True
        extra = limits(per_account=1, account_key="from_domain", status=503, reason="Over Quota")
        async with running(app_toml(tmp_path, uas.uri, extra=extra)) as app:
            alice, bob = (
                await Caller.open(sip_udp(app), "alice"),
                await Caller.open(sip_udp(app), "bob"),
            )
            alice.invite("d1", domain="tenant-a.example")
            await uas.wait_for("alice's INVITE", lambda: len(uas.held) == 1)
            refused = await bob.call("d2", domain="Tenant-A.example")  # hosts compare lowercased
            assert (refused.status_code, refused.reason) == (503, "Over Quota")
            bob.invite("d3", domain="tenant-b.example")
            await uas.wait_for("the other tenant's INVITE", lambda: len(uas.held) == 2)
            assert app.tracker.profile_size("account", "tenant-a.example") == 1
            assert app.tracker.profile_size("account", "tenant-b.example") == 1
            assert app.router.counters.over_account_limit == 1
            while uas.held:
                uas.answer(480)
            for caller, call_id in ((alice, "d1"), (bob, "d3")):
                assert (await caller.final(call_id)).status_code == 480
                caller.close()
        uas.close()

    run(main())


def test_the_account_of_a_call_can_be_its_authorization_username(tmp_path: Path) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        uas.hold = True
        extra = limits(per_account=1, account_key="auth_username")
        credentials = (
            "Proxy-Authorization",
            'Digest username="acct-7", realm="example.com", nonce="n", '
            'uri="sip:bob@example.com", response="00"',
        )
        async with running(app_toml(tmp_path, uas.uri, extra=extra)) as app:
            alice, carol = (
                await Caller.open(sip_udp(app), "alice"),
                await Caller.open(sip_udp(app), "carol"),
            )
            alice.invite("p1", headers=(credentials,))
            await uas.wait_for("the first INVITE", lambda: len(uas.held) == 1)
            # Same account, another caller: over the limit.
            assert (await carol.call("p2", headers=(credentials,))).status_code == 486
            # Without credentials a call counts against no account.
            carol.invite("p3")
            await uas.wait_for("the INVITE without credentials", lambda: len(uas.held) == 2)
            assert app.tracker.profile_size("account", "acct-7") == 1
            assert app.tracker.profile_size("account") == 1
            while uas.held:
                uas.answer(480)
            assert (await alice.final("p1")).status_code == 480
            assert (await carol.final("p3")).status_code == 480
            for caller in (alice, carol):
                caller.close()
        uas.close()

    run(main())


def test_without_limits_every_call_is_still_counted_in_both_profiles(tmp_path: Path) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        async with running(app_toml(tmp_path, uas.uri)) as app:
            alice = await Caller.open(sip_udp(app), "alice")
            answers = [await alice.call(f"n{i}") for i in range(3)]
            assert all(a.status_code == 200 for a in answers)
            assert app.tracker.profile_size("caller", "alice") == 3
            assert app.tracker.profile_size("account", "alice@example.com") == 3
            for cseq, answer in enumerate(answers, 2):
                assert (await alice.bye(answer, cseq)).status_code == 200
            assert app.tracker.profile_size("caller") == 0
            alice.close()
        uas.close()

    run(main())
