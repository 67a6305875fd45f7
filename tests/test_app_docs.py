"""docs/proxy-app.md cannot rot: its example configuration is read and the
proxy started with it; its reference tables list exactly the keys the
reader knows, each with the default the reader really uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app_helpers import http, run
from sipcore.app import App, parse_config
from sipcore.app.config import known_keys

PAGE = Path(__file__).resolve().parent.parent / "docs" / "proxy-app.md"
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```$", re.M | re.S)
SECTION = re.compile(r"^### `\[+([a-z_.]+)\]+`$")
ROW = re.compile(r"^\| `([a-z_0-9]+)` \| (`(.*?)`|\(.*?\)) \|")
BASE = '[[dispatcher.destinations]]\nuri = "sip:127.0.0.1:5070"\n'
NODE = '[[rtpengine]]\nurl = "udp:127.0.0.1:2223"\n'


def example() -> str:
    (block,) = TOML_BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    text: str = block
    return text


def reference() -> dict[str, dict[str, str | None]]:
    """section -> key -> the documented default (None when it is not a literal)."""
    tables: dict[str, dict[str, str | None]] = {}
    section = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        heading = SECTION.match(line)
        if heading is not None:
            section = heading.group(1)
            tables[section] = {}
            continue
        row = ROW.match(line)
        if row is not None and section is not None:
            tables[section][row.group(1)] = row.group(3)
    return tables


def test_the_example_configuration_is_valid() -> None:
    config = parse_config(example(), "proxy-app.md")
    assert [d.attrs.duid for d in config.dispatcher.destinations] == ["gw1", "gw2"]
    assert (config.limits.per_caller, config.limits.per_account) == (2, 10)
    assert config.probing.interval == 10 and config.dialog.send_bye
    assert config.media.active and config.media.rtpengine_sock == ("udp:127.0.0.1:2223",)


def test_the_proxy_starts_with_the_example_on_free_ports(tmp_path: Path) -> None:
    text = (
        example()
        .replace("127.0.0.1:5060", "127.0.0.1:0")
        .replace("127.0.0.1:8060", "127.0.0.1:0")
        .replace('"sipcore-dialogs.sqlite"', f'"{tmp_path / "dialogs.sqlite"}"')
    )

    async def main() -> None:
        async with App(parse_config(text)) as app:
            assert [e.transport for e in app.sip_listen] == ["UDP", "TCP"]
            status, body = await http(app.management_address, "GET", "/dispatcher/list")
            assert status == 200
            targets = body["result"]["RECORDS"][0]["SET"]["TARGETS"]
            assert sorted(t["DEST"]["URI"] for t in targets) == [
                "sip:10.0.0.11:5060",
                "sip:10.0.0.12:5060",
            ]
            assert (await http(app.management_address, "GET", "/health"))[0] == 200

    run(main())


def test_the_reference_lists_every_key_and_no_other() -> None:
    documented = {section: set(keys) for section, keys in reference().items()}
    known = known_keys()
    top = known.pop("")
    assert set(documented) == set(known)
    assert top == {s for s in documented if "." not in s}
    for section, keys in known.items():
        assert documented[section] == keys, section


DEFAULTS = [
    pytest.param(section, key, default, id=f"{section}.{key}")
    for section, keys in reference().items()
    for key, default in keys.items()
    if default is not None
]


@pytest.mark.parametrize(("section", "key", "default"), DEFAULTS)
def test_each_documented_default_is_the_default(section: str, key: str, default: str) -> None:
    base = BASE
    if section == "dispatcher.destinations":
        text = f"{BASE}{key} = {default}\n"
    elif section == "rtpengine":  # an array of tables too, with its required key
        base = f"{BASE}{NODE}"
        text = f"{base}{key} = {default}\n"
    else:
        text = f"[{section}]\n{key} = {default}\n{BASE}"
    assert parse_config(text) == parse_config(base)
