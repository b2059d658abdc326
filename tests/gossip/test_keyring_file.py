"""Keys at rest: the keyring file, keys from settings, and the rotation the API performs."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from fnlb.errors import BadRequest, ConfigError
from fnlb.gossip.crypto import GossipCipher, Keyring, key_id
from fnlb.gossip.keyring_file import (
    NO_KEY_MESSAGE,
    decode_key,
    encode_key,
    install_key,
    key_from_request,
    keyring_from_settings,
    keys_listing,
    load_keyring_file,
    remove_key,
    save_keyring_file,
    use_key,
)

OLD = bytes(range(32))
NEW = bytes(range(100, 116))  # a 16-byte key: every AES size works in a file
NOW = 1_800_000_000.0


def test_keyring_file_round_trips_primary_first_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    save_keyring_file(path, [NEW, OLD])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == [encode_key(NEW), encode_key(OLD)]
    ring = load_keyring_file(path)
    assert ring.keys() == [NEW, OLD]
    assert ring.primary == NEW


def test_saving_replaces_the_file_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("old contents")
    path.chmod(0o644)
    save_keyring_file(path, [OLD])
    assert load_keyring_file(path).keys() == [OLD]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]


def test_saving_into_a_missing_directory_raises_oserror_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # noqa: PT011 - any OSError: the caller reports strerror
        save_keyring_file(tmp_path / "nope" / "keyring.json", [OLD])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ("", "not JSON"),
        ("{}", "JSON list of base64 keys"),
        ("[1, 2]", "JSON list of base64 keys"),
        ("[]", "holds no keys"),
        ('["not base64!"]', "entry 0 is not valid base64"),
        (f'["{encode_key(OLD)}", "{base64.b64encode(b"short").decode()}"]', "entry 1 decodes to 5"),
    ],
)
def test_a_bad_keyring_file_is_a_config_error_saying_what_is_wrong(
    tmp_path: Path, contents: str, message: str
) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(contents)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=message) as info:
        load_keyring_file(path)
    assert "--gossip-keyring-file" in str(info.value)


def test_an_unreadable_keyring_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_keyring_file(tmp_path / "missing.json")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "binary").chmod(0o600)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_keyring_file(tmp_path / "binary")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_keyring_file_others_may_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keyring.json"
    save_keyring_file(path, [OLD])
    path.chmod(mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o} .*chmod 600") as info:
        load_keyring_file(path)
    assert "--gossip-keyring-file" in str(info.value)
    path.chmod(0o400)
    assert load_keyring_file(path).keys() == [OLD]


def test_decode_key_accepts_surrounding_whitespace_and_names_the_problem() -> None:
    assert decode_key(f"  {encode_key(OLD)}\n") == OLD
    with pytest.raises(ValueError, match="not valid base64"):
        decode_key("%%%")
    with pytest.raises(ValueError, match="decodes to 20 bytes"):
        decode_key(encode_key(bytes(20)))


# --- from settings ---------------------------------------------------------------------------


def test_no_key_refuses_startup_saying_how_to_make_one() -> None:
    with pytest.raises(ConfigError) as info:
        keyring_from_settings("", "", insecure=False)
    assert "fnlb keygen" in str(info.value)
    assert "--gossip-insecure" in str(info.value)
    assert str(info.value) == NO_KEY_MESSAGE


def test_insecure_without_a_key_means_plaintext() -> None:
    assert keyring_from_settings("", "", insecure=True) is None


def test_inline_key_and_keyring_file(tmp_path: Path) -> None:
    ring = keyring_from_settings(encode_key(OLD), "", insecure=False)
    assert ring is not None
    assert ring.keys() == [OLD]
    path = tmp_path / "k.json"
    save_keyring_file(path, [NEW, OLD])
    ring = keyring_from_settings("", str(path), insecure=True)  # a key wins over insecure
    assert ring is not None
    assert ring.keys() == [NEW, OLD]
    with pytest.raises(ConfigError, match="both given"):
        keyring_from_settings(encode_key(OLD), str(path), insecure=False)


@pytest.mark.parametrize(
    ("key", "message"),
    [("not base64!", "--gossip-key is not valid base64"), ("AAAA", "decodes to 3 bytes")],
)
def test_a_bad_inline_key_is_a_config_error(key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        keyring_from_settings(key, "", insecure=False)


# --- rotation as the management API performs it ----------------------------------------------


def test_rotation_through_the_api_functions_persists_each_step(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    save_keyring_file(path, [OLD])
    ring = load_keyring_file(path)
    live = GossipCipher(ring, "prod")
    old_sender = GossipCipher(Keyring([OLD]), "prod")

    listing = install_key(ring, str(path), NEW)
    assert listing == {
        "keys": [{"id": key_id(OLD), "primary": True}, {"id": key_id(NEW), "primary": False}],
        "persisted": True,
    }
    assert load_keyring_file(path).keys() == [OLD, NEW]
    assert install_key(ring, str(path), NEW) == listing  # retrying is harmless

    use_key(ring, str(path), NEW)
    assert load_keyring_file(path).keys() == [NEW, OLD]
    assert live.open(old_sender.seal(b"still accepted", NOW), NOW) == b"still accepted"

    listing = remove_key(ring, str(path), OLD)
    assert listing["keys"] == [{"id": key_id(NEW), "primary": True}]
    assert load_keyring_file(path).keys() == [NEW]
    assert ring.keys() == [NEW]
    assert encode_key(NEW) not in json.dumps(listing)  # answers carry ids, never keys


def test_rotation_errors_carry_the_http_status(tmp_path: Path) -> None:
    ring = Keyring([OLD])
    with pytest.raises(BadRequest, match="not installed") as info:
        use_key(ring, "", NEW)
    assert info.value.status == 404
    with pytest.raises(BadRequest) as info:
        remove_key(ring, "", NEW)
    assert info.value.status == 404
    with pytest.raises(BadRequest, match="primary") as info:
        remove_key(ring, "", OLD)
    assert info.value.status == 409


def test_a_failed_write_leaves_the_live_keyring_unchanged(tmp_path: Path) -> None:
    ring = Keyring([OLD])
    with pytest.raises(BadRequest, match="not applied") as info:
        install_key(ring, str(tmp_path / "missing-dir" / "k.json"), NEW)
    assert info.value.status == 500
    assert ring.keys() == [OLD]


def test_without_a_file_changes_are_live_only() -> None:
    ring = Keyring([OLD])
    assert install_key(ring, "", NEW)["persisted"] is False
    assert keys_listing(ring, persisted=False)["keys"][1] == {"id": key_id(NEW), "primary": False}


@pytest.mark.parametrize(
    "body", [None, [], {}, {"key": 5}, {"key": "%%"}, {"key": encode_key(b"x" * 10)}]
)
def test_key_from_request_refuses_bad_bodies_with_400(body: object) -> None:
    with pytest.raises(BadRequest) as info:
        key_from_request(body)
    assert info.value.status == 400


def test_key_from_request() -> None:
    assert key_from_request({"key": encode_key(OLD)}) == OLD


def test_saved_file_is_never_group_or_world_readable_even_with_a_lax_umask(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0)
    try:
        save_keyring_file(tmp_path / "k.json", [OLD])
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600
